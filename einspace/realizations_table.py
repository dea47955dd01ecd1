"""Every exact integer realization of every family at (d_in, d_out), as one DataFrame.

This is the inner loop of the search, so it is vectorized per family: the size choices form
a Cartesian product (prime-factor splits of d_in over the input classes, of d_out over the
output classes, divisors of min(d_in, d_out) for each rank class, and divisors of
gcd(d_in, d_out) for block-diagonal classes; every present class has size ≥ 2) and the counts
are products over columns. Realizations that a factor renaming maps onto each other (family
automorphisms, e.g. swapping the two Kronecker factors) are the same layer and are listed
once: the row kept is the lexicographically largest size vector of its orbit.

The ``rank`` column is the rank of the layer's matrix, decided by the same rule as
:attr:`einspace.Realization.true_rank` (:func:`einspace.rank.rank_method`): proven where the
partial-permutation lower bound meets the min-cut (every k ≤ 2 paper-space row at powers of two),
else measured by SVD when k ≤ 2 and d_in · d_out ≤ :data:`einspace.rank.SVD_MAX_ENTRIES`
(128 × 128), else the bound with ``rank_is_bound = True``. A row and the realization built
from its sizes report the same rank.

Examples:
    >>> df = enumerate_realizations(16, 16)
    >>> int((df["name"] == "kronecker").sum())  # 9 ordered splits, swapping A and B pairs 8
    5
    >>> row = df[(df["name"] == "monarch") & (df["α"] == 4) & (df["ε"] == 4)].iloc[0]
    >>> int(row["params"]), int(row["macs_sequential"]), int(row["rank_bound"])
    (128, 128, 16)
    >>> int(row["rank"]), bool(row["rank_is_bound"]), row["rank_method"]
    (16, False, 'proof')
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pandas as pd

from einspace import hypergraph
from einspace.contraction import subset_indices
from einspace.enumeration import enumerate_families
from einspace.errors import EinspaceError
from einspace.family import Family
from einspace.index_classes import X, Y, class_name, permute_class, universe
from einspace.rank import certified_lower, rank_method
from einspace.realization import check_width
from einspace.sizing import divisors, factorizations, prime_count
from einspace.structure import realize_sizes

__all__ = ["enumerate_realizations", "family_size_grid"]

Sizes = npt.NDArray[np.int64]
_INT_LIMIT = 2.0**62


def _product(rows: Iterable[Sizes]) -> Sizes:
    """Cartesian product of row blocks: each block is (n_i, w_i); result (Π n_i, Σ w_i)."""
    out = np.zeros((1, 0), dtype=np.int64)
    for block in rows:
        a = np.repeat(out, len(block), axis=0)
        b = np.tile(block, (len(out), 1))
        out = np.concatenate([a, b], axis=1)
    return out


def _rows(choices: tuple[tuple[int, ...], ...], width: int) -> Sizes:
    return np.array(choices, dtype=np.int64).reshape(len(choices), width)


def family_size_grid(family: Family, d_in: int, d_out: int) -> Sizes:
    """All exact size vectors of ``family`` (columns in class order), orbit-deduplicated."""
    cls = family.classes
    groups = {
        "in": [p for p, m in enumerate(cls) if m & X and not m & Y],
        "out": [p for p, m in enumerate(cls) if m & Y and not m & X],
        "rank": [p for p, m in enumerate(cls) if not m & (X | Y)],
        "diag": [p for p, m in enumerate(cls) if m & X and m & Y],
    }
    rank_choices = np.array([d for d in divisors(min(d_in, d_out)) if d >= 2], dtype=np.int64)
    blocks: list[Sizes] = []
    diag_options = [g for g in divisors(math.gcd(d_in, d_out))] if groups["diag"] else [1]
    for g in diag_options:
        parts = [
            _rows(factorizations(g, len(groups["diag"])), len(groups["diag"])),
            _rows(factorizations(d_in // g, len(groups["in"])), len(groups["in"])),
            _rows(factorizations(d_out // g, len(groups["out"])), len(groups["out"])),
        ]
        parts += [rank_choices.reshape(-1, 1)] * len(groups["rank"])
        if any(len(p) == 0 for p in parts):
            continue
        grid = _product(parts)
        order = groups["diag"] + groups["in"] + groups["out"] + groups["rank"]
        sizes = np.empty_like(grid)
        sizes[:, order] = grid
        blocks.append(sizes)
    if not blocks:
        return np.zeros((0, len(cls)), dtype=np.int64)
    sizes = np.concatenate(blocks)
    index = {m: p for p, m in enumerate(cls)}
    keep = np.ones(len(sizes), dtype=bool)
    for perm in family.automorphisms():
        target = [index[permute_class(m, perm)] for m in cls]
        if target == list(range(len(cls))):
            continue
        image = np.empty_like(sizes)
        image[:, target] = sizes
        diff = image != sizes
        first = diff.argmax(axis=1)
        rows = np.arange(len(sizes))
        keep &= ~diff.any(axis=1) | (sizes[rows, first] > image[rows, first])
    return sizes[keep]


def _prod_cols(sizes: Sizes, cols: Iterable[int]) -> npt.NDArray[np.int64]:
    cols = sorted(cols)
    if not cols:
        return np.ones(len(sizes), dtype=np.int64)
    return np.prod(sizes[:, cols], axis=1)


def _optimal_batch1(family: Family, sizes: Sizes) -> npt.NDArray[np.int64]:
    """Optimal-path MACs at batch 1, vectorized over rows (DP over operand subsets)."""
    n = family.k + 1
    full = (1 << n) - 1
    idx = subset_indices(family.classes, family.k)
    best: dict[int, npt.NDArray[np.int64]] = {
        1 << o: np.zeros(len(sizes), dtype=np.int64) for o in range(n)
    }
    for s in sorted(range(1, full + 1), key=int.bit_count):
        if s.bit_count() < 2:
            continue
        left = (s - 1) & s
        while left:
            right = s ^ left
            if left < right:
                cost = best[left] + best[right] + _prod_cols(sizes, idx[left] | idx[right])
                best[s] = np.minimum(best[s], cost) if s in best else cost
            left = (left - 1) & s
    return best[full]


def _true_ranks(
    fams: list[Family],
    family_id: npt.NDArray[np.int64],
    sizes: Sizes,
    uni: tuple[int, ...],
    bound: npt.NDArray[np.int64],
    k: int,
    d_in: int,
    d_out: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
    """(rank, rank_is_bound, rank_method) per row, by the rule every door uses
    (:func:`einspace.rank.rank_method`); the SVDs of one table share a shape and run stacked."""
    lower = certified_lower(uni, sizes, d_in, d_out)
    method = rank_method(lower, bound, k, d_in, d_out).astype(object)
    rank = bound.copy()
    measure = np.flatnonzero(method == "svd")
    for chunk in np.array_split(measure, max(1, len(measure) // 256)):
        mats = []
        for i in chunk:
            fam = fams[int(family_id[i])]
            row = [int(sizes[i, uni.index(m)]) for m in fam.classes]
            mats.append(realize_sizes(fam, row, d_in, d_out).materialize(seed=0))
        if mats:
            rank[chunk] = np.linalg.matrix_rank(np.stack(mats))
    return rank, method == "bound", method


def enumerate_realizations(
    d_in: int,
    d_out: int | None = None,
    k: int = 2,
    diagonal: bool = False,
    max_rows: int = 5_000_000,
) -> pd.DataFrame:
    """Every exact integer realization of every valid k-factor family at (d_in, d_out).

    Columns: ``family_id`` (index into ``enumerate_families(k, diagonal)``), ``family``
    (canonical string), ``name``, one size column per class of the k-factor universe (Greek
    names for k = 2; 1 where absent), ``params``, ``macs_sequential``, ``macs_optimal``
    (batch 1), ``rank_bound`` (hypergraph min-cut), ``rank``, ``rank_is_bound`` and
    ``rank_method`` (the true rank and how it is known, module docstring), ``nu_eff``,
    ``omega_eff``, ``psi_eff`` (from ``rank``) and ``degenerate``.

    Examples:
        >>> df = enumerate_realizations(64, 64)
        >>> bool((df["macs_optimal"] <= df["macs_sequential"]).all())
        True
    """
    d_in = check_width(d_in, "d_in")
    d_out = d_in if d_out is None else check_width(d_out, "d_out")
    fams = enumerate_families(k, diagonal)
    uni = universe(k, diagonal)
    names = [class_name(m, k) for m in uni]
    cols: dict[str, list[npt.NDArray[np.generic]]] = {
        key: []
        for key in ("family_id", "sizes", "params", "macs_sequential", "macs_optimal", "cut")
    }
    total_rows = 0
    room_in, room_out = prime_count(d_in), prime_count(d_out)
    for fid, fam in enumerate(fams):
        n_in = sum(1 for m in fam.classes if m & X)
        n_out = sum(1 for m in fam.classes if m & Y)
        if n_in > room_in or n_out > room_out:
            continue  # every class needs a factor ≥ 2: not enough prime factors
        sizes = family_size_grid(fam, d_in, d_out)
        if not len(sizes):
            continue
        total_rows += len(sizes)
        if total_rows > max_rows:
            raise EinspaceError(
                f"more than max_rows = {max_rows} realizations at d_in = {d_in}, "
                f"d_out = {d_out}, k = {k}; raise max_rows or use smaller widths"
            )
        if float(np.log2(sizes.astype(float)).sum(axis=1).max()) > math.log2(_INT_LIMIT):
            raise EinspaceError(
                f"sizes at d_in = {d_in}, d_out = {d_out} overflow 64-bit counts for family "
                f"{fam}; use smaller widths"
            )
        cls = fam.classes
        params = sum(_prod_cols(sizes, s) for s in hypergraph.factor_class_sets(cls, fam.k))
        seq = np.min(
            [
                np.sum(
                    [
                        _prod_cols(sizes, s.classes)
                        for s in hypergraph.sequential_steps(cls, fam.k, o)
                    ],
                    axis=0,
                )
                for o in hypergraph.orders(fam.k)
            ],
            axis=0,
        )
        cut = np.min([_prod_cols(sizes, c) for c in hypergraph.cuts(cls, fam.k)], axis=0)
        full = np.ones((len(sizes), len(uni)), dtype=np.int64)
        full[:, [uni.index(m) for m in cls]] = sizes
        cols["family_id"].append(np.full(len(sizes), fid))
        cols["sizes"].append(full)
        cols["params"].append(np.asarray(params))
        cols["macs_sequential"].append(seq)
        cols["macs_optimal"].append(_optimal_batch1(fam, sizes))
        cols["cut"].append(cut)
    if not cols["family_id"]:
        raise EinspaceError(
            f"no exact realization exists at d_in = {d_in}, d_out = {d_out} for k = {k}: "
            "every present class needs a factor ≥ 2 (a prime width admits only one class "
            "per side)"
        )
    data = {key: np.concatenate(v) for key, v in cols.items()}
    fid_arr = data["family_id"]
    fam_str = np.array([str(f) for f in fams], dtype=object)
    fam_name = np.array([f.name for f in fams] if k <= 2 else [None] * len(fams), dtype=object)
    out = pd.DataFrame(
        {"family_id": fid_arr, "family": fam_str[fid_arr], "name": fam_name[fid_arr]}
    )
    full = data["sizes"]
    for j, col in enumerate(names):
        out[col] = full[:, j]
    seq, params = data["macs_sequential"], data["params"]
    bound = np.minimum(data["cut"], min(d_in, d_out))
    rank, rank_is_bound, rank_method = _true_ranks(fams, fid_arr, full, uni, bound, k, d_in, d_out)
    log_d = math.log(math.sqrt(d_in * d_out))
    m = min(d_in, d_out)
    extra = {
        "params": params,
        "macs_sequential": seq,
        "macs_optimal": data["macs_optimal"],
        "rank_bound": bound,
        "rank": rank,
        "rank_is_bound": rank_is_bound,
        "rank_method": rank_method,
        "nu_eff": np.log(seq) / log_d - 1,
        "omega_eff": np.log(seq / params) / log_d,
        "psi_eff": np.log(rank) / math.log(m) if m > 1 else np.ones(len(rank)),
    }
    if k == 2:
        g = {c: full[:, names.index(c)] for c in ("α", "β", "δ", "ε", "ρ")}
        extra["degenerate"] = g["ρ"] > np.maximum(
            np.minimum(g["α"], g["ε"]), np.minimum(g["β"], g["δ"])
        )
    else:
        extra["degenerate"] = np.zeros(len(rank), dtype=bool)
    out = pd.concat([out, pd.DataFrame(extra)], axis=1)
    return out
