"""Do the papers' orderings hold on the LM proxy? Compute multipliers against dense with intervals.

The structured-layer papers report, on GPT-style language models, that BTT and Monarch reach
dense's loss with less compute, and that low rank and Kronecker need more. This script runs
the search's own pipeline on the LM proxy (search.lm: every attention and MLP projection
structured, μP throughout) on the default corpus (pydoc_data.topics, bytes) with the
compute-optimal protocol of issue 16: dense, BTT, Monarch, low rank and Kronecker at three
widths, each (structure, width, seed) training horizons of ``tpp × N`` tokens (N = every
trained parameter, embeddings included) with a warmup-stable-decay schedule: one trunk to the
longest horizon and a cooldown branch at each shorter one; each structure's base learning
rate tuned at the smallest width on a log grid (the search's ``lr_grid``) and carried to the
larger widths by μP. The plan's total FLOPs is printed before anything trains. Then, per
structure, the Chinchilla parametric law fitted to the finished schedules, the compute
multiplier against dense with its run-level bootstrap 90 % interval, the envelope fit's
multiplier as a cross-check, the verdict and what would separate a structure the budget
cannot (analysis.scaling.fit_table, printed by einspace.cli.output.print_fits).

Nothing here is tuned toward the expected answer: the grid, horizons, widths and seeds are
fixed up front (the two presets below) and printed.

Presets (minutes estimated from the planned FLOPs at the 2.8 GFLOP/s one thread reached on
the MLP proxy; not yet measured on an idle machine; see docs/experiments.md):
- default: widths 16, 32, 64; tokens per parameter 5, 10, 20, 40; 2 seeds; 5-point LR grid;
  2 layers (2.15e13 FLOPs planned: about 60 minutes on 2 idle cores).
- ``--quick``: widths 16, 32, 48; tokens per parameter 10, 20, 30; 2 seeds; 3-point LR grid;
  1 layer (4.1e12 FLOPs planned: about 10 to 12 minutes on 2 idle cores).

Run: ``python benchmarks/paper_ordering.py [--quick] [--store runs.sqlite] [--dry-run]``
(the runs go to a fresh SQLite store under /tmp unless ``--store`` is given; re-running with
the same store resumes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# benchmarks/search.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from rich.console import Console  # noqa: E402

from analysis.search_fits import fit_search  # noqa: E402
from einspace.cli.output import print_fits  # noqa: E402
from search import RunSettings, run_search  # noqa: E402

STRUCTURES = ("dense", "btt", "monarch", "low_rank", "kronecker")

PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "widths": "16,32,64",
        "tokens_per_param": "5,10,20,40",
        "seeds": 2,
        "lr_grid": "5",
        "n_layer": 2,
    },
    "quick": {
        "widths": "16,32,48",
        "tokens_per_param": "10,20,30",
        "seeds": 2,
        "lr_grid": "3",
        "n_layer": 1,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the under-10-minute preset")
    parser.add_argument("--structures", default=",".join(STRUCTURES))
    parser.add_argument("--widths", default=None)
    parser.add_argument("--tokens-per-param", default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--lr-grid", default=None, help="count (two decades) or values")
    parser.add_argument("--n-layer", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2, help="center of the LR grid")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
    args = parser.parse_args()
    preset = PRESETS["quick" if args.quick else "full"]
    plan = {k: preset[k] if getattr(args, k) is None else getattr(args, k) for k in preset}
    store = args.store or str(Path(tempfile.mkdtemp(prefix="paper-ordering-")) / "runs.sqlite")
    widths = [int(w) for w in str(plan["widths"]).split(",")]
    tpp = tuple(float(t) for t in str(plan["tokens_per_param"]).split(","))
    settings = RunSettings(
        task="lm",
        task_kwargs={"n_ctx": args.n_ctx},
        batch_size=args.batch,
        n_layer=int(plan["n_layer"]),
        lr=args.lr,
        base_width=min(widths),
        mode="auto",
    )
    print(f"settings: {settings}")
    print(
        f"widths {widths}, tokens per parameter {tpp}, seeds {plan['seeds']}, "
        f"LR grid {plan['lr_grid']!r}, store {store}"
    )
    console = Console(width=140)
    started = time.perf_counter()
    result = run_search(
        args.structures.split(","),
        widths,
        list(range(int(plan["seeds"]))),
        settings=settings,
        store=store,
        sweep="paper-ordering",
        workers=args.workers,
        lr_grid=str(plan["lr_grid"]),
        tokens_per_param=tpp,
        dry_run=args.dry_run,
        progress=False,
        console=console,
    )
    if args.dry_run:
        return
    wall = time.perf_counter() - started
    finals = result.runs[result.runs["role"] != "lr-tuning"] if "role" in result.runs else None
    if finals is not None and "tokens_per_param" in finals:
        table = finals.pivot_table(
            index="structure",
            columns=["width", "tokens_per_param"],
            values="final_eval_loss",
            aggfunc="median",
        )
        print("\nfinal eval loss (nats/byte) per width and tokens per parameter (median of seeds):")
        print(table.round(3).to_string())
    print_fits(console, fit_search(result), result.sweep)
    print(f"\n{len(result.runs)} runs, wall {wall:.0f} s")


if __name__ == "__main__":
    main()
