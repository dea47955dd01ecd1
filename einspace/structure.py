"""Structures: points of the continuous einsum space (docs/theory.md §1).

A :class:`Structure` is a family plus an exponent θ_c ∈ [0, 1] per class. For a square layer
of width d a class has size d^θ_c. The exponents of the classes holding x sum to 1, and
likewise for y (tolerance 1e-2). Classes with θ = 0 are absent and factors left without
classes are dropped, so dense is a 1-factor structure.

A structure whose family has a redundant factor (docs/theory.md §1 rule 3) is still accepted — it is
a computable layer, e.g. a corner of the θ simplex — but ``family.is_valid`` is False; the
enumerators never produce one. A disconnected one is refused: x would not reach y.

Examples:
    >>> s = Structure.from_theta("(0.5|0|0.5|0|0.5|0.5|0)")
    >>> s.k, str(s.family), s.family.name
    (2, 'xA,xAB,By,ABy', 'monarch')
    >>> s.nu, s.omega, s.psi
    (0.5, 0.0, 1.0)
    >>> Structure.named("dense").k
    1
    >>> Structure.named("kronecker").omega
    0.5
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from einspace.errors import EinspaceError
from einspace.family import Family
from einspace.index_classes import (
    FACTOR_LETTERS,
    X,
    Y,
    class_token,
    parse_class,
    universe,
)
from einspace.named import check_params, lookup, named_classes
from einspace.realization import Realization, check_width, realize
from einspace.sizing import SizingMode, reference_dim

if TYPE_CHECKING:
    import sympy


__all__ = ["SUM_TOL", "Structure", "realize_sizes"]

#: Tolerance on the input and output exponent sums.
SUM_TOL = 1e-2

PAPER_ORDER = ("α", "β", "γ", "δ", "ε", "φ", "ρ")


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numpy as np

            if isinstance(value, np.integer | np.floating):
                value = float(value)
            else:
                raise TypeError
        except TypeError:
            raise EinspaceError(
                f"{what} = {value!r} is not a number; exponents are floats in [0, 1]"
            ) from None
    assert isinstance(value, int | float)
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise EinspaceError(f"{what} = {value!r}; exponents must be finite numbers in [0, 1]")
    if v < 0 or v > 1:
        raise EinspaceError(
            f"{what} = {value!r} is outside [0, 1]; nearest valid value: {min(max(v, 0), 1):g}"
        )
    return v


@dataclass(frozen=True)
class Structure:
    """A point of the einsum space: a family and one exponent per class.

    Build one with :meth:`from_theta`, :meth:`named`, :meth:`from_classes` or :meth:`parse`.

    Attributes:
        family: the classes present, in class order.
        theta: the exponent of each class, aligned with ``family.classes``.
        label: a display name (``"btt(r=0.25)"``); not part of equality.
    """

    family: Family
    theta: tuple[float, ...]
    label: str | None = field(default=None, compare=False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_classes(
        cls, exponents: Mapping[str, object] | Mapping[int, object], label: str | None = None
    ) -> Structure:
        """Build from a mapping class → exponent, for any number of factors.

        Keys are tokens (``"xAB"``), Greek names for 2-factor classes, or bitmasks. Factors
        are named A, B, C, … in order: tokens that name k factors use the first k letters
        (``"xA=1,Qy=1"`` is an error, not a silent renaming). Factors whose classes all have
        exponent 0 are dropped and the rest renamed in order.

        Examples:
            >>> s = Structure.from_classes({"xA": .5, "xB": .5, "Ay": .5, "BCy": .5, "BC": .2})
            >>> s.k, s.psi
            (3, 1.0)
        """
        if not isinstance(exponents, Mapping) or not exponents:
            raise EinspaceError(
                f"expected a non-empty mapping class → exponent, got {exponents!r}; "
                "e.g. {'xA': 0.5, 'xB': 0.5, 'Ay': 0.5, 'By': 0.5}"
            )
        _check_letters([key for key in exponents if isinstance(key, str)])
        masks: dict[int, float] = {}
        for key, value in exponents.items():
            mask = parse_class(key) if isinstance(key, str) else int(key)
            if mask in masks:
                raise EinspaceError(f"class {key!r} is given twice")
            theta = _number(value, f"θ[{key}]")
            if theta > 0:
                masks[mask] = theta
        if not masks:
            raise EinspaceError("every exponent is 0: no class is present")
        family, exponents_in_order = Family.from_masks(masks)
        structure = cls(family, exponents_in_order, label)
        structure._check()
        return structure

    @classmethod
    def from_theta(cls, theta: str | Sequence[object], label: str | None = None) -> Structure:
        """Build from the paper's 7-vector (α, β, γ, δ, ε, φ, ρ).

        Takes numbers or the paper's string form ``"(0.5|0|0.5|0|0.5|0.5|0)"``.

        Examples:
            >>> Structure.from_theta((1, 0, 0, 0, 1, 0, 0.5)).family.name
            'low_rank'
        """
        values: Sequence[object]
        if isinstance(theta, str):
            text = theta.strip()
            body = text[1:-1] if text[:1] in "([" and text[-1:] in ")]" else text
            parts = [p.strip() for p in re.split(r"[|,\s]+", body) if p.strip()]
            values = [_parse_float(p, theta) for p in parts]
        else:
            try:
                values = list(theta)
            except TypeError:
                raise EinspaceError(
                    f"θ = {theta!r} is not a sequence; expected 7 numbers "
                    "(α, β, γ, δ, ε, φ, ρ), e.g. (0.5, 0, 0.5, 0, 0.5, 0.5, 0)"
                ) from None
        if len(values) != 7:
            raise EinspaceError(
                f"θ = {theta!r} has {len(values)} entries; expected 7 "
                "(α, β, γ, δ, ε, φ, ρ), e.g. '(0.5|0|0.5|0|0.5|0.5|0)' for Monarch"
            )
        exps = {g: _number(v, f"θ[{g}]") for g, v in zip(PAPER_ORDER, values, strict=True)}
        return cls.from_classes(exps, label=label)

    @classmethod
    def balanced(cls, family: Family | str, rank: float = 0.25) -> Structure:
        """The family's representative point (:meth:`Family.balanced_theta`).

        Examples:
            >>> Structure.balanced("xA,xB,Ay,By").family.name
            'kronecker'
        """
        fam = Family.parse(family) if isinstance(family, str) else family
        theta = fam.balanced_theta(rank)
        if theta is None:
            raise EinspaceError(
                f"family {fam} has no point with every exponent > 0: one side holds only "
                "block-diagonal classes, which leave nothing to the other side's classes"
            )
        return cls.from_classes(dict(zip(fam.tokens, theta, strict=True)), label=str(fam))

    @classmethod
    def named(cls, name: str, **params: float) -> Structure:
        """A named point: dense, low_rank, kronecker, tt, monarch, btt, block_diagonal.

        Examples:
            >>> Structure.named("btt", r=0.5).nu
            1.0
        """
        entry = lookup(name)
        values = check_params(entry, params)
        label = entry.name + (
            "(" + ", ".join(f"{k}={v:g}" for k, v in values.items()) + ")" if values else ""
        )
        return cls.from_classes(named_classes(entry.name, **values), label=label)

    @classmethod
    def parse(cls, text: str) -> Structure:
        """Parse a name (``"btt"``, ``"btt:r=0.5"``, ``"btt(r=0.5)"``), a θ 7-vector, or a
        class mapping (``"xA=0.5,xB=0.5,Ay=0.5,By=0.5"``).

        Examples:
            >>> str(Structure.parse("low_rank:r=0.25"))
            'low_rank(r=0.25)'
            >>> Structure.parse("xA=1,Ay=1").family.name
            'dense'
        """
        t = text.strip()
        named = re.fullmatch(r"([A-Za-z_][\w-]*)\s*(?:[:(]\s*(.*?)\s*\)?)?", t)
        if "=" in t and not named:
            pairs = [p for p in re.split(r"[,\s]+", t) if p]
            mapping: dict[str, object] = {}
            for pair in pairs:
                key, _, value = pair.partition("=")
                mapping[key] = _parse_float(value, text)
            return cls.from_classes(mapping)
        if named:
            params: dict[str, float] = {}
            if named.group(2):
                for pair in re.split(r"[,\s]+", named.group(2)):
                    key, eq, value = pair.partition("=")
                    if not eq:
                        raise EinspaceError(
                            f"structure {text!r}: parameter {pair!r} should read key=value, "
                            "e.g. 'btt:r=0.5'"
                        )
                    params[key] = _parse_float(value, text)
            return cls.named(named.group(1), **params)
        return cls.from_theta(t)

    # ------------------------------------------------------------------ validation
    def _check(self) -> None:
        problems = self.family.violations()
        for side, word in ((X, "input (x)"), (Y, "output (y)")):
            sides = [t for m, t in zip(self.family.classes, self.theta, strict=True) if m & side]
            total = sum(sides)
            if not sides:
                raise EinspaceError(
                    f"structure {self.describe_theta()} has no {word} class; "
                    f"some class must contain {'x' if side == X else 'y'}"
                )
            if abs(total - 1.0) > SUM_TOL + 1e-9:
                raise EinspaceError(
                    f"the {word} exponents of {self.describe_theta()} sum to {total:g}; "
                    f"expected 1 (± {SUM_TOL:g}). Scale them by {1 / total:.4g} to fix"
                )
        disconnected = [p for p in problems if "disconnected" in p]
        if disconnected:
            hint = ""
            if self.k == 2:
                hint = "; give the rank class ρ a positive exponent to link the factors"
            raise EinspaceError(f"structure {self.describe_theta()}: {disconnected[0]}{hint}")

    # ------------------------------------------------------------------ views
    @property
    def k(self) -> int:
        """Number of factors."""
        return self.family.k

    @property
    def exponents(self) -> dict[str, float]:
        """Class name → θ_c (Greek names for k = 2)."""
        return dict(zip(self.family.names, self.theta, strict=True))

    @property
    def theta7(self) -> tuple[float, ...] | None:
        """The paper's (α, β, γ, δ, ε, φ, ρ) when this is a ≤ 2-factor paper-space point."""
        if self.k > 2 or self.family.diagonal:
            return None
        by_mask = dict(zip(self.family.classes, self.theta, strict=True))
        return tuple(float(by_mask.get(m, 0.0)) for m in universe(2))

    def describe_theta(self) -> str:
        """The paper string for 2-factor points, else ``token=θ`` pairs."""
        t7 = self.theta7
        if t7 is not None:
            return "(" + "|".join(f"{v:g}" for v in t7) + ")"
        return ",".join(
            f"{class_token(m)}={t:g}" for m, t in zip(self.family.classes, self.theta, strict=True)
        )

    def __str__(self) -> str:
        return self.label or self.describe_theta()

    # ------------------------------------------------------------------ exponents
    @property
    def nu(self) -> float:
        """ν: sequential MACs grow as d^(1+ν)."""
        return _clean(self.family.forms.nu(self.theta))

    @property
    def omega(self) -> float:
        """ω: the exponent of MACs per parameter."""
        return _clean(self.family.forms.omega(self.theta))

    @property
    def psi(self) -> float:
        """ψ: the rank exponent (1 = full rank)."""
        return _clean(self.family.forms.psi(self.theta))

    def symbolic(self) -> dict[str, sympy.Expr]:
        """ν, ω, ψ as sympy expressions of this family's class symbols.

        Substituting ``theta`` gives back ``nu``, ``omega`` and ``psi``.

        Examples:
            >>> s = Structure.named("btt", r=0.25)
            >>> expr = s.symbolic()["nu"]
            >>> float(expr.subs(s.substitutions()))
            0.75
        """
        return self.family.symbolic()

    def substitutions(self) -> dict[sympy.Symbol, float]:
        """Symbol → θ, to evaluate :meth:`symbolic`."""
        return dict(zip(self.family.symbols(), self.theta, strict=True))

    @property
    def degenerate(self) -> bool:
        """The paper's degeneracy test for 2-factor points: ρ > min(α, ε) after reordering
        the factors so that min(α, ε) ≥ min(β, δ). Always False for k ≠ 2 (the criterion is
        specific to the 2-factor layout)."""
        t = self.theta7
        if t is None or self.k != 2:
            return False
        a, b, _, d, e, _, r = t
        return r > max(min(a, e), min(b, d)) + 1e-12

    # ------------------------------------------------------------------ realization
    def realize(
        self,
        d_in: int,
        d_out: int | None = None,
        mode: SizingMode = "round",
        pad_tol: float = 0.15,
    ) -> Realization:
        """Give every class an integer size for a concrete layer (docs/theory.md §1).

        ``mode="round"`` rounds d^θ per class and pads or truncates within ``pad_tol``;
        ``mode="exact"`` distributes prime factors so the products are exact.

        Examples:
            >>> r = Structure.named("monarch").realize(1024, 1024)
            >>> r.sizes, r.params, r.macs()
            ({'α': 32, 'γ': 32, 'ε': 32, 'φ': 32}, 65536, 65536)
        """
        return realize(self, d_in, d_in if d_out is None else d_out, mode, pad_tol)

    @property
    def factor_letters(self) -> str:
        """``"AB"`` for k = 2."""
        return FACTOR_LETTERS[: self.k]


def realize_sizes(
    family: Family | str, sizes: Mapping[str, int] | Sequence[int], d_in: int, d_out: int
) -> Realization:
    """Realize a family at given class sizes (names, tokens or a sequence in class order).

    The structure is the point whose exponents give these sizes at d_in → d_out
    (θ_c = log n_c / log d_c); the realization's mode is ``"given"``.

    Examples:
        >>> r = realize_sizes("xA,xB,Ay,By", {"α": 4, "β": 8, "δ": 8, "ε": 4}, 32, 32)
        >>> r.params, r.macs(), r.mode
        (64, 256, 'given')
    """
    fam = Family.parse(family) if isinstance(family, str) else family
    if isinstance(sizes, Mapping):
        by_name = {}
        for key, v in sizes.items():
            matches = [
                p
                for p, (n, t) in enumerate(zip(fam.names, fam.tokens, strict=True))
                if key in (n, t)
            ]
            if not matches:
                raise EinspaceError(
                    f"size given for {key!r}, which is not a class of {fam}; "
                    f"classes: {', '.join(fam.names)}"
                )
            by_name[matches[0]] = v
        if len(by_name) != len(fam.classes):
            missing = [n for p, n in enumerate(fam.names) if p not in by_name]
            raise EinspaceError(f"sizes for {fam}: missing {missing}")
        values = [by_name[p] for p in range(len(fam.classes))]
    else:
        values = list(sizes)
        if len(values) != len(fam.classes):
            raise EinspaceError(
                f"{len(values)} sizes given for the {len(fam.classes)} classes of {fam}"
            )
    n = tuple(check_width(v, f"size of {c}") for c, v in zip(fam.names, values, strict=True))
    d_in, d_out = check_width(d_in, "d_in"), check_width(d_out, "d_out")
    theta = tuple(
        math.log(v) / math.log(max(2, reference_dim(m, d_in, d_out)))
        for m, v in zip(fam.classes, n, strict=True)
    )
    return Realization(Structure(fam, theta), d_in, d_out, n, "given")


def _check_letters(tokens: Sequence[str]) -> None:
    """Tokens naming k factors must use the letters A … (k-th letter), without gaps."""
    used = {ch for t in tokens for ch in t if ch in FACTOR_LETTERS}
    valid = FACTOR_LETTERS[: len(used)]
    for t in tokens:
        wrong = [ch for ch in t if ch in FACTOR_LETTERS and ch not in valid]
        if wrong:
            raise EinspaceError(
                f"class {t!r} names factor {wrong[0]!r}, but the classes name {len(used)} "
                f"factor(s), lettered {', '.join(valid)} in order; e.g. "
                f"{t.replace(wrong[0], valid[-1])!r}"
            )


def _clean(value: float) -> float:
    """Round away float noise from sums of exponents (12 decimals)."""
    return round(value, 12) + 0.0


def _parse_float(text: str, whole: str) -> float:
    try:
        if "/" in text:
            num, den = text.split("/")
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise EinspaceError(
            f"{text!r} in {whole!r} is not a number; write exponents like 0.5, 1/2 or 0"
        ) from None
