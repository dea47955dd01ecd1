"""BTT-MoE against dense, BTT and a standard MoE on the LM proxy, at equal active compute.

The second structured-layer paper proposes BTT-MoE (every linear layer a mixture of Monarch
experts, docs/moe.md) and reports it more compute-efficient than dense and than a standard
MoE (each block's MLP replaced by expert MLPs). This script asks the search the same question
under the compute-optimal protocol (issue 16): every structure and width trains a wsd trunk to
the longest horizon of ``--tokens-per-param`` (N = every trained parameter, all experts
included) with a cooldown branch at each shorter one; compute is 6 × *active* MACs per token
(k of E experts plus the routers) × tokens; the fits (``analysis.search_fits.fit_search``)
give each structure its compute multiplier against dense, a 90 % bootstrap interval over
whole runs, and a verdict. Nothing here is tuned toward the paper's answer: the grid, the
horizons and the learning rates are fixed up front and printed.

Run: ``python benchmarks/moe.py --quick`` (widths 8, 16, 24 with 8-wide heads, one block,
4 experts with k = 1, tokens per parameter 5–25, batches of 64 × 32 bytes, 2 seeds, one fixed
learning rate for all; 96 runs, 6 minutes measured on 2 cores shared with other jobs at a
load average of 7) or ``python benchmarks/moe.py`` (widths 32, 48, 64, two blocks, 8 experts with
k = 2, tokens per parameter 5–40, 2 seeds, each structure's learning rate tuned at the
smallest width; hours on 2 cores). The runs go to a fresh SQLite store under /tmp unless
``--store`` is given; re-running with the same store resumes.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# benchmarks/search.py is named like the package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402

from analysis.scaling import fit_table, format_multiplier  # noqa: E402
from analysis.search_fits import fit_search  # noqa: E402
from search import RunSettings, run_search  # noqa: E402
from search.result import SearchResult  # noqa: E402


@dataclass(frozen=True)
class Protocol:
    """One mode of the experiment: the grid, the horizons and the learning rates."""

    widths: tuple[int, ...]
    tokens_per_param: tuple[float, ...]
    seeds: int
    n_layer: int
    d_head: int
    n_ctx: int
    batch: int
    experts: int
    top_k: int
    lr: float
    lr_grid: str | None  # None: the fixed --lr for every structure

    def structures(self) -> list[str]:
        """dense, BTT, BTT-MoE and the standard MoE (same E and k)."""
        moe = f"e={self.experts},k={self.top_k}"
        return ["dense", "btt", f"btt_moe:{moe}", f"moe:{moe}"]


QUICK = Protocol((8, 16, 24), (5, 10, 20, 25), 2, 1, 8, 32, 64, 4, 1, 1e-2, None)
FULL = Protocol((32, 48, 64), (5, 10, 20, 40), 2, 2, 16, 64, 16, 8, 2, 1e-2, "5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small grid (minutes)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    protocol = QUICK if args.quick else FULL
    store = args.store or str(Path(tempfile.mkdtemp(prefix="moe-")) / "runs.sqlite")
    settings = RunSettings(
        task="lm",
        task_kwargs={"n_ctx": protocol.n_ctx},
        batch_size=protocol.batch,
        n_layer=protocol.n_layer,
        d_head=protocol.d_head,
        lr=protocol.lr,
        base_width=min(protocol.widths),
        schedule="wsd",
        eval_every=100,
    )
    print(f"protocol: {protocol}")
    print(f"settings: {settings}")
    print(f"store {store}; load average at start {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    result = run_search(
        protocol.structures(),
        list(protocol.widths),
        list(range(protocol.seeds)),
        settings=settings,
        store=store,
        sweep="moe",
        workers=args.workers,
        tokens_per_param=protocol.tokens_per_param,
        lr_grid=protocol.lr_grid,
        progress=False,
        console=Console(file=io.StringIO()),
    )
    wall = time.perf_counter() - started
    print_lrs(result)
    print_sizes(result)
    print_collapse(result)
    print_fits(result)
    load = os.getloadavg()[0]
    print(f"\n{len(result.runs)} grid runs, wall {wall:.0f} s; load average at the end {load:.1f}")


def print_lrs(result: SearchResult) -> None:
    """The learning rate each structure trained with (tuned, or the fixed one)."""
    if result.lrs is not None:
        print("\nfinal eval loss (nats/byte) per base LR at the smallest width:")
        table = result.lrs.pivot_table(index="structure", columns="lr", values="final_eval_loss")
        print(table.round(4).to_string())
    print(
        "\nbase learning rate per structure: "
        + ", ".join(f"{k} {v:g}" for k, v in result.lr.items())
    )


def print_sizes(result: SearchResult) -> None:
    """Per structure and width: all parameters, active MACs per token, and the final eval
    loss of each horizon (median over seeds)."""
    points = result.points
    finals = points[points["final"]]
    sizes = finals.groupby(["structure", "width"])[["params", "macs_per_token"]].first()
    print("\nparams (all experts) and active MACs per token (k of E experts + routers):")
    print(sizes.to_string())
    runs = result.runs[result.runs["status"] == "finished"]
    table = runs.pivot_table(
        index=["structure", "width"],
        columns="tokens_per_param",
        values="final_eval_loss",
        aggfunc="median",
    )
    print("\nfinal eval loss (nats/byte, median over seeds) by tokens per parameter:")
    print(table.round(4).to_string())


def print_collapse(result: SearchResult) -> None:
    """The routers' health: the collapsed fraction of routed layers per run at its end."""
    runs = result.runs.dropna(subset=["collapsed"])
    if runs.empty:
        return
    bad = runs[runs["collapsed"] > 0]
    print(
        f"\nrouters: {len(bad)} of {len(runs)} sparse runs end with a collapsed layer "
        f"(load entropy < 0.5 of its maximum); worst {runs['collapsed'].max():.0%} of layers"
    )
    last = _last_extra(result.points)
    if not last.empty:
        print("load entropy at the last point (mean over routed layers), median over runs:")
        print(last.groupby("structure")["load_entropy"].median().round(3).to_string())


def _last_extra(points: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, part in points.groupby("run_id"):
        extra = part.sort_values("step")["extra"].iloc[-1]
        if isinstance(extra, dict) and "load_entropy" in extra:
            rows.append({"structure": part["structure"].iloc[0], **extra})
    return pd.DataFrame(rows)


def print_fits(result: SearchResult) -> None:
    """The compute multiplier of each structure against dense at equal active compute, its
    90 % interval and verdict, as text and as a markdown table for docs/moe.md."""
    fits = fit_search(result)
    print("\ncompute multiplier against dense at equal active compute [90 % interval]:")
    lines = ["| structure | multiplier [90 % interval] | verdict | what would settle it |"]
    lines.append("|---|---|---|---|")
    for _, row in fits.iterrows():
        verdict = str(row.get("verdict", "") or "")
        advice = str(row.get("to_separate", "") or "")
        print(f"  {row['structure']:<20} {format_multiplier(row)}")
        note = str(row.get("note", "") or "")
        if note:
            print(f"    note: {note}")
        lines.append(f"| {row['structure']} | {format_multiplier(row)} | {verdict} | {advice} |")
    print("\n" + "\n".join(lines))
    extra = [c for c in ("law", "alpha", "beta", "n_opt_exponent", "tokens_per_param") if c in fits]
    if extra:
        print("\n" + fits[["structure", *extra]].to_string(index=False))
    finite = fits["multiplier"].map(lambda v: isinstance(v, float) and math.isfinite(v))
    if not finite.any():
        print("no finite multiplier: the fits could not place the structures against dense")
    print_envelope(result)


def print_envelope(result: SearchResult) -> None:
    """The envelope law alone (Chinchilla's approach 1 on the finished schedules), the
    cross-check ``fit_search`` prints beside the parametric law (docs/fits.md), shown here
    even where the parametric law gives no multiplier."""
    points = result.points
    keep = ~points["status"].isin(["diverged", "failed"]) & points["eval_loss"].notna()
    table = fit_table(
        points[keep], group="structure", dense="dense", loss="eval_loss", law="envelope"
    )
    print("\ncross-check, envelope law alone (multiplier vs dense [90 % interval]):")
    lines = ["| structure | envelope multiplier [90 % interval], verdict |", "|---|---|"]
    for _, row in table.iterrows():
        note = str(row.get("note", "") or "")
        print(
            f"  {row['structure']:<20} {format_multiplier(row)}"
            + (f"\n    note: {note}" if note else "")
        )
        lines.append(f"| {row['structure']} | {format_multiplier(row)} |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
