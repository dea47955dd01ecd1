"""Benchmark: wall time of whole proxy runs, structured against dense.

The layer benchmark (``benchmarks/layers.py``) times one layer; this one times what a
search spends its time on: complete LM proxy runs (the byte-level GPT of ``--task lm``,
every projection structured) of ``--steps`` optimizer steps at each ``d_model``, for dense,
Monarch and BTT. Each repetition runs every structure once, in turn (so load from other
processes hits all alike); per structure and width it prints the min, median and IQR of
the seconds per run, ``dense×`` (the per-repetition ratio t_dense / t_structure, median and
IQR: above 1 the structured run is faster) and ``MACs`` (the model's training MACs per
token relative to dense). ``!`` flags an IQR above 20 % of the median.

Run: ``python benchmarks/proxy_speed.py`` (a few minutes on 2 cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from layers import spread  # the layer benchmark's (min, median, IQR), from this folder

# This folder holds a file named like the package it measures: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import torch  # noqa: E402

from einspace.errors import EinspaceError  # noqa: E402
from search.proxy import proxy_run  # noqa: E402

STRUCTURES = ("dense", "monarch", "btt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="d_model 128, 40 steps, 3 reps")
    args = parser.parse_args()
    if args.quick:
        args.widths, args.steps, args.repeats = [128], 40, 3
    torch.set_num_threads(args.threads)
    common = {"task": "lm", "steps": args.steps, "eval_every": args.steps}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; LM proxy, "
        f"{args.steps} steps per run, batch 64 × 32 bytes (2048 rows per layer call); "
        "seconds per run; dense× = t_dense / t_structure"
    )
    print(
        f"{'structure':<9} {'d_model':>7} {'min':>7} {'median':>7} {'IQR':>6}  "
        f"{'dense× [IQR]':>13} {'MACs':>5}"
    )
    for width in args.widths:
        times: dict[str, list[float]] = {s: [] for s in STRUCTURES}
        macs: dict[str, float] = {}
        for _ in range(args.repeats):
            for s in STRUCTURES:
                t0 = time.perf_counter()
                result = proxy_run(s, width=width, **common)
                times[s].append(time.perf_counter() - t0)
                macs[s] = result.macs_per_token
        for s in STRUCTURES:
            lo, med, iqr = spread(times[s])
            ratios = [d / t for d, t in zip(times["dense"], times[s], strict=True)]
            _, rmed, riqr = spread(ratios)
            flag = "!" if iqr > 0.2 * med else " "
            print(
                f"{s:<9} {width:>7} {lo:>7.2f} {med:>7.2f} {iqr:>6.2f}{flag} "
                f"{rmed:>6.2f} [{riqr:4.2f}] {macs[s] / macs['dense']:>5.2f}",
                flush=True,
            )


if __name__ == "__main__":
    try:
        main()
    except EinspaceError as err:  # a width the LM or a structure cannot take: say so, once
        raise SystemExit(f"proxy_speed.py: error: {err}") from None
