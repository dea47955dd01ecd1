"""Benchmark of the search: proxy-run throughput and what successive halving saves.

Run with ``.venv/bin/python benchmarks/search.py`` (a script, not a test). It prints,
from one run on this machine:

1. **Throughput**: proxy runs per CPU-minute (one torch thread, the default settings of
   ``einspace search``: 300 steps, batch 64, two structured layers) for the named
   structures at widths 16, 64 and 256, and the CPU seconds per run of each width.
2. **Pruning**: the same θ candidates (drawn by :func:`search.space.sample_points`,
   enqueued so both studies try exactly the same points in the same order) searched
   once with successive-halving pruning and once with every trial run to the full
   budget. It prints the compute (training FLOPs) both spent, their ratio, the wall
   times, and whether the two pick the same top 3.

Options: ``--quick`` for a smaller run (fewer candidates and steps).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the package it measures: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import torch  # noqa: E402
from rich.console import Console  # noqa: E402

from search.driver import RunSettings, run_search  # noqa: E402
from search.proxy import proxy_run  # noqa: E402
from search.space import sample_points  # noqa: E402
from search.store import RunStore  # noqa: E402

NAMED = ("dense", "btt", "monarch", "low_rank", "kronecker")


def throughput(widths: tuple[int, ...], steps: int) -> None:
    """Proxy runs per CPU-minute at the search's default settings."""
    proxy_run("dense", width=16, steps=2)  # imports and first-call costs out of the way
    cpu_total, wall_total, runs = 0.0, 0.0, 0
    print(f"throughput: {len(NAMED)} structures × widths {widths}, {steps} steps, 1 thread")
    for width in widths:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for name in NAMED:
            proxy_run(name, width=width, steps=steps)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        cpu_total, wall_total, runs = cpu_total + cpu, wall_total + wall, runs + len(NAMED)
        print(
            f"  width {width:4d}: {cpu / len(NAMED):6.2f} CPU s/run, "
            f"{wall / len(NAMED):6.2f} wall s/run"
        )
    print(
        f"  all: {runs / (cpu_total / 60):.1f} runs per CPU-minute "
        f"({runs / (wall_total / 60):.1f} per wall-minute)"
    )


def _search(folder: Path, candidates: list[tuple[float, ...]], prune: bool, steps: int) -> dict:
    store = folder / ("pruned.sqlite" if prune else "full.sqlite")
    started = time.perf_counter()
    result = run_search(
        [],
        [64],
        settings=RunSettings(steps=steps, mode="exact"),
        store=store,
        sweep="bench",
        trials=len(candidates),
        promote=0,
        theta_width=64,
        prune=prune,
        enqueue=candidates,
        progress=False,
        console=Console(file=io.StringIO()),
    )
    wall = time.perf_counter() - started
    with RunStore(store) as runs:
        points = runs.points(sweep="bench/theta")
    compute = float(points.groupby("run_id")["compute"].max().sum())
    trials = result.trials
    assert trials is not None
    # rank as successive halving does: completed trials by loss, then pruned ones by how
    # far they got and their last reported loss
    reached = points.groupby("run_id")["compute"].max()
    done = trials["state"] == "complete"
    trials = trials.assign(done=done, reached=trials["run_id"].map(reached).where(~done, 0.0))
    ranked = trials[trials["value"].notna()].sort_values(
        ["done", "reached", "value"], ascending=[False, False, True]
    )
    return {
        "compute": compute,
        "wall": wall,
        "values": dict(zip(ranked["theta"], ranked["value"], strict=True)),
        "top3": list(ranked["theta"].head(3)),
        "complete": int((trials["state"] == "complete").sum()),
        "pruned": int((trials["state"] == "pruned").sum()),
    }


def pruning(n: int, steps: int) -> None:
    """Compute saved by successive halving on the same candidates, and the top 3."""
    points = sample_points(n, seed=7, widths=[64], mode="exact")
    candidates = [p.theta for p in points]
    print(f"pruning: {n} θ candidates at width 64, budget = dense's compute in {steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        full = _search(Path(tmp), candidates, prune=False, steps=steps)
        pruned = _search(Path(tmp), candidates, prune=True, steps=steps)
    ratio = full["compute"] / pruned["compute"] if pruned["compute"] else math.inf
    same = full["top3"] == pruned["top3"]
    print(
        f"  full runs:   {full['compute']:.3g} FLOPs, {full['wall']:.1f} s wall, "
        f"{full['complete']} complete"
    )
    print(
        f"  with pruning: {pruned['compute']:.3g} FLOPs, {pruned['wall']:.1f} s wall, "
        f"{pruned['complete']} complete, {pruned['pruned']} pruned"
    )
    print(
        f"  compute saved: {ratio:.2f}× less ({1 - 1 / ratio:.0%}); wall "
        f"{full['wall'] / pruned['wall']:.2f}× faster"
    )
    print(f"  top 3 (full):    {full['top3']}")
    print(f"  top 3 (pruned):  {pruned['top3']}")
    print(f"  same top 3: {same}; same set: {set(full['top3']) == set(pruned['top3'])}")
    best = full["top3"][0] if full["top3"] else None
    print(f"  same best: {bool(pruned['top3']) and pruned['top3'][0] == best}")
    if best is not None and pruned["top3"]:
        pick = pruned["top3"][0]
        ratio_loss = full["values"][pick] / full["values"][best]
        print(
            f"  pruned pick's loss at the full budget: {full['values'][pick]:.4g} vs best "
            f"{full['values'][best]:.4g} ({ratio_loss:.2f}×); rank of the full best in the "
            f"pruned search: {pruned['top3'].index(best) + 1 if best in pruned['top3'] else '>3'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer candidates and steps")
    parser.add_argument("--pruning-only", action="store_true", help="skip the throughput part")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        if not args.pruning_only:
            throughput((16, 64), steps=100)
        pruning(6, steps=100)
    else:
        if not args.pruning_only:
            throughput((16, 64, 256), steps=300)
        pruning(12, steps=300)


if __name__ == "__main__":
    main()
