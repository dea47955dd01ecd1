"""Integer class sizes for concrete layer widths: paper rounding and exact factoring.

Reference widths: input classes use d_in, output classes d_out, and classes that touch
neither — and block-diagonal classes, which touch both — use min(d_in, d_out).

*Round* mode gives class c the size ``round(d_ref ** θ_c)`` (at least 1); the products may
miss d_in and d_out, and the layer pads or truncates. *Exact* mode splits the prime factors
of d_in (d_out) among the input (output) classes so the products are exact, every present
class getting at least 2, choosing the split closest to d_ref ** θ_c in log space; rank
classes are rounded. Block-diagonal classes take divisors of gcd(d_in, d_out).

Examples:
    >>> factorizations(12, 2)
    ((2, 6), (3, 4), (4, 3), (6, 2))
    >>> nearby_factorable(1021, 2)
    (1020, 1022)
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Final, Literal, Protocol

from einspace.errors import EinspaceError
from einspace.index_classes import X, Y

if TYPE_CHECKING:
    from einspace.family import Family


class StructureLike(Protocol):
    """What sizing reads of a :class:`~einspace.structure.Structure`: its family and θ."""

    @property
    def family(self) -> Family:
        """The classes present, in class order."""
        ...

    @property
    def theta(self) -> tuple[float, ...]:
        """The exponent of each class, aligned with ``family.classes``."""
        ...


__all__ = [
    "SIZING_MODES",
    "SizingMode",
    "divisors",
    "exact_sizes",
    "factorizations",
    "nearby_factorable",
    "prime_count",
    "reference_dim",
    "round_sizes",
]

SizingMode = Literal["round", "exact"]
"""How :meth:`~einspace.structure.Structure.realize` picks class sizes: ``"round"`` rounds
d^θ per class and pads or truncates within ``pad_tol``; ``"exact"`` distributes prime
factors so the products are exact."""

SIZING_MODES: Final[tuple[SizingMode, ...]] = ("round", "exact")


def reference_dim(mask: int, d_in: int, d_out: int) -> int:
    """The width whose power gives a class's size."""
    has_x, has_y = bool(mask & X), bool(mask & Y)
    if has_x and not has_y:
        return d_in
    if has_y and not has_x:
        return d_out
    return min(d_in, d_out)


def round_sizes(structure: StructureLike, d_in: int, d_out: int) -> tuple[int, ...]:
    """Paper rounding: ``round(d_ref ** θ_c)``, at least 1."""
    return tuple(
        max(1, round(reference_dim(m, d_in, d_out) ** t))
        for m, t in zip(structure.family.classes, structure.theta, strict=True)
    )


@lru_cache(maxsize=4096)
def divisors(n: int) -> tuple[int, ...]:
    """All divisors of n, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return tuple(sorted(set(small + [n // d for d in small])))


@lru_cache(maxsize=4096)
def factorizations(n: int, parts: int, min_part: int = 2) -> tuple[tuple[int, ...], ...]:
    """Every ordered way to write n as a product of ``parts`` integers ≥ ``min_part``."""
    if parts == 0:
        return ((),) if n == 1 else ()
    if parts == 1:
        return ((n,),) if n >= min_part else ()
    out: list[tuple[int, ...]] = []
    for d in divisors(n):
        if d >= min_part:
            out.extend((d, *rest) for rest in factorizations(n // d, parts - 1, min_part))
    return tuple(out)


def prime_count(n: int) -> int:
    """Number of prime factors of n, with multiplicity."""
    count, p = 0, 2
    while p * p <= n:
        while n % p == 0:
            n //= p
            count += 1
        p += 1
    return count + (1 if n > 1 else 0)


def nearby_factorable(d: int, parts: int, count: int = 1) -> tuple[int, ...]:
    """The nearest widths below and above ``d`` with at least ``parts`` prime factors."""
    below = [c for c in range(d - 1, 1, -1) if prime_count(c) >= parts][:count]
    above: list[int] = []
    c = d + 1
    while len(above) < count:
        if prime_count(c) >= parts:
            above.append(c)
        c += 1
    return tuple(sorted(below + above))


def exact_sizes(structure: StructureLike, d_in: int, d_out: int) -> tuple[int, ...]:
    """Sizes whose input and output products are exactly d_in and d_out."""
    classes, theta = structure.family.classes, structure.theta
    pos = {
        "in": [p for p, m in enumerate(classes) if m & X and not m & Y],
        "out": [p for p, m in enumerate(classes) if m & Y and not m & X],
        "diag": [p for p, m in enumerate(classes) if m & X and m & Y],
    }
    sizes = list(round_sizes(structure, d_in, d_out))

    def target(p: int) -> float:
        return theta[p] * math.log(reference_dim(classes[p], d_in, d_out))

    def cost(ps: list[int], values: tuple[int, ...]) -> float:
        return sum((math.log(v) - target(p)) ** 2 for p, v in zip(ps, values, strict=True))

    best: tuple[float, dict[int, int]] | None = None
    g_total = math.gcd(d_in, d_out)
    for g in divisors(g_total) if pos["diag"] else (1,):
        for dv in factorizations(g, len(pos["diag"])):
            ins = factorizations(d_in // g, len(pos["in"]))
            outs = factorizations(d_out // g, len(pos["out"]))
            if not ins or not outs:
                continue
            bi = min(ins, key=lambda v: cost(pos["in"], v))
            bo = min(outs, key=lambda v: cost(pos["out"], v))
            total = cost(pos["diag"], dv) + cost(pos["in"], bi) + cost(pos["out"], bo)
            if best is None or total < best[0] - 1e-12:
                chosen = dict(zip(pos["diag"] + pos["in"] + pos["out"], dv + bi + bo, strict=True))
                best = (total, chosen)
    if best is None:
        raise EinspaceError(_exact_failure(structure, d_in, d_out, pos))
    for p, v in best[1].items():
        sizes[p] = v
    return tuple(sizes)


def _exact_failure(
    structure: StructureLike, d_in: int, d_out: int, pos: dict[str, list[int]]
) -> str:
    n_in = len(pos["in"]) + len(pos["diag"])
    n_out = len(pos["out"]) + len(pos["diag"])
    reasons, hints = [], []
    for d, n, side in ((d_in, n_in, "d_in"), (d_out, n_out, "d_out")):
        if prime_count(d) < n:
            reasons.append(
                f"{side} = {d} has {prime_count(d)} prime factor(s) but the structure has "
                f"{n} {side[2:]}put classes, each needing a factor ≥ 2"
            )
            hints.append(f"{side} ∈ {nearby_factorable(d, n)}")
    if not reasons and pos["diag"]:
        g = math.gcd(d_in, d_out)
        reasons.append(
            f"the block-diagonal classes need a common factor of d_in and d_out, "
            f"gcd({d_in}, {d_out}) = {g} has too few prime factors"
        )
        hints.append(f"d_out = {d_in}")
    hint = (" Nearby sizes that factor: " + ", ".join(hints) + ".") if hints else ""
    return (
        f"mode='exact' cannot realize {structure} at d_in = {d_in}, d_out = {d_out}: "
        + "; ".join(reasons)
        + f".{hint} Or use mode='round' with padding."
    )
