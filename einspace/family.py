"""Families: which index classes are present (docs/theory.md §1).

A :class:`Family` is a set of classes over ``k`` factors. It is *valid* when x and y are both
reached, every factor is used, no factor is redundant and the hypergraph is connected.

**Canonical form.** Two families are the same when factor renaming (and, optionally, swapping
x and y) maps one to the other. The canonical representative is the renaming whose set of
classes, read as a bitmask over the class order of :mod:`einspace.index_classes` (class number
``j`` is bit ``j``), is *largest*. This keeps the paper's named points in the paper's own form
(Monarch is ``xA,xAB,By,ABy``, i.e. α γ ε φ). The canonical string lists the tokens in class
order, joined by commas.

Examples:
    >>> f = Family.parse("xB,xAB,Ay,ABy")        # Monarch with the factors renamed
    >>> str(f.canonical()), f.canonical().name
    ('xA,xAB,By,ABy', 'monarch')
    >>> f.canonical().greek
    'α γ ε φ'
    >>> Family.parse("xA,By").violations()
    ['the hypergraph is disconnected: x and y are not linked']
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from einspace import hypergraph
from einspace.errors import EinspaceError
from einspace.exponents import ExponentForms
from einspace.index_classes import (
    FACTOR_LETTERS,
    X,
    Y,
    class_name,
    class_sort_key,
    class_token,
    factor_indices,
    factors_mask,
    parse_class,
    permute_class,
    transpose_class,
    universe,
)
from einspace.named import NAMED, named_classes

if TYPE_CHECKING:
    import sympy

__all__ = ["Family"]


@lru_cache(maxsize=4096)
def _symbolic(family: Family) -> tuple[tuple[str, sympy.Expr], ...]:
    """Cached body of :meth:`Family.symbolic` (sympy takes tens of ms per family)."""
    import sympy

    symbols: list[sympy.Expr] = list(family.symbols())
    if not family.diagonal:
        for side in (X, Y):
            ps = [p for p, m in enumerate(family.classes) if m & side]
            symbols[ps[-1]] = 1 - sympy.Add(*(symbols[p] for p in ps[:-1]))
    return tuple(family.forms.symbolic(symbols).items())


@dataclass(frozen=True)
class Family:
    """A set of index classes over ``k`` factors, in class order.

    Attributes:
        k: number of factors (A, B, …).
        classes: the class bitmasks, sorted in class order, without repeats.
    """

    k: int
    classes: tuple[int, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(set(self.classes), key=class_sort_key))
        if ordered != self.classes:
            object.__setattr__(self, "classes", ordered)

    # ------------------------------------------------------------------ construction
    @classmethod
    def of(cls, classes: Iterable[int | str], k: int | None = None) -> Family:
        """Build a family from class bitmasks or tokens; ``k`` defaults to the factors used."""
        masks = [parse_class(c, k) if isinstance(c, str) else int(c) for c in classes]
        if not masks:
            raise EinspaceError("a family needs at least one class, got none")
        used = max(factors_mask(m).bit_length() for m in masks)
        return cls(k if k is not None else used, tuple(masks))

    @classmethod
    def parse(cls, text: str, k: int | None = None) -> Family:
        """Parse a canonical string such as ``"xA,xAB,By,ABy,AB"`` (Greek names work for k=2).

        Examples:
            >>> Family.parse("α γ ε φ ρ") == Family.parse("xA,xAB,By,ABy,AB")
            True
        """
        parts = [p for p in text.replace(",", " ").split() if p]
        if not parts:
            raise EinspaceError(
                f"family {text!r} is empty; expected class tokens such as 'xA,xAB,By,ABy'"
            )
        return cls.of(parts, k)

    # ------------------------------------------------------------------ naming
    @property
    def tokens(self) -> tuple[str, ...]:
        """The class tokens, in class order."""
        return tuple(class_token(m) for m in self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        """Greek names for 2-factor paper classes, tokens otherwise."""
        return tuple(class_name(m, self.k) for m in self.classes)

    @property
    def greek(self) -> str:
        """The class names joined by spaces (Greek for k = 2)."""
        return " ".join(self.names)

    def __str__(self) -> str:
        return ",".join(self.tokens)

    @property
    def diagonal(self) -> bool:
        """Whether some class holds both x and y (extended space)."""
        return any(m & X and m & Y for m in self.classes)

    @property
    def factor_letters(self) -> str:
        """The factor names, ``"AB"`` for k = 2."""
        return FACTOR_LETTERS[: self.k]

    # ------------------------------------------------------------------ validity
    def violations(self) -> list[str]:
        """The validity rules of docs/theory.md §1 that this family breaks (empty if valid)."""
        out = []
        allowed = set(universe(self.k, diagonal=True))
        bad = [class_token(m) for m in self.classes if m not in allowed]
        if bad:
            out.append(f"classes {bad} are not classes over {self.k} factors")
        if not any(m & X for m in self.classes) or not any(m & Y for m in self.classes):
            out.append("some class must contain x and some class must contain y")
        fsets = hypergraph.factor_class_sets(self.classes, self.k)
        empty = [FACTOR_LETTERS[i] for i, s in enumerate(fsets) if not s]
        if empty:
            out.append(f"factors {', '.join(empty)} are in no class")
        for i, j in itertools.permutations(range(self.k), 2):
            if fsets[i] and fsets[i] <= fsets[j]:
                a, b = FACTOR_LETTERS[i], FACTOR_LETTERS[j]
                out.append(f"factor {a} is redundant: every class with {a} also has {b}")
        if not hypergraph.is_connected(self.classes, self.k):
            reach = "x and y are not linked" if not empty else "some tensor is isolated"
            out.append(f"the hypergraph is disconnected: {reach}")
        return out

    @property
    def is_valid(self) -> bool:
        """True when the family satisfies all four rules of docs/theory.md §1."""
        return not self.violations()

    # ------------------------------------------------------------------ symmetry
    def relabel(self, perm: tuple[int, ...], transpose: bool = False) -> Family:
        """Rename factor ``i`` to ``perm[i]``, optionally swapping x and y."""
        masks = (permute_class(m, perm) for m in self.classes)
        if transpose:
            masks = (transpose_class(m) for m in masks)
        return Family(self.k, tuple(masks))

    def _code(self) -> int:
        index = {m: j for j, m in enumerate(universe(self.k, diagonal=True))}
        return sum(1 << index[m] for m in self.classes)

    def canonical(self, modulo_transpose: bool = False) -> Family:
        """The canonical representative of this family's equivalence class."""
        transposes = (False, True) if modulo_transpose else (False,)
        candidates = (
            self.relabel(p, t) for p in itertools.permutations(range(self.k)) for t in transposes
        )
        return max(candidates, key=Family._code)

    def automorphisms(self) -> list[tuple[int, ...]]:
        """Factor renamings that map the family onto itself (identity included)."""
        return [p for p in itertools.permutations(range(self.k)) if self.relabel(p) == self]

    @property
    def name(self) -> str | None:
        """The named structure family this is, up to renaming and transposition.

        Examples:
            >>> Family.parse("xA,xB,Ay,By").name, Family.parse("xA,By,AB").name
            ('kronecker', 'low_rank')
        """
        known = _named_families(len(NAMED))
        if all(f.k != self.k for f in known):
            return None
        return known.get(self.canonical(modulo_transpose=True))

    @classmethod
    def from_masks(cls, masks: Mapping[int, float]) -> tuple[Family, tuple[float, ...]]:
        """The family of classes ``masks`` (bitmask → exponent) and the exponents in its
        class order; factors that no class uses are dropped, the rest renamed A, B, … in
        order.

        Examples:
            >>> fam, theta = Family.from_masks({parse_class("xB"): 1.0, parse_class("By"): 0.5})
            >>> str(fam), theta
            ('xA,Ay', (1.0, 0.5))
        """
        used = sorted({i for m in masks for i in factor_indices(m)})
        perm = [0] * (max(used) + 1)
        for new, old in enumerate(used):
            perm[old] = new
        relabeled = {permute_class(m, tuple(perm)): t for m, t in masks.items()}
        family = cls(len(used), tuple(relabeled))
        return family, tuple(relabeled[m] for m in family.classes)

    # ------------------------------------------------------------------ exponents
    @cached_property
    def forms(self) -> ExponentForms:
        """The ν/ω/ψ forms of this family (sets of classes; see :mod:`einspace.exponents`)."""
        return ExponentForms.of(self.classes, self.k)

    def symbols(self) -> tuple[sympy.Symbol, ...]:
        """One nonnegative sympy symbol per class: Greek for k = 2, ``θ_<token>`` otherwise."""
        import sympy

        return tuple(
            sympy.Symbol(n if n != t else f"θ_{t}", nonnegative=True)
            for n, t in zip(self.names, self.tokens, strict=True)
        )

    def symbolic(self) -> dict[str, sympy.Expr]:
        """ν, ω, ψ as piecewise-linear sympy expressions of the class exponents.

        The side constraints are used to eliminate one symbol per side: when no class holds
        both x and y, the last input class is ``1 −`` the other input exponents, and likewise
        on the output side (a lone class is 1). The expressions therefore agree with the
        numbers on the constraint surface, which is where structures live.

        Examples:
            >>> Family.parse("xA,By,AB").symbolic()["nu"]      # low rank: ν = ρ
            ρ
            >>> Family.parse("xA,xAB,By,ABy").symbolic()["omega"]  # Monarch shares nothing
            0
        """
        return dict(_symbolic(self))

    def balanced_theta(self, rank: float = 0.25) -> tuple[float, ...] | None:
        """A representative point of the family: each side's exponent shared equally.

        Input-only classes split what the block-diagonal classes leave of 1, likewise on the
        output side; block-diagonal classes get 1/(max(#input-only, #output-only) + #diag);
        rank classes get ``rank``. None when the family has no point with every θ > 0 (a
        side made only of block-diagonal classes forces the other side's classes to 0).

        Examples:
            >>> Family.parse("xA,xAB,By,ABy,AB").balanced_theta()
            (0.5, 0.5, 0.5, 0.5, 0.25)
        """
        n_in = sum(1 for m in self.classes if m & X and not m & Y)
        n_out = sum(1 for m in self.classes if m & Y and not m & X)
        n_diag = sum(1 for m in self.classes if m & X and m & Y)
        diag = 1.0 / (max(n_in, n_out) + n_diag) if n_diag else 0.0
        out = []
        for m in self.classes:
            if m & X and m & Y:
                out.append(diag)
            elif m & (X | Y):
                n = n_in if m & X else n_out
                share = (1.0 - n_diag * diag) / n
                if share <= 0:
                    return None
                out.append(share)
            else:
                out.append(rank)
        return tuple(out)


@lru_cache(maxsize=4)
def _named_families(registered: int) -> dict[Family, str]:
    """Canonical family → name of every named structure (keyed on how many are registered,
    so a newly registered name is seen)."""
    out: dict[Family, str] = {}
    for entry in NAMED.values():
        values = {k: (v if v > 0 else 0.25) for k, v in entry.defaults.items()}
        classes = named_classes(entry.name, **values)
        masks = {parse_class(c): float(v) for c, v in classes.items() if v > 0}
        fam, _ = Family.from_masks(masks)
        out.setdefault(fam.canonical(modulo_transpose=True), entry.name)
    return out
