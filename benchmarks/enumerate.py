"""Benchmark: family enumeration and the realization table (issue targets in parentheses).

Prints, from one run on this machine:
* all k = 3 paper-space families (modulo factor renaming) with ν, ω, ψ at each family's
  balanced point, via bitmasks (target < 5 s), against a naive scan (every candidate subset
  checked with networkx graphs and canonicalized by trying every renaming; it is a yardstick
  written for this benchmark, not a previous implementation) on a random sample of
  subsets, extrapolated to all 2^18 (the ratio is printed);
* all exact k = 2 realizations at d_in = d_out = 4096 with their metrics (target < 2 s).

Usage: python benchmarks/enumerate.py [--naive-sample 20000] [--full-naive]
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

import networkx as nx
import numpy as np

from einspace import enumerate_realizations
from einspace.enumeration import _canonical_set, enumerate_families
from einspace.family_table import balanced_exponents
from einspace.index_classes import X, Y, factor_bit, permute_class, universe


def naive_check(subset: tuple[int, ...], k: int) -> frozenset[int] | None:
    """Validity with a networkx graph, canonical form by trying every renaming."""
    g = nx.Graph()
    g.add_nodes_from(["x", "y", *range(k)])
    bits = {"x": X, "y": Y, **{i: factor_bit(i) for i in range(k)}}
    for j, m in enumerate(subset):
        for t, b in bits.items():
            if m & b:
                g.add_edge(("c", j), t)
    if not any(m & X for m in subset) or not any(m & Y for m in subset):
        return None
    having = [{j for j, m in enumerate(subset) if m & factor_bit(i)} for i in range(k)]
    if any(not h for h in having) or any(
        having[a] <= having[b] for a, b in itertools.permutations(range(k), 2)
    ):
        return None
    if not nx.is_connected(g):
        return None
    return max(
        (frozenset(permute_class(m, p) for m in subset) for p in itertools.permutations(range(k))),
        key=lambda s: sorted(s),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-sample", type=int, default=20000)
    parser.add_argument("--full-naive", action="store_true", help="scan all 2^18 the slow way")
    args = parser.parse_args()

    _canonical_set.cache_clear()
    t0 = time.perf_counter()
    fams = enumerate_families(3)
    uni = universe(3)
    index = {m: j for j, m in enumerate(uni)}
    codes = np.array([sum(1 << index[m] for m in f.classes) for f in fams], dtype=np.uint32)
    ex = balanced_exponents(codes, 3, False)
    fast = time.perf_counter() - t0
    print(f"k=3 families (paper space, modulo renaming): {len(fams)}")
    print(f"  bitmask enumeration + balanced ν/ω/ψ:  {fast:7.2f} s   (target < 5 s)")
    print(
        f"  mean ν, ω, ψ over families with a balanced point: "
        f"{np.nanmean(ex['nu']):.3f}, {np.nanmean(ex['omega']):.3f}, {np.nanmean(ex['psi']):.3f}"
    )

    total = 1 << len(uni)
    rng = random.Random(0)
    sample = range(total) if args.full_naive else rng.sample(range(total), args.naive_sample)
    t0 = time.perf_counter()
    found = set()
    for code in sample:
        subset = tuple(m for j, m in enumerate(uni) if code >> j & 1)
        canon = naive_check(subset, 3)
        if canon is not None:
            found.add(canon)
    naive = (time.perf_counter() - t0) * total / len(sample)
    label = "measured" if args.full_naive else f"extrapolated from {len(sample)} subsets"
    print(f"  naive scan (networkx graph checks):   {naive:7.2f} s   ({label})")
    if args.full_naive:
        print(f"  naive scan found {len(found)} families (bitmask: {len(fams)})")
    print(f"  bitmask enumeration vs the naive scan: {naive / fast:.1f}x faster")

    t0 = time.perf_counter()
    table = enumerate_realizations(4096, 4096)
    elapsed = time.perf_counter() - t0
    print(
        f"k=2 exact realizations at 4096 x 4096: {len(table)} rows with params, MACs (both"
        f" orders), rank, effective exponents"
    )
    print(f"  {elapsed:7.2f} s   (target < 2 s)")


if __name__ == "__main__":
    main()
