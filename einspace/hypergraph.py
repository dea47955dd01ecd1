"""The tensor hypergraph of a family: contraction steps, cuts and connectivity.

Nodes are the tensors ``x``, ``y`` and the factors; hyperedges are the index classes. Every
function here works on *positions* into a family's ``classes`` tuple, so the same sets serve
both the exponent forms (sums of θ) and the exact counts (products of sizes).

Examples:
    >>> from einspace.index_classes import universe
    >>> btt = tuple(universe(2)[i] for i in (0, 2, 4, 5, 6))  # α γ ε φ ρ
    >>> [sorted(s.classes) for s in sequential_steps(btt, 2, (0, 1))]
    [[0, 1, 3, 4], [1, 2, 3, 4]]
    >>> sorted(map(sorted, cuts(btt, 2)))
    [[0, 1], [0, 1, 2, 3, 4], [1, 3, 4], [2, 3]]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from einspace.index_classes import X, Y, factor_bit

__all__ = [
    "Step",
    "cuts",
    "factor_class_sets",
    "is_connected",
    "orders",
    "sequential_steps",
]


@dataclass(frozen=True)
class Step:
    """One step of a sequential contraction: the live tensor times factor ``factor``.

    Attributes:
        factor: the factor contracted at this step.
        classes: positions of every class present in either operand (the step's cost set).
        contracted: the factor's classes summed away at this step (its fan-in).
        added: the factor's classes that enter the live set here (its fan-out).
        batch: the factor's classes that were live and stay live (block indices).
    """

    factor: int
    classes: frozenset[int]
    contracted: frozenset[int]
    added: frozenset[int]
    batch: frozenset[int]


def factor_class_sets(classes: tuple[int, ...], k: int) -> tuple[frozenset[int], ...]:
    """For each factor, the positions of the classes that contain it."""
    return tuple(frozenset(p for p, m in enumerate(classes) if m & factor_bit(i)) for i in range(k))


def orders(k: int) -> list[tuple[int, ...]]:
    """Every order in which the factors can be applied."""
    return list(itertools.permutations(range(k)))


def sequential_steps(classes: tuple[int, ...], k: int, order: tuple[int, ...]) -> list[Step]:
    """The steps of contracting ``x`` with the factors in ``order`` (docs/theory.md §2).

    After each step only the classes still needed by a later factor or by ``y`` stay live.
    """
    fsets = factor_class_sets(classes, k)
    live = frozenset(p for p, m in enumerate(classes) if m & X)
    out = []
    for t, f in enumerate(order):
        later = 0
        for g in order[t + 1 :]:
            later |= factor_bit(g)
        present = live | fsets[f]
        keep = frozenset(p for p in present if classes[p] & (later | Y))
        out.append(
            Step(
                factor=f,
                classes=present,
                contracted=(fsets[f] & live) - keep,
                added=fsets[f] - live,
                batch=fsets[f] & live & keep,
            )
        )
        live = keep
    return out


def cuts(classes: tuple[int, ...], k: int) -> list[frozenset[int]]:
    """The classes cut by each bipartition that puts ``x`` and ``y`` on opposite sides.

    Each factor goes to the ``x`` side or the ``y`` side (2**k bipartitions); a class is cut
    when it has tensors on both sides. The minimum over these is the hypergraph min-cut.
    """
    out = []
    for side in range(1 << k):
        xs = X | (side << 2)  # tensors on the x side
        out.append(frozenset(p for p, m in enumerate(classes) if m & xs and m & ~xs))
    return out


def is_connected(classes: tuple[int, ...], k: int) -> bool:
    """Whether the hypergraph over x, y and the k factors is connected."""
    everything = X | Y | ((1 << k) - 1) << 2
    reach = X
    grown = True
    while grown:
        grown = False
        for m in classes:
            if m & reach and m & ~reach:
                reach |= m
                grown = True
    return reach == everything
