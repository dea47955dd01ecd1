"""Do the papers' orderings hold on the LM proxy? Compute multipliers against dense with intervals.

The structured-layer papers report, on GPT-style language models, that BTT and Monarch reach
dense's loss with less compute, and that low rank and Kronecker need more. This script runs
the search's own pipeline on the LM proxy (search.lm: every attention and MLP projection
structured, μP throughout) on the default corpus (pydoc_data.topics, bytes): dense, BTT,
Monarch, low rank and Kronecker at three widths with the same number of steps per width,
each structure's base learning rate tuned at the smallest width on a log grid and carried to
the larger widths by μP (search.tuning), then the fitted frontiers and the compute multiplier
of each structure against dense with its seeded 90 % bootstrap interval and notes
(analysis.scaling.fit_table / format_multiplier). Nothing here is tuned toward the expected
answer: the grid, steps and widths are fixed up front and printed.

Run: ``python benchmarks/paper_ordering.py [--widths 32,64,128] [--steps 300] [--seeds 1]``
(minutes on a 2-core CPU at the defaults; the runs go to a fresh SQLite store under /tmp unless
``--store`` is given, so re-running with the same store resumes).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/search.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from rich.console import Console  # noqa: E402

from analysis.scaling import format_multiplier  # noqa: E402
from analysis.search_fits import fit_search  # noqa: E402
from search import RunSettings, run_search  # noqa: E402

STRUCTURES = ("dense", "btt", "monarch", "low_rank", "kronecker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", default=",".join(STRUCTURES))
    parser.add_argument("--widths", default="32,64,128")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-2, help="center of the LR grid")
    parser.add_argument("--lr-grid", default="5", help="count (two decades) or values")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    store = args.store or str(Path(tempfile.mkdtemp(prefix="paper-ordering-")) / "runs.sqlite")
    widths = [int(w) for w in args.widths.split(",")]
    settings = RunSettings(
        task="lm",
        task_kwargs={"n_ctx": args.n_ctx},
        steps=args.steps,
        eval_every=max(1, args.steps // 10),
        batch_size=args.batch,
        n_layer=args.n_layer,
        lr=args.lr,
        base_width=min(widths),
        mode="auto",
    )
    print(f"settings: {settings}")
    print(f"widths {widths}, seeds {args.seeds}, LR grid {args.lr_grid!r}, store {store}")
    started = time.perf_counter()
    result = run_search(
        args.structures.split(","),
        widths,
        list(range(args.seeds)),
        settings=settings,
        store=store,
        sweep="paper-ordering",
        workers=args.workers,
        lr_grid=args.lr_grid,
        progress=False,
        console=Console(file=io.StringIO()),
    )
    wall = time.perf_counter() - started
    if result.lrs is not None:
        print("\nfinal eval loss (nats/byte) per base LR at the smallest width (* = chosen):")
        lrs = sorted(result.lrs["lr"].unique())
        print(f"{'structure':<18}" + "".join(f"{lr:>10.3g}" for lr in lrs))
        for label, part in result.lrs.groupby("structure", sort=False):
            by = {r["lr"]: r for r in part.to_dict("records")}
            cells = []
            for lr in lrs:
                row = by.get(lr)
                if row is None:
                    cells.append(f"{'':>10}")
                    continue
                loss = row["final_eval_loss"]
                text = "div" if math.isnan(loss) else f"{loss:.4f}" + ("*" if row["best"] else "")
                cells.append(f"{text:>10}")
            print(f"{label:<18}" + "".join(cells))
    finals = result.runs.pivot_table(
        index="structure", columns="width", values="final_eval_loss", aggfunc="median"
    )
    print("\nfinal eval loss per width (median over seeds):")
    print(finals.round(4).to_string())
    fits = fit_search(result)
    print("\nfitted frontiers (log L = a − m log C) and compute multipliers against dense:")
    print(f"{'structure':<18}{'m ± se':>16}{'points':>8}  multiplier [90 % interval]")
    for row in fits.sort_values("multiplier", ascending=False).to_dict("records"):
        se = "" if math.isnan(row["m_se"]) else f" ± {row['m_se']:.3f}"
        m = f"{row['m']:.3f}{se}"
        print(f"{row['structure']:<18}{m:>16}{row['n_points']:>8}  {format_multiplier(row)}")
    for row in fits.to_dict("records"):
        if row.get("note"):
            print(f"  note {row['structure']}: {row['note']}")
    print(f"\n{len(result.runs)} grid runs, wall {wall:.0f} s")


if __name__ == "__main__":
    main()
