"""Benchmark: the symbolic columns of ``einspace enumerate --factors 3 --format csv``.

Prints, from one run on this machine (shared: CPU time is printed next to wall time):
* ``family_listing(3)`` — all 40,378 k = 3 families, symbolic forms included — repeated
  ``--repeat`` times: min / median / max wall and CPU seconds, and rows per second;
* sympy (``str(Family.symbolic())``, the reference) against :func:`exponent_text` on the same
  random sample of k = 3 families: seconds per family each, and the ratio.

Usage: python benchmarks/exponent_text.py [--repeat 3] [--sympy-sample 30]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from einspace.enumeration import enumerate_families
from einspace.exponent_text import exponent_text
from einspace.family_table import family_listing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sympy-sample", type=int, default=30)
    args = parser.parse_args()

    walls, cpus, rows = [], [], 0
    for _ in range(args.repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        frame, _ = family_listing(3, symbolic=True)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        rows = len(frame)
    print(f"family_listing(3), symbolic: {rows} rows, {args.repeat} runs")
    for name, xs in (("wall", walls), ("cpu", cpus)):
        print(
            f"  {name}: min {min(xs):.2f} s  median {statistics.median(xs):.2f} s  "
            f"max {max(xs):.2f} s  ({rows / statistics.median(xs):,.0f} rows/s at the median)"
        )

    random.seed(0)
    sample = random.sample(enumerate_families(3), args.sympy_sample)
    c0 = time.process_time()
    for f in sample:
        {key: str(v) for key, v in f.symbolic().items()}
    ref = (time.process_time() - c0) / len(sample)
    c0 = time.process_time()
    for f in sample:
        exponent_text(f)  # a fresh cache each call: no reuse between families
    new = (time.process_time() - c0) / len(sample)
    print(
        f"per family, {len(sample)} sampled (cpu): sympy {ref * 1e3:.1f} ms, "
        f"exponent_text {new * 1e3:.2f} ms, ratio {ref / new:.0f}x"
    )


if __name__ == "__main__":
    main()
