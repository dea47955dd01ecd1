"""The rank of the matrix a realization really computes: proven, measured, or only bounded.

A realization computes a ``(d_out, d_in)`` matrix ``M``: the tensor network's
``(Π n_out, Π n_in)`` matrix ``W`` with its first ``c = min(d_in, Π n_in)`` columns and first
``r = min(d_out, Π n_out)`` rows kept (padding x or truncating y keeps a prefix, in the row-major
order of the classes), bordered by zero rows and columns. The rank means the *generic* rank: the
rank for random factors, which every choice of factors outside a measure-zero set attains.

**Upper bound.** ``rank_bound`` = min(min-cut, d_in, d_out) (docs: theory §2). The min-cut is not
the rank in general, even for k = 2: a rank-2 tensor train with sizes (α, β, δ, ε, ρ) =
(3, 5, 5, 3, 2) has min-cut 15 and rank 14, and the exact realization xA,xB,Ay,By,ABy with
sizes (12, 4, 8, 3, 2) at 48 → 48 has min-cut 48 and rank 40.

**Exact lower bound (k ≤ 2, paper space).** The generic rank is at least the rank at any one
choice of factors. Choose 0/1 factors that make ``W`` a partial permutation matrix; its rank is
its number of ones. The construction (:func:`packing_lower_bound`): fix p ≤ min(n_α, n_δ) and
q ≤ min(n_β, n_ε). A *fiber* is a value of (γ, φ, ρ). An active fiber pairs a p × q rectangle
of (δ, ε) values (a *row slot*) with a p × q rectangle of (α, β) values (a *column slot*): A
matches the rectangle's α block to its δ block one to one, B matches β to ε. Active fibers
with the same φ take disjoint row slots (there are ⌊n_δ/p⌋·⌊n_ε/q⌋) and fibers with the same
γ disjoint column slots (⌊n_α/p⌋·⌊n_β/q⌋). Then no row and no column of ``W`` holds two ones,
so rank ≥ p·q·(number of active fibers). Choosing the active fibers is a flow on the complete
bipartite graph φ × γ with capacity n_ρ per edge; its maximum is
``min(n_φ·R, n_γ·C, n_φ·n_γ·n_ρ)`` (a cut of a bilinear capacity is smallest at a corner). For a
padded or truncated realization the same bound is taken on boxes inside the kept prefix: keeping
the first ``c`` columns keeps every column whose leading input class index is below
``c // S`` (S the product of the later input sizes); restricting the index ranges of random
factors gives random factors of smaller sizes.

When this lower bound meets the upper bound the rank is proven (``method = "proof"``). This
covers every exact k = 2 realization at powers of two from 16 to 4096 and most others.
Otherwise, and for k ≥ 3 or block-diagonal classes, the rank is measured by SVD of the
materialized matrix when ``d_out · d_in ≤ SVD_MAX_ENTRIES`` (``method = "svd"``). The factors are
seeded standard normals, so the SVD rank is the generic rank with probability 1. The tolerance
is numpy's: singular values above ``σ_max · max(d_in, d_out) · ε_float64`` count. Beyond that
size the rank is reported as the bound (``method = "bound"``, ``is_bound = True``).

Examples:
    >>> from einspace import Realization
    >>> r = Realization.from_sizes("xA,xB,Ay,By,ABy", {"α": 12, "β": 4, "δ": 8, "ε": 3, "φ": 2},
    ...                            48, 48)
    >>> rep = true_rank(r)
    >>> r.rank_bound, rep.rank, rep.method
    (48, 40, 'svd')
    >>> int(packing_lower_bound(32, 1, 32, 1, 32, 32, 6))  # BTT at 1024 → 1024 is full rank
    1024
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt

from einspace.index_classes import GREEK, class_token

if TYPE_CHECKING:
    from einspace.family import Family
    from einspace.realization import Realization

__all__ = [
    "SVD_MAX_ENTRIES",
    "TABLE_SVD_MAX_ENTRIES",
    "TABLE_SVD_MAX_ROWS",
    "RankMethod",
    "TrueRank",
    "k2_sizes",
    "packing_lower_bound",
    "prefix_boxes",
    "true_rank",
]

SVD_MAX_ENTRIES: Final = 1 << 20
"""Materialize and SVD a realization when d_out · d_in is at most this (1024 × 1024, ~1 s)."""

TABLE_SVD_MAX_ENTRIES: Final = 1 << 12
"""The per-row SVD threshold of :func:`einspace.enumerate_realizations` (64 × 64): a table has
thousands of rows, so only small matrices are measured there."""

TABLE_SVD_MAX_ROWS: Final = 2000
"""…and only when at most this many rows lack a proof (each SVD costs about a millisecond)."""

RankMethod = Literal["proof", "svd", "bound"]

_GREEK_ORDER: Final = ("α", "β", "γ", "δ", "ε", "φ", "ρ")
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TrueRank:
    """The rank of a realization's matrix and how it is known.

    Attributes:
        rank: the rank (the upper bound when ``is_bound``).
        is_bound: True when ``rank`` is only the upper bound ``rank_bound``.
        method: ``"proof"`` (the certified lower bound meets the upper bound), ``"svd"``
            (measured), or ``"bound"`` (not measured: too large to materialize).
        lower: the certified lower bound (0 when none applies).
        upper: the upper bound (``rank_bound``).
    """

    rank: int
    is_bound: bool
    method: RankMethod
    lower: int
    upper: int


def _cands(n: IntArray) -> list[IntArray]:
    """Rectangle sides tried: n, n/2, …, n/8 and 1 (any choice is a valid lower bound)."""
    return [np.maximum(1, n // j) for j in range(1, 9)] + [np.ones_like(n)]


def packing_lower_bound(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    g: npt.ArrayLike,
    d: npt.ArrayLike,
    e: npt.ArrayLike,
    f: npt.ArrayLike,
    rho: npt.ArrayLike,
) -> IntArray:
    """A proven lower bound on the generic rank of the k = 2 network with class sizes
    (α, β, γ, δ, ε, φ, ρ) = (a, b, g, d, e, f, rho) (1 = absent), vectorized over arrays.

    It is the rank of a 0/1 choice of factors that makes the matrix a partial permutation
    (module docstring): max over p, q of ``p·q·min(f·⌊d/p⌋·⌊e/q⌋, g·⌊a/p⌋·⌊b/q⌋, f·g·rho)``.

    Examples:
        >>> int(packing_lower_bound(32, 1, 32, 1, 32, 32, 1))  # Monarch 1024 → 1024
        1024
        >>> int(packing_lower_bound(8, 8, 1, 1, 1, 64, 1))  # rows a_φ ⊗ b_φ: 64 independent
        64
        >>> int(packing_lower_bound(64, 1, 1, 1, 64, 1, 8))  # low rank 8
        8
    """
    arrs = [np.asarray(v, dtype=np.int64) for v in (a, b, g, d, e, f, rho)]
    a_, b_, g_, d_, e_, f_, r_ = np.broadcast_arrays(*arrs)
    best = np.zeros(a_.shape, dtype=np.int64)
    for p in _cands(np.minimum(a_, d_)):
        for q in _cands(np.minimum(b_, e_)):
            fibers = np.minimum(
                np.minimum(f_ * (d_ // p) * (e_ // q), g_ * (a_ // p) * (b_ // q)), f_ * g_ * r_
            )
            best = np.maximum(best, p * q * fibers)
    return best


def k2_sizes(family: Family, class_sizes: tuple[int, ...]) -> dict[str, int] | None:
    """Greek name → size (1 for absent classes) when ``family`` is a paper-space family of
    k ≤ 2, else None."""
    if family.k > 2:
        return None
    out = dict.fromkeys(_GREEK_ORDER, 1)
    for m, n in zip(family.classes, class_sizes, strict=True):
        name = GREEK.get(class_token(m))
        if name is None:
            return None  # a block-diagonal class
        out[name] = n
    return out


def prefix_boxes(sizes: list[int], keep: int) -> list[list[int]]:
    """Boxes inside the first ``keep`` row-major indices of a grid of ``sizes``.

    Box j fixes the leading j classes to index 0, keeps the class j index below
    ``keep // S_j`` (S_j the product of the later sizes) and the rest whole.

    Examples:
        >>> prefix_boxes([4, 3], 8)  # indices 0..7 of a 4 × 3 grid hold 2 × 3 and 1 × 3
        [[2, 3], [1, 3]]
    """
    out = []
    for j in range(len(sizes)):
        later = math.prod(sizes[j + 1 :])
        q = min(sizes[j], keep // later)
        if q >= 1:
            out.append([1] * j + [q] + sizes[j + 1 :])
    return out or [[1] * len(sizes)]


def _certified_lower(r: Realization) -> int:
    sizes = k2_sizes(r.family, r.class_sizes)
    if sizes is None:
        return 0
    ins, outs = ("α", "β", "γ"), ("δ", "ε", "φ")
    cols, rows = min(r.d_in, r.padded_in), min(r.d_out, r.padded_out)
    best = 0
    for box_in in prefix_boxes([sizes[c] for c in ins], cols):
        for box_out in prefix_boxes([sizes[c] for c in outs], rows):
            reduced = dict(sizes, **dict(zip(ins, box_in, strict=True)))
            reduced.update(zip(outs, box_out, strict=True))
            best = max(best, int(packing_lower_bound(*(reduced[c] for c in _GREEK_ORDER))))
    return best


def true_rank(r: Realization, svd_max_entries: int = SVD_MAX_ENTRIES) -> TrueRank:
    """The rank of ``r``'s (d_out, d_in) matrix: proven, measured by SVD, or the bound.

    Examples:
        >>> from einspace import Structure
        >>> true_rank(Structure.named("btt").realize(4096, 4096))
        TrueRank(rank=4096, is_bound=False, method='proof', lower=4096, upper=4096)
    """
    upper = r.rank_bound
    lower = _certified_lower(r)
    if lower > upper:  # pragma: no cover - a specialization cannot beat the min-cut
        raise AssertionError(f"certified rank {lower} above the min-cut {upper} for {r}")
    if lower == upper:
        return TrueRank(upper, False, "proof", lower, upper)
    if r.d_in * r.d_out <= svd_max_entries:
        return TrueRank(r.numeric_rank(seed=0), False, "svd", lower, upper)
    return TrueRank(upper, True, "bound", lower, upper)
