"""The grid of a search: its planned runs (:mod:`search.run_plan`: structures × widths ×
seeds, as independent runs or wsd trunks with cooldown branches), trained by workers that
claim them from the shared run store. Finished, diverged and failed runs are skipped,
interrupted ones resume from their checkpoints.

A trunk keeps its checkpoints at its branches' steps (``keep_steps``). A branch whose trunk
has not reached its branch step yet is *waiting*: the worker puts it back at the end of its
list and trains the next run (a trunk of its list that nobody holds, say); a worker with only
waiting branches left polls the store every :data:`POLL_S` seconds. A branch whose trunk
diverged before the branch step diverges at the same step (:mod:`search.branches`); one whose
trunk ended otherwise without its checkpoint (failed, or trained before it kept one) ends
failed, with the reason. A worker whose waited-on trunks make no progress for ``wait_s``
seconds (:class:`~search.options.SearchOptions`) stops with an error.

Examples:
    >>> from search.settings import parse_structures
    >>> runs = grid_runs(parse_structures(["dense"]), [16, 64], [0], RunSettings())
    >>> [r.config.width for r in runs]
    [64, 16]
"""

from __future__ import annotations

import math
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from einspace.errors import EinspaceError
from search.options import SearchOptions
from search.run_plan import PlannedRun, plan_grid
from search.settings import Candidate, RunSettings, width_structure
from search.space import check_widths
from search.workers import (
    Emit,
    processes,
    pump,
    raise_crashes,
    rotate,
    set_threads,
    torch_threads,
)

if TYPE_CHECKING:
    import pandas as pd

    from search.progress import Display
    from search.run_result import CurvePoint, RunResult
    from search.store import RunStore

__all__ = [
    "DONE",
    "GRID_COLUMNS",
    "POLL_S",
    "GridItem",
    "GridJob",
    "collapsed_by_run",
    "grid_frame",
    "grid_loop",
    "grid_runs",
    "run_grid",
]

DONE: Final = ("finished", "diverged", "failed")
"""Statuses of runs that are never trained again."""

GRID_COLUMNS: Final = (
    "run_id",
    "structure",
    "width",
    "seed",
    "steps",
    "role",
    "parent",
    "tokens_per_param",
    "status",
    "final_eval_loss",
    "last_step",
    "collapsed",
)
"""The columns of :func:`grid_frame` (a search result's ``runs``)."""

POLL_S: Final = 1.0
"""Seconds a worker with only waiting branches sleeps before it looks again."""


def grid_runs(
    structures: Mapping[str, Candidate],
    widths: Sequence[int],
    seeds: Sequence[int],
    settings: RunSettings | Mapping[str, RunSettings],
    tokens_per_param: Sequence[float] | None = None,
) -> list[PlannedRun]:
    """The grid's planned runs (:func:`search.run_plan.plan_grid`), after checking that
    every structure realizes at every width.

    Raises:
        EinspaceError: no structures, or a structure that does not realize at a width
            (naming both and the nearest width that works).

    Examples:
        >>> from search.settings import parse_structures
        >>> runs = grid_runs(parse_structures(["dense", "btt"]), [16, 64], [0], RunSettings())
        >>> [(r.config.structure, r.config.width) for r in runs]
        [('dense', 64), ('btt(r=0.25)', 64), ('dense', 16), ('btt(r=0.25)', 16)]
    """
    if structures:
        first = settings if isinstance(settings, RunSettings) else next(iter(settings.values()))
        layers = {label: width_structure(c) for label, c in structures.items()}
        check_widths(layers, widths, mode=first.mode, pad_tol=first.pad_tol)
    return plan_grid(structures, widths, seeds, settings, tokens_per_param)


@dataclass(frozen=True)
class GridJob:
    """What a grid worker needs (picklable): where the store is, the sweep, and the
    search's options (device, checkpoints, lease, wait)."""

    store_target: str
    sweep: str
    options: SearchOptions


@dataclass(frozen=True)
class GridItem:
    """One planned run as a worker sees it (picklable): its config dict, id, trunk, branch
    step and pinned steps."""

    config: dict[str, Any]
    run_id: str
    parent: str | None
    branch_step: int | None
    keep_steps: tuple[int, ...]

    @classmethod
    def of(cls, run: PlannedRun) -> GridItem:
        """The item of a planned run."""
        return cls(run.config.to_dict(), run.run_id, run.parent, run.branch_step, run.keep_steps)

    @property
    def label(self) -> str:
        """How the progress bars name the run (a branch: with its length)."""
        c = self.config
        tail = f" ↳{self.config['steps']}" if self.parent else ""
        return f"{c['structure']} @{c['width']} s{c['seed']}{tail}"


def _summary(result: RunResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "structure": result.config.structure,
        "width": result.config.width,
        "seed": result.config.seed,
        "status": result.status,
        "final_eval_loss": result.final_eval_loss,
        "cached": result.cached,
        "trained_steps": result.trained_steps,
        "resumed_from": result.resumed_from,
        "error": result.error,
    }


def collapsed_by_run(points: pd.DataFrame) -> dict[str, float]:
    """Per run whose points log routers (a mixture of experts, ``extra["collapsed"]``):
    the fraction of its routed layers collapsed at its last logged point after step 0
    (:func:`einspace.moe.collapsed`; the zero-initialized gate ties every logit at step 0,
    so that point looks collapsed by construction and is never judged). 0 is healthy.

    Examples:
        >>> import pandas as pd
        >>> points = pd.DataFrame({"run_id": ["a", "a", "a", "b"], "step": [0, 5, 10, 0],
        ...     "extra": [{"collapsed": 1.0}, {"collapsed": 0.5}, {"collapsed": 0.25}, None]})
        >>> collapsed_by_run(points)
        {'a': 0.25}
    """
    out: dict[str, float] = {}
    if points.empty:
        return out
    ordered = points.sort_values(["run_id", "step"])
    for rid, step, extra in zip(ordered["run_id"], ordered["step"], ordered["extra"], strict=True):
        if step > 0 and isinstance(extra, dict) and "collapsed" in extra:
            out[str(rid)] = float(extra["collapsed"])
    return out


def _rows(store: RunStore) -> dict[str, dict[Any, Any]]:
    """Every run of the store by id, as a row."""
    return {str(row["run_id"]): row for row in store.runs().to_dict("records")}


def _stored_summary(item: GridItem, row: Mapping[Any, Any]) -> dict[str, Any]:
    loss = row.get("final_eval_loss")
    return {
        "run_id": item.run_id,
        "structure": item.config["structure"],
        "width": item.config["width"],
        "seed": item.config["seed"],
        "status": row["status"],
        "final_eval_loss": None if loss is None or math.isnan(loss) else float(loss),
        "cached": True,
        "trained_steps": 0,
        "resumed_from": None,
        "error": row.get("error"),
    }


def _end_orphan(store: RunStore, item: GridItem, sweep: str, why: str) -> None:
    """Mark a branch that cannot start (its trunk ended without the branch's checkpoint)
    failed with the reason, unless another worker holds it."""
    if store.claim(item.config, sweep=sweep) is not None:
        store.mark_failed(item.run_id, f"cooldown branch cannot start: {why}")


def _train(job: GridJob, store: RunStore, item: GridItem, wid: int, emit: Emit) -> RunResult:
    from search.proxy import run_config

    emit(("start", wid, item.label, int(item.config["steps"])))

    def on_point(point: CurvePoint) -> None:
        emit(("point", wid, item.label, point.step, point.eval_loss))

    extra: dict[str, Any] = {"keep_steps": list(item.keep_steps)} if item.keep_steps else {}
    return run_config(
        item.config,
        store=store,
        sweep=job.sweep,
        device=job.options.device,
        checkpoint_every=job.options.checkpoint_every,
        on_point=on_point,
        **extra,
    )


def grid_loop(job: GridJob, items: Sequence[GridItem], wid: int, emit: Emit) -> None:
    """Claim and train each run in turn, branches when their trunk's checkpoint is there
    (a worker; runs in-process or in a child; see the module docs)."""
    from search.store import RunStore

    with RunStore(job.store_target, lease_s=job.options.lease_s) as store:
        todo = deque(items)
        waits, stalled, progress = 0, time.monotonic(), None
        while todo:
            item = todo.popleft()
            rows = _rows(store)
            if item.run_id in rows and rows[item.run_id]["status"] in DONE:
                emit(("done", wid, _stored_summary(item, rows[item.run_id])))
                waits = 0
                continue
            try:
                result = _train(job, store, item, wid, emit)
            except EinspaceError as err:
                if item.parent is None:
                    raise
                _end_orphan(store, item, job.sweep, str(err))
                emit(("done", wid, _stored_summary(item, _rows(store)[item.run_id])))
                continue
            if result.status != "waiting":
                emit(("done", wid, _summary(result)))
                waits, stalled = 0, time.monotonic()
                continue
            todo.append(item)
            waits += 1
            if waits < len(todo):
                continue
            seen = tuple(_rows(store).get(str(i.parent), {}).get("last_step") for i in todo)
            if seen != progress:
                progress, stalled = seen, time.monotonic()
            elif time.monotonic() - stalled > job.options.wait_s:
                raise EinspaceError(
                    f"{len(todo)} cooldown branch(es) waited {job.options.wait_s:g} s for "
                    f"trunks that made no progress ({', '.join(str(i.parent) for i in todo)}); "
                    f"rerun the search to resume, or raise --branch-wait"
                )
            time.sleep(POLL_S)
            waits = 0


def _grid_worker(job: GridJob, items: Sequence[GridItem], wid: int, messages: Any) -> None:
    """Entry point of a grid worker process."""
    try:
        set_threads(job.options.threads)
        grid_loop(job, items, wid, messages.put)
    except KeyboardInterrupt:
        messages.put(("interrupted", wid))
    except BaseException as err:
        messages.put(("crashed", wid, "".join(traceback.format_exception(err))))
    finally:
        messages.put(("exit", wid))


def run_grid(
    job: GridJob, runs: Sequence[PlannedRun], display: Display, *, workers: int | None = None
) -> None:
    """Train ``runs`` with ``workers`` processes (default: the options'), reporting to
    ``display``; what the store already has is reported without starting a worker."""
    from search.store import RunStore

    items = [GridItem.of(r) for r in runs]
    with RunStore(job.store_target, lease_s=job.options.lease_s) as store:
        rows = _rows(store)
    count = job.options.workers if workers is None else workers
    display.begin("grid", len(items), count)
    for item in items:
        row = rows.get(item.run_id)
        if row is not None and row["status"] in DONE:
            display.handle(("done", 0, _stored_summary(item, row)))
    items = [i for i in items if rows.get(i.run_id, {}).get("status") not in DONE]
    count = max(1, min(count, len(items)))
    if not items:
        return
    if count == 1:
        with torch_threads(job.options.threads):
            grid_loop(job, items, 0, display.handle)
        return
    # every worker starts at its own offset, with trunks before branches in each list
    ordered = [rotate([i for i in items if not i.parent], k, count) for k in range(count)]
    branches = [i for i in items if i.parent]
    with processes(
        _grid_worker,
        lambda k: (job, ordered[k] + rotate(branches, k, count), k),
        count,
        job.options.device,
    ) as (procs, messages):
        pump(procs, messages, display.handle)
    raise_crashes(display)


def grid_frame(store: RunStore, runs: Sequence[PlannedRun]) -> pd.DataFrame:
    """The stored state of ``runs``: run_id, structure, width, seed, steps, role, parent,
    tokens_per_param, status, final_eval_loss, last_step, collapsed (a mixture of experts'
    routers, :func:`collapsed_by_run`; NaN for other runs) — runs the store lacks are left
    out — sorted by structure, width, seed and steps."""
    import pandas as pd

    stored = _rows(store)
    collapse = collapsed_by_run(
        store.points(run_ids=[r.run_id for r in runs if r.run_id in stored])
    )
    rows = []
    for run in runs:
        row = stored.get(run.run_id)
        if row is None:
            continue
        rows.append(
            {
                "run_id": run.run_id,
                "structure": run.config.structure,
                "width": run.config.width,
                "seed": run.config.seed,
                "steps": run.config.steps,
                "role": run.role,
                "parent": run.parent,
                "tokens_per_param": run.tokens_per_param or math.nan,
                "status": row["status"],
                "final_eval_loss": row["final_eval_loss"],
                "last_step": row["last_step"],
                "collapsed": collapse.get(run.run_id, math.nan),
            }
        )
    frame = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    return frame.sort_values(["structure", "width", "seed", "steps"], ignore_index=True)
