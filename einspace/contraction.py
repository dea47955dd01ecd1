"""Contraction costs of a realization: best sequential order and optimal pairwise path.

A pairwise step costs the product of the sizes of every index present in either operand
(times the batch when one operand carries the batch index). MACs count these products.

Examples:
    >>> from einspace import Structure
    >>> r = Structure.named("low_rank", r=0.5).realize(64, 64)
    >>> best_sequential(r.family.classes, r.family.k, r.class_sizes)
    ((0, 1), 1024)
    >>> optimal_contraction(r.family.classes, r.family.k, r.class_sizes, batch=1).total
    1024
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from einspace import hypergraph
from einspace.index_classes import X, Y, factor_bit

__all__ = [
    "OptimalPath",
    "best_sequential",
    "optimal_contraction",
    "sequential_macs",
    "subset_indices",
]


def _prod(sizes: tuple[int, ...], positions: frozenset[int]) -> int:
    return math.prod(sizes[p] for p in positions)


def sequential_macs(
    classes: tuple[int, ...], k: int, sizes: tuple[int, ...], order: tuple[int, ...]
) -> int:
    """MACs per input vector of contracting x with the factors in ``order``."""
    return sum(_prod(sizes, s.classes) for s in hypergraph.sequential_steps(classes, k, order))


def best_sequential(
    classes: tuple[int, ...], k: int, sizes: tuple[int, ...]
) -> tuple[tuple[int, ...], int]:
    """The factor order with the fewest sequential MACs (first such order on ties)."""
    costs = [(sequential_macs(classes, k, sizes, o), o) for o in hypergraph.orders(k)]
    cost, order = min(costs, key=lambda c: c[0])
    return order, cost


@dataclass(frozen=True)
class OptimalPath:
    """The cheapest pairwise contraction of x, A, B, … for a batch.

    Attributes:
        total: MACs for the whole batch (an integer).
        path: the path in opt_einsum's format (pairs of positions in the shrinking list).
        steps: the (left, right) operand subsets of each step, as bitmasks over operands.
    """

    total: int
    path: tuple[tuple[int, int], ...]
    steps: tuple[tuple[int, int], ...]


@lru_cache(maxsize=1024)
def subset_indices(classes: tuple[int, ...], k: int) -> dict[int, frozenset[int]]:
    """For every non-empty subset of the operands x, A, B, … (a bitmask, operand 0 is x):
    the classes its contracted tensor carries — those touching the subset and also
    something outside it or y."""
    member = [X] + [factor_bit(i) for i in range(k)]
    everything = X | Y | (((1 << k) - 1) << 2)
    out = {}
    for subset in range(1, 1 << (k + 1)):
        inside = 0
        for o in range(k + 1):
            if subset >> o & 1:
                inside |= member[o]
        outside = everything & ~inside
        out[subset] = frozenset(
            p for p, m in enumerate(classes) if m & inside and m & (outside | Y)
        )
    return out


@lru_cache(maxsize=8192)
def optimal_contraction(
    classes: tuple[int, ...], k: int, sizes: tuple[int, ...], batch: int
) -> OptimalPath:
    """Dynamic programming over operand subsets (operand 0 is x, i is factor i - 1)."""
    n = k + 1
    full = (1 << n) - 1
    idx = subset_indices(classes, k)
    best: dict[int, tuple[int, tuple[int, int] | None]] = {1 << o: (0, None) for o in range(n)}
    for subset in sorted(range(1, full + 1), key=int.bit_count):
        if subset.bit_count() < 2:
            continue
        choice: tuple[int, tuple[int, int] | None] | None = None
        left = (subset - 1) & subset
        while left:
            right = subset ^ left
            if left < right and left in best and right in best:
                step = _prod(sizes, idx[left] | idx[right]) * (batch if subset & 1 else 1)
                cost = best[left][0] + best[right][0] + step
                if choice is None or cost < choice[0]:
                    choice = (cost, (left, right))
            left = (left - 1) & subset
        if choice is not None:
            best[subset] = choice

    steps: list[tuple[int, int]] = []

    def walk(subset: int) -> None:
        split = best[subset][1]
        if split is None:
            return
        walk(split[0])
        walk(split[1])
        steps.append(split)

    walk(full)
    current = [1 << o for o in range(n)]
    path = []
    for left, right in steps:
        i, j = sorted((current.index(left), current.index(right)))
        path.append((i, j))
        del current[j], current[i]
        current.append(left | right)
    return OptimalPath(best[full][0], tuple(path), tuple(steps))
