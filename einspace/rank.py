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

**Block-diagonal classes.** A class holding both x and y (``xy``, ``xAy``, …) of size g makes an
exact realization's matrix block diagonal with g blocks, each a generic realization of the
family without that class, so its rank is g times the rank of one block and the bound above,
taken on the other classes, times g is a lower bound. (With padding or truncation the blocks
are cut unevenly and no lower bound is claimed.)

**The decision (one rule, every door).** :func:`certified_lower` gives the lower bound,
:func:`rank_method` decides: when the lower bound meets the upper bound the rank is proven
(``"proof"``; every exact k = 2 realization at powers of two from 16 to 4096, and most others);
otherwise, for k ≤ ``SVD_MAX_FACTORS`` (2) factors and ``d_out · d_in ≤ SVD_MAX_ENTRIES``
(2¹⁴, 128 × 128), it is measured by SVD of the materialized matrix (``"svd"``); otherwise it
is reported as the bound (``"bound"``, ``is_bound = True``).
:attr:`einspace.Realization.true_rank` (``show``, ``score([spec])``) and
:func:`einspace.enumerate_realizations` (``score("all")``, the report) both use this rule, so
they report the same rank for the same realization. The limits are set by the table, which
must measure every unproven row: at 96 → 96 it measures 764 rows of 96 × 96 (about a second);
a limit of 2²⁰ would have a 768 → 768 table measure 3779 rows of 768 × 768 (minutes), and
measuring k = 3 rows would have the 8 → 8 table measure 246 304 rows (six minutes).
:meth:`einspace.Realization.numeric_rank` measures any one realization on request.
The factors are seeded standard normals, so the SVD rank is the generic rank with
probability 1. The tolerance is numpy's: singular values above
``σ_max · max(d_in, d_out) · ε_float64`` count.

Examples:
    >>> from einspace import realize_sizes
    >>> r = realize_sizes("xA,xB,Ay,By,ABy", {"α": 12, "β": 4, "δ": 8, "ε": 3, "φ": 2},
    ...                   48, 48)
    >>> r.rank_bound, r.rank, r.rank_method
    (48, 40, 'svd')
    >>> int(packing_lower_bound(32, 1, 32, 1, 32, 32, 6))  # BTT at 1024 → 1024 is full rank
    1024
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from einspace.index_classes import GREEK, X, Y, class_token

__all__ = [
    "SVD_MAX_ENTRIES",
    "SVD_MAX_FACTORS",
    "RankMethod",
    "TrueRank",
    "certified_lower",
    "packing_lower_bound",
    "prefix_boxes",
    "rank_method",
]

SVD_MAX_ENTRIES: Final = 1 << 14
"""Measure an unproven rank by SVD when d_out · d_in is at most this (128 × 128)…"""

SVD_MAX_FACTORS: Final = 2
"""…and the realization has at most this many factors (module docstring)."""

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


def _prefix_boxes(sizes: list[IntArray], keep: IntArray) -> list[list[IntArray]]:
    """:func:`prefix_boxes` vectorized over rows (a box with a 0 side bounds nothing)."""
    out = []
    for j in range(len(sizes)):
        later = np.prod(sizes[j + 1 :], axis=0) if j + 1 < len(sizes) else np.ones_like(keep)
        q = np.minimum(sizes[j], keep // later)
        out.append([np.ones_like(keep)] * j + [q] + sizes[j + 1 :])
    return out


def certified_lower(
    classes: Sequence[int], sizes: npt.ArrayLike, d_in: int, d_out: int
) -> IntArray:
    """The proven lower bound on the rank of each row of ``sizes`` (rows of class sizes
    aligned with ``classes``, 1 = absent) realized at d_in → d_out; 0 where none applies
    (a class of a third factor, or a block-diagonal class with padding or truncation).

    Examples:
        >>> from einspace import Family
        >>> fam = Family.parse("xA,xB,Ay,By,ABy")  # α, β, δ, ε, φ
        >>> certified_lower(fam.classes, [[12, 4, 8, 3, 2], [16, 3, 12, 4, 1]], 48, 48)
        array([24, 36])
        >>> certified_lower(Family.parse("xA,Ay,xAy").classes, [[4, 4, 3]], 12, 12)  # 3 blocks
        array([12])
    """
    rows = np.atleast_2d(np.asarray(sizes, dtype=np.int64))
    ones = np.ones(len(rows), dtype=np.int64)
    greek = dict.fromkeys(_GREEK_ORDER, ones)
    blocks, other = ones, np.zeros(len(rows), dtype=bool)
    in_all, out_all = ones, ones
    for j, m in enumerate(classes):
        col = rows[:, j]
        in_all = in_all * col if m & X else in_all
        out_all = out_all * col if m & Y else out_all
        name = GREEK.get(class_token(m))
        if name is not None:
            greek[name] = col
        elif m & X and m & Y:
            blocks = blocks * col
        else:  # a class of a third factor: no construction
            other |= col > 1
    exact = (in_all == d_in) & (out_all == d_out)
    other |= (blocks > 1) & ~exact
    keep_in = np.minimum(d_in, in_all) // blocks
    keep_out = np.minimum(d_out, out_all) // blocks
    best = packing_lower_bound(*(greek[c] for c in _GREEK_ORDER))
    cut = np.flatnonzero(~exact & ~other)  # padded or truncated: boxes inside the prefix
    if len(cut):
        ins, outs = ("α", "β", "γ"), ("δ", "ε", "φ")
        part = {c: greek[c][cut] for c in _GREEK_ORDER}
        best[cut] = 0  # the full box is not inside the prefix
        for box_in in _prefix_boxes([part[c] for c in ins], keep_in[cut]):
            for box_out in _prefix_boxes([part[c] for c in outs], keep_out[cut]):
                reduced = dict(part, **dict(zip(ins + outs, box_in + box_out, strict=True)))
                box = packing_lower_bound(*(reduced[c] for c in _GREEK_ORDER))
                best[cut] = np.maximum(best[cut], box)
    return np.where(other, 0, blocks * best)


def rank_method(
    lower: npt.ArrayLike, upper: npt.ArrayLike, k: int, d_in: int, d_out: int
) -> npt.NDArray[np.str_]:
    """How the rank of a k-factor realization at d_in → d_out is known, per row: ``"proof"``
    when the certified lower bound meets the upper bound, else ``"svd"`` when
    k ≤ :data:`SVD_MAX_FACTORS` and d_out · d_in ≤ :data:`SVD_MAX_ENTRIES`, else ``"bound"``.

    This is the one decision every door uses (:attr:`einspace.Realization.true_rank` and
    :func:`einspace.enumerate_realizations`).

    Examples:
        >>> rank_method([48, 32], [48, 48], 2, 48, 48).tolist()
        ['proof', 'svd']
        >>> str(rank_method(96, 192, 2, 192, 192)), str(rank_method(8, 9, 3, 9, 9))
        ('bound', 'bound')
    """
    measurable = k <= SVD_MAX_FACTORS and d_in * d_out <= SVD_MAX_ENTRIES
    unproven = "svd" if measurable else "bound"
    return np.where(np.asarray(lower) >= np.asarray(upper), "proof", unproven)
