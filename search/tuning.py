"""Learning rate per structure, then transfer: the base LR of each structure is tuned at the
smallest width and carried to larger widths by μP.

With one shared base learning rate a structure can look better than dense only because that
rate suits it and not dense; even under structure-aware μP the best base rate differs between
structures. So before the grid, :func:`tune_lrs` trains every structure at the smallest grid
width, with the first seed, once per value of a log grid (:func:`lr_grid`), stores these
runs under the sweep ``<sweep>/lr``, and picks the value with the lowest final eval loss.
The tuning run is the structure's longest grid run there (:func:`search.run_plan.plan_tuning`):
the run of ``--steps``; with several horizons (``--tokens-per-param``) the longest one, as
an independent run (cosine, constant) or as the wsd trunk, with the checkpoints its cooldown
branches resume from, so that the winner's branches train from it. A trunk family shares one
learning rate (a branch only decays it), so the trunk's horizon is where it is chosen.
When the best value is at an edge of a grid given as a count, the
grid is extended by one more step in that direction, at most twice. The grid then trains that
structure with that ``lr`` at every width; ``base_width`` stays fixed, so μP rescales the
per-layer rates with the width (the transfer).

The tuning runs train in the calling process, one after another (``run_search`` passes
``workers=1``): they are the cheapest runs of a search, and a second phase of worker
processes writing the SQLite store while this process held the optuna storage open made this
process read the (intact) file as malformed.

**Cost.** The tuning runs have the same config as the grid's run at the smallest width except
for ``lr``, so the winning run *is* that grid run (same run id, not trained again): tuning
costs ``n - 1`` (plus any extension) runs at the smallest width per structure. Measured on
``benchmarks/paper_ordering.py`` (LM proxy, five structures, widths 32, 64, 128, 300 steps,
``n = 5``): the 25 tuning runs took 1.2e12 FLOPs and 160 s on one core, the other 10 grid
runs 2.6e12 FLOPs and 370 core-seconds, so tuning was about a third of the compute. Cheaper:
``lr_grid=3`` or explicit values near a known optimum.

Examples:
    >>> [round(v, 5) for v in lr_grid(3, center=0.01)]
    [0.001, 0.01, 0.1]
    >>> lr_grid("0.01, 0.003", center=1.0)
    [0.003, 0.01]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from einspace.errors import EinspaceError
from search.grid import GridJob, grid_frame, run_grid
from search.options import LRGrid
from search.run_plan import PlannedRun

if TYPE_CHECKING:
    import pandas as pd

    from search.progress import Display

__all__ = ["LRGrid", "lr_grid", "tune_lrs"]

_MAX_EXTENSIONS = 2


def lr_grid(grid: LRGrid, center: float) -> list[float]:
    """The learning rates of a grid: ``n`` values ``center · 10^t`` for ``t`` evenly from −1
    to 1 (``n = 1``: the center alone), or the values given (sorted, distinct).

    Raises:
        EinspaceError: a count below 1, a value that is not a positive number.

    Examples:
        >>> [round(v, 4) for v in lr_grid(5, center=0.003)]
        [0.0003, 0.0009, 0.003, 0.0095, 0.03]
    """
    if isinstance(grid, str):
        text = grid.strip()
        if "," not in text and "." not in text and "e" not in text.lower():
            try:
                grid = int(text)
            except ValueError:
                raise EinspaceError(
                    f"--lr-grid {grid!r}: expected a count (e.g. 5) or learning rates "
                    f"(e.g. '0.003,0.01,0.03')"
                ) from None
        else:
            try:
                grid = [float(p) for p in text.split(",") if p.strip()]
            except ValueError:
                raise EinspaceError(
                    f"--lr-grid {grid!r}: expected learning rates such as '0.003,0.01,0.03' "
                    f"or a count such as 5"
                ) from None
    if isinstance(grid, bool):
        raise EinspaceError(f"lr grid {grid!r}: expected a count such as 5 or learning rates")
    if isinstance(grid, int):
        if grid < 1:
            raise EinspaceError(f"lr grid count {grid} must be >= 1, e.g. 5")
        if grid == 1:
            return [float(center)]
        return [float(center) * 10 ** (-1 + 2 * i / (grid - 1)) for i in range(grid)]
    values = sorted({float(v) for v in grid})
    if not values or any(not (math.isfinite(v) and v > 0) for v in values):
        raise EinspaceError(f"learning rates {list(grid)!r} must be positive numbers, e.g. 0.01")
    return values


def _step(values: Sequence[float]) -> float:
    return values[1] / values[0] if len(values) > 1 else 10.0


def tune_lrs(
    job: GridJob, templates: Mapping[str, PlannedRun], grid: LRGrid, display: Display
) -> tuple[dict[str, float], pd.DataFrame]:
    """Tune each structure's base ``lr`` on its tuning run (see the module docs).

    Args:
        job: the grid's job (its sweep; tuning runs go to ``<sweep>/lr``).
        templates: per structure label, its tuning run
            (:func:`search.run_plan.plan_tuning`) at the center of the grid.
        grid: the learning rates (:func:`lr_grid`, around each template's ``lr``).
        display: where progress goes.

    Returns:
        the best ``lr`` per structure label, and a frame of every tuning run (structure,
        lr, run_id, status, final_eval_loss, best).
    """
    import pandas as pd

    from search.store import RunStore

    values = {label: lr_grid(grid, t.config.lr) for label, t in templates.items()}
    extend = isinstance(grid, int) or (isinstance(grid, str) and grid.strip().isdigit())
    rows: dict[tuple[str, float], dict[str, Any]] = {}
    best: dict[str, float] = {}
    extended = dict.fromkeys(values, 0)
    tuning = replace(job, sweep=f"{job.sweep}/lr")
    for _ in range(_MAX_EXTENSIONS + 1):
        todo = [
            (label, lr)
            for label, lrs in values.items()
            for lr in lrs
            if (label, lr) not in rows and label not in best
        ]
        if not todo:
            break
        runs = [templates[label].with_lr(lr) for label, lr in todo]
        run_grid(tuning, runs, display, workers=1)  # see the module docs
        with RunStore(job.store_target, lease_s=job.options.lease_s) as store:
            stored = grid_frame(store, runs)
        by_id = {r["run_id"]: r for r in stored.to_dict("records")}
        for (label, lr), run in zip(todo, runs, strict=True):
            row = by_id.get(run.run_id, {})
            loss = row.get("final_eval_loss")
            ok = row.get("status") == "finished" and loss is not None and math.isfinite(loss)
            rows[(label, lr)] = {
                "structure": label,
                "lr": lr,
                "run_id": row.get("run_id"),
                "status": row.get("status"),
                "final_eval_loss": float(loss) if ok and loss is not None else math.nan,
            }
        for label in list(values):
            if label in best:
                continue
            lrs = values[label]
            losses = [rows[(label, lr)]["final_eval_loss"] for lr in lrs]
            finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
            if not finite:
                width = templates[label].config.width
                raise EinspaceError(
                    f"every learning rate of the grid {lrs} diverged or failed for {label!r} at "
                    f"width {width}; give lower values with --lr-grid"
                )
            i = min(finite, key=lambda j: losses[j])
            room = extend and len(lrs) > 1 and extended[label] < _MAX_EXTENSIONS
            if room and i == 0:
                values[label] = [lrs[0] / _step(lrs), *lrs]
                extended[label] += 1
            elif room and i == len(lrs) - 1:
                values[label] = [*lrs, lrs[-1] * _step(lrs)]
                extended[label] += 1
            else:
                best[label] = lrs[i]
    for label, lrs in values.items():  # extensions used up: the best of what was tried
        if label not in best:
            tried = [lr for lr in lrs if (label, lr) in rows]
            best[label] = min(tried, key=lambda lr: _loss_key(rows[(label, lr)]))
    frame = pd.DataFrame(list(rows.values()))
    frame["best"] = [best[s] == lr for s, lr in zip(frame["structure"], frame["lr"], strict=True)]
    return best, frame.sort_values(["structure", "lr"], ignore_index=True)


def _loss_key(row: Mapping[str, Any]) -> float:
    value = float(row["final_eval_loss"])
    return value if math.isfinite(value) else math.inf
