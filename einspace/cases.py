"""Seeded random valid structures and realizations, shared by tests and benchmarks.

Examples:
    >>> import random
    >>> rng = random.Random(0)
    >>> s = random_structure(rng, k=2)
    >>> s.family.is_valid
    True
    >>> r = random_realization(rng, k=3, max_size=3)
    >>> r.is_exact and r.family.is_valid
    True
    >>> p = random_round_realization(rng, max_width=40)
    >>> p.mode, p.k
    ('round', 2)
    >>> random_k3_realization(rng, max_size=3).k
    3
"""

from __future__ import annotations

import random

from einspace.enumeration import enumerate_families
from einspace.errors import EinspaceError
from einspace.family import Family
from einspace.index_classes import X, Y, universe
from einspace.realization import Realization
from einspace.structure import Structure, realize_sizes

__all__ = [
    "random_family",
    "random_k3_realization",
    "random_realization",
    "random_round_realization",
    "random_structure",
]


def random_family(rng: random.Random, k: int | None = None, diagonal: bool = False) -> Family:
    """A valid family with ``k`` factors (k drawn from 1..3 if None), canonical form.

    Uniform over canonical families where listing them is cheap (k ≤ 3 paper space, k ≤ 2
    extended); elsewhere — the 5.5 M extended k = 3 families, or k ≥ 4 — uniform over
    labelled valid families by rejection sampling.
    """
    k = rng.choice((1, 2, 3)) if k is None else k
    if k <= 2 or (k == 3 and not diagonal):
        return rng.choice(enumerate_families(k, diagonal))
    classes = universe(k, diagonal)
    while True:
        bits = rng.getrandbits(len(classes))
        fam = Family(k, tuple(m for j, m in enumerate(classes) if bits >> j & 1))
        if fam.is_valid:
            return fam.canonical()


def _split(rng: random.Random, n: int, total: float) -> list[float]:
    if n == 0:
        return []
    weights = [rng.random() + 0.2 for _ in range(n)]
    scale = total / sum(weights)
    return [w * scale for w in weights]


def random_structure(rng: random.Random, k: int | None = None, diagonal: bool = False) -> Structure:
    """A valid family with random exponents: each side's θ sum to 1, rank classes in
    (0.05, 1]. Families with no point where every θ > 0 are redrawn."""
    while True:
        fam = random_family(rng, k, diagonal)
        ins = [m for m in fam.classes if m & X and not m & Y]
        outs = [m for m in fam.classes if m & Y and not m & X]
        diag = [m for m in fam.classes if m & X and m & Y]
        if diag and (bool(ins) != bool(outs)):
            continue
        share = (rng.uniform(0.2, 0.8) if ins else 1.0) if diag else 0.0
        theta = dict(zip(diag, _split(rng, len(diag), share), strict=True))
        theta.update(zip(ins, _split(rng, len(ins), 1 - share), strict=True))
        theta.update(zip(outs, _split(rng, len(outs), 1 - share), strict=True))
        for m in fam.classes:
            theta.setdefault(m, rng.uniform(0.05, 1.0))
        return Structure(fam, tuple(theta[m] for m in fam.classes))


def random_realization(
    rng: random.Random,
    k: int | None = None,
    diagonal: bool = False,
    max_size: int = 4,
    pad: bool = False,
) -> Realization:
    """A valid family at random class sizes in 2..max_size.

    With ``pad=False`` the widths are the exact products; with ``pad=True`` they are moved
    by up to ±25 % so that the realization pads or truncates.
    """
    fam = random_family(rng, k, diagonal)
    sizes = [rng.randint(2, max_size) for _ in fam.classes]
    p_in = p_out = 1
    for m, n in zip(fam.classes, sizes, strict=True):
        p_in *= n if m & X else 1
        p_out *= n if m & Y else 1
    d_in, d_out = p_in, p_out
    if pad:
        d_in = max(1, round(p_in * rng.uniform(0.8, 1.25)))
        d_out = max(1, round(p_out * rng.uniform(0.8, 1.25)))
    return realize_sizes(fam, sizes, d_in, d_out)


def random_round_realization(
    rng: random.Random,
    k: int = 2,
    min_width: int = 4,
    max_width: int = 48,
    pad_tol: float = 0.5,
) -> Realization:
    """A random structure realized in round mode at random widths in [min_width, max_width].

    Draws are repeated until rounding stays within ``pad_tol``; most results pad x, truncate y
    or both (the cases whose rank is not the min-cut in general).
    """
    while True:
        s = random_structure(rng, k)
        d_in, d_out = rng.randint(min_width, max_width), rng.randint(min_width, max_width)
        try:
            return s.realize(d_in, d_out, mode="round", pad_tol=pad_tol)
        except EinspaceError:
            continue


def random_k3_realization(
    rng: random.Random, max_size: int = 3, diagonal: bool = False, pad: bool = False
) -> Realization:
    """A 3-factor family at random class sizes in 2..max_size (loops in the hypergraph can
    make its rank smaller than the min-cut)."""
    return random_realization(rng, k=3, diagonal=diagonal, max_size=max_size, pad=pad)
