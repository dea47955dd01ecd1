"""The θ space of 2-factor structures as a search space: sampling, snapping, rejection.

A point of the paper's space is ``θ = (α, β, γ, δ, ε, φ, ρ)`` (docs/theory.md §1): the input
exponents ``(α, β, γ)`` lie on the simplex (they sum to 1), so do the output exponents
``(δ, ε, φ)``, and ``ρ ∈ [0, 1]``. A searcher proposes seven *raw* numbers in ``[0, 1]``:
three input weights, three output weights and ``ρ``. :func:`snap_theta` turns them into a
point of the space:

1. each weight triple is divided by its sum (all-zero triples become ``(1, 0, 0)``);
2. exponents below ``snap`` are set to 0 (the class is absent) and the triple is
   renormalized, so corners and edges of the simplex, where the named structures
   live, are reachable; ``ρ < snap`` also becomes 0;
3. every value is rounded to a multiple of ``resolution`` (largest-remainder rounding,
   so each triple still sums to exactly 1). Nearby proposals thereby map to one run
   config, and labels stay short.

:func:`theta_point` then builds the :class:`~einspace.structure.Structure` and rejects,
with a reason, points that are not usable layers:

- *disconnected*: x does not reach y (e.g. ``α = ε = 1`` with ``ρ = 0``);
- *redundant*: a factor every class of which also holds the other factor (docs/theory.md §1
  rule 3), e.g. ``γ = φ = 1``: a dense matrix paid for twice;
- *unrealizable*: the structure does not realize at one of the given widths within the
  padding tolerance;
- *degenerate* (only with ``reject_degenerate=True``): the paper's ρ > min(α, ε) test.

:func:`sample_points` draws uniformly (Dirichlet(1, 1, 1) per simplex, uniform ρ) and keeps
the valid points; :func:`check_widths` and :func:`nearest_width` say which widths a
structure realizes at. No torch is imported here.

Examples:
    >>> snap_theta((0.5, 0.01, 0.5, 0.0, 0.5, 0.5, 0.26))
    (0.5, 0.0, 0.5, 0.0, 0.5, 0.5, 0.25)
    >>> theta_point((0.5, 0.0, 0.5, 0.0, 0.5, 0.5, 0.25)).structure.family.name
    'btt'
    >>> theta_point((1, 0, 0, 0, 1, 0, 0)).rejection
    'disconnected: the hypergraph is disconnected: x and y are not linked'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

import numpy as np

from einspace.errors import EinspaceError
from einspace.proxy_realization import DEFAULT_LAYER_SIZING, LayerSizing, proxy_realization
from einspace.sizing import SizingMode
from einspace.structure import Structure
from einspace.validation import check_int

__all__ = [
    "PARAM_NAMES",
    "RESOLUTION",
    "SNAP",
    "ThetaPoint",
    "check_widths",
    "nearest_width",
    "sample_points",
    "sample_raw",
    "snap_theta",
    "theta_point",
]

PARAM_NAMES: Final = ("w_alpha", "w_beta", "w_gamma", "w_delta", "w_epsilon", "w_phi", "rho")
"""Names of the seven raw search parameters, each in [0, 1] (used as optuna parameters)."""

SNAP: Final = 0.1
"""Exponents below this are set to 0 by default: d^0.1 < 1.8 for every d ≤ 256."""

RESOLUTION: Final = 0.05
"""Default grid the exponents are rounded to."""


def _realize(structure: Structure, width: int, mode: LayerSizing, pad_tol: float) -> object:
    if mode == "auto":
        return proxy_realization(structure, width, width, pad_tol=pad_tol)
    return structure.realize(width, width, mode=cast(SizingMode, mode), pad_tol=pad_tol)


# --------------------------------------------------------------------------- snapping


def _unit(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise EinspaceError(f"{what} = {value!r} is not a number; expected a number in [0, 1]")
    v = float(value)
    if not math.isfinite(v) or v < 0 or v > 1:
        near = 0.0 if not math.isfinite(v) else min(max(v, 0.0), 1.0)
        raise EinspaceError(f"{what} = {value!r} is outside [0, 1]; nearest valid value: {near:g}")
    return v


def _quantize_simplex(weights: Sequence[float], units: int) -> list[int]:
    """Integers summing to ``units`` closest to ``weights`` (which sum to 1): largest
    remainder rounding, ties broken by position."""
    scaled = [w * units for w in weights]
    floors = [math.floor(s + 1e-9) for s in scaled]
    left = units - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(scaled[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def _snap_triple(raw: Sequence[float], snap: float, units: int) -> tuple[float, ...]:
    total = sum(raw)
    weights = [1.0, 0.0, 0.0] if total <= 0 else [w / total for w in raw]
    kept = [w if w >= snap else 0.0 for w in weights]
    if sum(kept) == 0:  # only possible for snap > 1/3: keep the largest
        top = max(range(3), key=lambda i: weights[i])
        kept = [1.0 if i == top else 0.0 for i in range(3)]
    kept = [w / sum(kept) for w in kept]
    counts = _quantize_simplex(kept, units)
    return tuple(c / units for c in counts)


def snap_theta(
    raw: Sequence[float], *, snap: float = SNAP, resolution: float = RESOLUTION
) -> tuple[float, ...]:
    """Map seven raw numbers in [0, 1] to a point θ of the space (see the module docs).

    Args:
        raw: input weights (α, β, γ), output weights (δ, ε, φ), then ρ; each in [0, 1].
        snap: exponents below it become 0.
        resolution: θ is rounded to multiples of this; ``1 / resolution`` must be an
            integer.

    Raises:
        EinspaceError: not seven numbers in [0, 1], or a bad ``snap``/``resolution``.

    Examples:
        >>> snap_theta((1, 1, 0, 1, 1, 0, 0))          # Kronecker
        (0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0)
        >>> snap_theta((0.2, 0.2, 0.2, 0.9, 0.05, 0.0, 0.33), resolution=0.1)
        (0.4, 0.3, 0.3, 1.0, 0.0, 0.0, 0.3)
    """
    values = list(raw) if not isinstance(raw, str | bytes) else []
    if len(values) != 7:
        raise EinspaceError(
            f"raw θ {raw!r} must be 7 numbers in [0, 1] (3 input weights, 3 output weights, "
            f"ρ); got {len(values)}. Example: (0.5, 0, 0.5, 0, 0.5, 0.5, 0.25)"
        )
    names = (*PARAM_NAMES[:6], "rho")
    vals = [_unit(v, n) for v, n in zip(values, names, strict=True)]
    if not (isinstance(snap, int | float) and 0 <= snap < 1):
        raise EinspaceError(f"snap = {snap!r} must be a number in [0, 1), e.g. {SNAP}")
    units = _units(resolution)
    rho = 0.0 if vals[6] < snap else round(vals[6] * units) / units
    return (*_snap_triple(vals[:3], snap, units), *_snap_triple(vals[3:6], snap, units), rho)


def _units(resolution: float) -> int:
    if not isinstance(resolution, int | float) or not 0 < resolution <= 1:
        raise EinspaceError(f"resolution = {resolution!r} must be in (0, 1], e.g. {RESOLUTION}")
    units = round(1 / resolution)
    if abs(units * resolution - 1) > 1e-9:
        raise EinspaceError(
            f"resolution = {resolution!r}: 1/resolution must be an integer; nearest valid "
            f"resolution: {1 / max(units, 1):g}"
        )
    return units


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class ThetaPoint:
    """A snapped θ and either its structure or the reason it was rejected.

    Attributes:
        theta: the snapped 7-vector (α, β, γ, δ, ε, φ, ρ).
        structure: the structure, or ``None`` when rejected.
        rejection: why the point is not usable (starts with ``disconnected``,
            ``redundant``, ``unrealizable`` or ``degenerate``), or ``None``.

    Examples:
        >>> p = theta_point((0, 0, 1, 0, 0, 1, 0))
        >>> p.ok, p.rejection.split(":")[0]
        (False, 'redundant')
    """

    theta: tuple[float, ...]
    structure: Structure | None
    rejection: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the point is a usable structure."""
        return self.structure is not None

    @property
    def spec(self) -> str:
        """The paper string of θ, e.g. ``'(0.5|0|0.5|0|0.5|0.5|0.25)'`` (parses back)."""
        return "(" + "|".join(f"{v:g}" for v in self.theta) + ")"


def theta_point(
    raw: Sequence[float],
    *,
    widths: Iterable[int] = (),
    mode: LayerSizing = DEFAULT_LAYER_SIZING,
    pad_tol: float = 0.15,
    snap: float = SNAP,
    resolution: float = RESOLUTION,
    reject_degenerate: bool = False,
) -> ThetaPoint:
    """Snap ``raw`` (see :func:`snap_theta`) and build its structure, or say why not.

    Never raises for a point that is merely unusable; it raises only for malformed input.

    Args:
        raw: seven raw numbers in [0, 1].
        widths: square layer widths the structure must realize at.
        mode: realization mode, ``"round"`` (paper rounding with padding) or ``"exact"``.
        pad_tol: the padding tolerance of round mode.
        snap: see :func:`snap_theta`.
        resolution: see :func:`snap_theta`.
        reject_degenerate: also reject the paper's degenerate points (ρ > min(α, ε)).

    Examples:
        >>> theta_point((0.3, 0.3, 0.4, 0.2, 0.3, 0.5, 0.2), widths=[16], mode="round").rejection
        'unrealizable: (0.3|0.3|0.4|0.2|0.3|0.5|0.2) at width 16 (nearest width that works: 14)'
        >>> theta_point((0.3, 0.3, 0.4, 0.2, 0.3, 0.5, 0.2), widths=[16], mode="exact").ok
        True
    """
    theta = snap_theta(raw, snap=snap, resolution=resolution)
    spec = "(" + "|".join(f"{v:g}" for v in theta) + ")"
    try:
        structure = Structure.from_theta(theta)
    except EinspaceError as err:
        text = str(err)
        kind = "disconnected" if "disconnected" in text else "invalid"
        detail = text.split(": ", 1)[1] if ": " in text else text
        return ThetaPoint(theta, None, f"{kind}: {detail.split(';')[0]}")
    problems = [p for p in structure.family.violations() if "redundant" in p]
    if problems:
        return ThetaPoint(theta, None, f"redundant: {problems[0]}")
    if reject_degenerate and structure.degenerate:
        return ThetaPoint(theta, None, "degenerate: ρ > min(α, ε) after reordering the factors")
    for width in widths:
        if not _realizes(structure, width, mode, pad_tol):
            near = nearest_width(structure, width, mode=mode, pad_tol=pad_tol)
            hint = f"nearest width that works: {near}" if near else "no width nearby works"
            return ThetaPoint(theta, None, f"unrealizable: {spec} at width {width} ({hint})")
    return ThetaPoint(theta, structure)


def sample_raw(rng: np.random.Generator) -> tuple[float, ...]:
    """Seven raw numbers: a uniform point of each simplex (Dirichlet(1, 1, 1)), uniform ρ.

    Examples:
        >>> raw = sample_raw(np.random.default_rng(0))
        >>> len(raw), round(sum(raw[:3]), 9), round(sum(raw[3:6]), 9)
        (7, 1.0, 1.0)
    """
    inputs = rng.dirichlet(np.ones(3))
    outputs = rng.dirichlet(np.ones(3))
    rho = rng.uniform()
    return (*(float(v) for v in inputs), *(float(v) for v in outputs), float(rho))


def sample_points(
    n: int,
    *,
    seed: int = 0,
    widths: Iterable[int] = (),
    mode: LayerSizing = DEFAULT_LAYER_SIZING,
    pad_tol: float = 0.15,
    snap: float = SNAP,
    resolution: float = RESOLUTION,
    reject_degenerate: bool = False,
    max_tries: int = 10_000,
) -> list[ThetaPoint]:
    """Draw ``n`` distinct valid points of the space, uniformly, with a seed.

    Raises:
        EinspaceError: fewer than ``n`` distinct valid points turned up in ``max_tries``
            draws (the message gives the most common rejection).

    Examples:
        >>> points = sample_points(3, seed=0, widths=[16, 64], mode="exact")
        >>> all(p.ok for p in points), len({p.theta for p in points})
        (True, 3)
    """
    n = check_int(n, "n", low=0, example=8)
    rng = np.random.default_rng(seed)
    width_list = list(widths)
    found: dict[tuple[float, ...], ThetaPoint] = {}
    reasons: dict[str, int] = {}
    tries = 0
    while len(found) < n and tries < max_tries:
        tries += 1
        point = theta_point(
            sample_raw(rng),
            widths=width_list,
            mode=mode,
            pad_tol=pad_tol,
            snap=snap,
            resolution=resolution,
            reject_degenerate=reject_degenerate,
        )
        if point.ok:
            found.setdefault(point.theta, point)
        else:
            assert point.rejection is not None
            kind = point.rejection.split(":")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
    if len(found) < n:
        common = max(reasons, key=lambda k: reasons[k]) if reasons else "duplicates"
        raise EinspaceError(
            f"found only {len(found)} of {n} distinct valid θ points in {max_tries} draws "
            f"(most common rejection: {common}); try mode='exact', a larger pad_tol, a finer "
            f"resolution, or fewer points"
        )
    return list(found.values())


# --------------------------------------------------------------------------- widths


def _realizes(structure: Structure, width: int, mode: LayerSizing, pad_tol: float) -> bool:
    try:
        _realize(structure, width, mode, pad_tol)
    except EinspaceError:
        return False
    return True


def nearest_width(
    structure: Structure,
    width: int,
    *,
    mode: LayerSizing = DEFAULT_LAYER_SIZING,
    pad_tol: float = 0.15,
    search: int = 256,
) -> int | None:
    """The width closest to ``width`` (the smaller on a tie) at which ``structure``
    realizes as a square layer, searching ``±search``; ``None`` when none does.

    Examples:
        >>> nearest_width(Structure.parse("(0.3|0.3|0.4|0.2|0.3|0.5|0.2)"), 16, mode="round")
        14
        >>> nearest_width(Structure.named("kronecker"), 64)
        64
    """
    for delta in range(search + 1):
        for candidate in (width - delta, width + delta) if delta else (width,):
            if candidate >= 1 and _realizes(structure, candidate, mode, pad_tol):
                return candidate
    return None


def check_widths(
    structures: Mapping[str, Structure] | Iterable[Structure],
    widths: Iterable[int],
    *,
    mode: LayerSizing = DEFAULT_LAYER_SIZING,
    pad_tol: float = 0.15,
) -> None:
    """Raise unless every structure realizes at every width (square layers).

    Raises:
        EinspaceError: naming the first structure and width that fail, the reason, and
            the nearest width at which that structure works.

    Examples:
        >>> check_widths([Structure.named("monarch")], [16, 64])
        >>> check_widths({"(0.3|0.3|0.4|0.2|0.3|0.5|0.2)":
        ...               Structure.parse("(0.3|0.3|0.4|0.2|0.3|0.5|0.2)")}, [16], mode="round")
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: structure '(0.3|0.3|0.4|0.2|0.3|0.5|0.2)' cannot be ...
    """
    items = (
        list(structures.items())
        if isinstance(structures, Mapping)
        else [(str(s), s) for s in structures]
    )
    width_list = list(widths)
    for name, structure in items:
        for width in width_list:
            try:
                _realize(structure, width, mode, pad_tol)
            except EinspaceError as err:
                near = nearest_width(structure, width, mode=mode, pad_tol=pad_tol)
                hint = (
                    f"the nearest width that works is {near}"
                    if near is not None
                    else "no width within ±256 works"
                )
                reason = str(err).split(". Use width")[0].rstrip(".")
                raise EinspaceError(
                    f"structure {name!r} cannot be realized at width {width} "
                    f"(mode={mode!r}, pad_tol={pad_tol:g}): {reason}. For this structure "
                    f"{hint}{_other_mode_hint(structure, width, mode)}"
                ) from None


def _other_mode_hint(structure: Structure, width: int, mode: LayerSizing) -> str:
    """``"; or pass mode='exact'"`` where exact mode realizes a width round mode refused
    (an exact-mode refusal already names round mode), else empty."""
    if mode == "exact":
        return ""
    try:
        _realize(structure, width, "exact", 0.0)
    except EinspaceError:
        return ""
    return "; or pass mode='exact', which realizes it without padding"
