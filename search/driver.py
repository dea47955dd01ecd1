"""The search driver: grid sweeps and θ-space search over proxy runs.

:func:`run_search` does, in order:

1. **θ-space search** (when ``trials > 0``): optuna's TPE sampler proposes the seven raw
   numbers of :mod:`search.space` per trial; the snapped point is trained at
   ``theta_width`` until it has spent the compute ``budget`` (default: what dense spends in
   ``steps`` steps at that width), reporting its eval loss at 16 evenly spaced fractions
   of the budget to a :class:`~optuna.pruners.SuccessiveHalvingPruner` (rungs at 1/4 and
   1/2 of the budget, each keeping the better half). The objective is
   the eval loss at the budget, interpolated log-log on the logged curve. Points that are
   disconnected, redundant, not realizable at every width, or costlier per step than the
   dense model at some width (:func:`search.theta.costlier_than_dense`) are pruned at
   once with the reason in the trial's ``rejection`` attribute (TPE treats pruned trials
   as bad), and
   so are diverged runs. Every trained trial is a run in the run store (sweep
   ``<sweep>/theta``); a pruned run is stored as finished with its shorter curve. The
   study lives in optuna RDB storage (by default the run store's own database), so
   several processes, on one machine or many, can share it (``load_if_exists``). Trials
   count toward ``trials`` once they have trained; rejected points do not. ``trials`` is
   the study's total, shared by every process on it: a trial takes one of the ``trials``
   training slots before it trains, and a process stops when the study has them all. ``enqueue``
   puts given points first in a new study. A trial that an interrupt or a dead worker left
   failed (dead workers' trials are failed through optuna's heartbeat) is enqueued once
   more by the next search, and its run resumes from its checkpoint. The best
   ``promote`` distinct structures join the grid; with no structures and ``promote=0``
   the search is θ-only.
2. **Learning rate per structure** (when ``lr_grid`` is given; ``einspace search`` gives 5):
   :func:`search.tuning.tune_lrs` trains each grid structure's longest run at the smallest
   width on a log grid of base learning rates (sweep ``<sweep>/lr``) and the grid then uses
   each structure's best rate, transferred to larger widths by μP.
3. **Grid**: structures × widths × seeds × horizons become the planned runs of
   :mod:`search.run_plan` (with ``tokens_per_param``, horizons that grow with the model;
   with the ``wsd`` schedule, one trunk per (structure, width, seed) and a cooldown branch
   per shorter horizon) in the run store (sweep ``<sweep>``). Finished, diverged and failed
   runs are skipped; runs left ``running`` by a dead process resume from their checkpoint.
   ``workers`` processes claim runs from the shared store, so no run is trained twice
   (:mod:`search.grid`).

Before any of it, the search prints its plan's total FLOPs (θ trials at their budget, the
tuning runs, the grid); ``dry_run=True`` (``--dry-run``) prints every planned run instead
and trains nothing.

Every option of the search (workers, store, θ trials, tuning, horizons, …) is a field of
:class:`~search.options.SearchOptions`: ``run_search`` takes an ``options`` object and
any field as a keyword that replaces it.

:func:`run_search` returns the grid's runs and their logged points; fitting them is the
caller's (:func:`analysis.search_fits.fit_search`, as ``einspace search`` does).

The parts live in their own modules: :mod:`search.settings` (the shared run settings and
input parsing), :mod:`search.options` (the search's options), :mod:`search.run_plan` (the
plan), :mod:`search.grid` (the grid's workers),
:mod:`search.theta` (the θ study), :mod:`search.workers` (worker processes and their
messages) and :mod:`search.progress` (progress bars and the result tables) and :mod:`search.result`.

Progress shows as rich progress bars with a live best-so-far table. Ctrl-C stops cleanly:
finished runs are kept, and the interrupted runs stay ``running`` with their checkpoints,
so the next ``einspace search`` with the same arguments resumes them (a run is taken over
once the process that held it has exited).

This module imports neither torch nor optuna at import time.

Examples:
    >>> parse_widths("16, 64,256")
    [16, 64, 256]
    >>> list(parse_structures(["btt", "dense", "btt:r=0.25"]))
    ['btt(r=0.25)', 'dense']
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from einspace.errors import EinspaceError
from einspace.structure import Structure
from search.grid import GridJob, grid_frame, grid_runs, run_grid
from search.options import DEFAULT_STORE, SearchOptions, with_options
from search.progress import Display, ProgressDisplay, print_plan, print_result
from search.proxy_config import check_settings
from search.result import SearchResult
from search.run_plan import PlannedRun, SearchPlan, plan_tuning
from search.settings import (
    Candidate,
    RunSettings,
    parse_candidate,
    parse_seeds,
    parse_structures,
    parse_widths,
    width_structure,
)
from search.space import check_widths
from search.theta import (
    ThetaJob,
    check_compute_ratio,
    enqueue_points,
    interpolate_loss,
    open_optuna_storage,
    promoted,
    raw_theta,
    requeue_interrupted,
    run_theta,
    shortfall,
    theta_job,
    trials_frame,
)
from search.tuning import lr_grid, tune_lrs

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from search.tasks import Task


__all__ = [
    "DEFAULT_STORE",
    "RunSettings",
    "SearchOptions",
    "SearchResult",
    "interpolate_loss",
    "parse_seeds",
    "parse_structures",
    "parse_widths",
    "run_search",
]


def _check_crossing(settings: RunSettings, model: object, workers: int) -> None:
    """Worker processes rebuild task and model from the config: refuse in-process objects."""
    from search.models import importable

    if workers == 1:
        return
    if settings.task_repr is not None:
        raise EinspaceError(
            f"the task object {settings.task_repr} cannot cross to {workers} worker processes; "
            f"pass it as 'module:attr' (a module the workers can import) or use workers=1"
        )
    if model is not None and not isinstance(model, str) and not importable(settings.model, model):
        raise EinspaceError(
            f"the model factory {settings.model!r} cannot be imported by worker processes "
            f"(defined in __main__ or inside a function); pass it as 'module:attr' or use "
            f"workers=1"
        )


def _store_target(store: str | os.PathLike[str]) -> str:
    """The store location as a string that other processes can open (password kept)."""
    text = os.fspath(store)
    if "://" not in text and text not in ("", ":memory:"):
        text = str(Path(text).expanduser().resolve())
    return text


@dataclass(frozen=True)
class _Search:
    """A search's checked inputs."""

    settings: RunSettings
    options: SearchOptions
    widths: list[int]
    seeds: list[int]
    candidates: dict[str, Candidate]
    target: str

    def grid(
        self, settings: RunSettings | Mapping[str, RunSettings] | None = None
    ) -> list[PlannedRun]:
        """The grid's planned runs with ``settings`` (default: the search's; a mapping: per
        structure), or none without candidates."""
        if not self.candidates:
            return []
        own = self.settings if settings is None or not settings else settings
        return grid_runs(
            self.candidates, self.widths, self.seeds, own, self.options.tokens_per_param
        )

    def dense_steps(self, width: int) -> int:
        """Dense's longest training length at ``width`` (the θ trials' default budget)."""
        dense = {"dense": Structure.named("dense")}
        runs = grid_runs(
            dense, [width], self.seeds[:1], self.settings, self.options.tokens_per_param
        )
        return max(int(r.config.steps) for r in runs)


def _prepare(
    structures: Sequence[str | Candidate],
    widths: str | Sequence[int],
    seeds: Sequence[int],
    settings: RunSettings,
    options: SearchOptions,
    model: object,
) -> _Search:
    """Check every input of a search before any work (raises :class:`EinspaceError`)."""
    _check_crossing(settings, model, options.workers)
    check_settings(settings)
    options.check()
    width_list = parse_widths(widths)
    seed_list = parse_seeds(seeds)
    candidates = parse_structures(structures)
    check_compute_ratio(options.max_compute_ratio)  # also without θ trials: a mistake
    if not candidates and options.trials == 0:
        grid_runs(candidates, width_list, seed_list, settings)  # raises: empty list
    for item in options.enqueue:
        raw_theta(item)
    layers = {label: width_structure(c) for label, c in candidates.items()}
    check_widths(layers, width_list, mode=settings.mode, pad_tol=settings.pad_tol)
    target = _store_target(options.store)
    return _Search(settings, options, width_list, seed_list, candidates, target)


def _plan(search: _Search, theta: ThetaJob | None = None) -> SearchPlan:
    """The plan of a search as it starts: the tuning runs (of the learning-rate grid around
    the settings' ``lr``, before any extension), the grid at the settings' ``lr``, and the
    θ trials' budget (the θ structures a study promotes are not in it). A structure's
    tuned grid run is one of its tuning runs (the winner), so the grid's is left out."""
    grid = search.grid()
    runs: list[PlannedRun] = []
    if search.options.lr_grid is not None:
        center = search.settings.lr
        lrs = {label: lr_grid(search.options.lr_grid, center) for label in search.candidates}
        runs = plan_tuning(grid, lrs, search.seeds[0])
        tuned = plan_tuning(grid, dict.fromkeys(search.candidates, (center,)), search.seeds[0])
        grid = [r for r in grid if r.run_id not in {t.run_id for t in tuned}]
    runs += grid
    if theta is None:
        return SearchPlan(tuple(runs))
    return SearchPlan(tuple(runs), search.options.trials, theta.budget)


def _theta_job(search: _Search) -> ThetaJob | None:
    """The θ study's job (None without θ trials)."""
    if search.options.trials == 0:
        return None
    options = search.options
    return theta_job(search.settings, options, search.widths, search.target, search.dense_steps)


def _start_theta(job: ThetaJob, search: _Search, out: Console) -> None:
    """Open the θ study's storage and fill its queue (retried and enqueued trials)."""
    open_optuna_storage(job.storage)  # a malformed URL fails before any work
    enqueue_points(job, [raw_theta(item) for item in search.options.enqueue])
    retries = requeue_interrupted(job)
    if retries:
        out.print(f"θ search: retrying {retries} interrupted trial(s)")


def _theta_stage(job: ThetaJob, search: _Search, display: Display, out: Console) -> list[str]:
    """Run the θ trials; the promoted structures (joined to the candidates)."""
    options = search.options
    out.print(
        f"θ search: study {job.study!r}, {options.trials} trials at width "
        f"{job.theta_width}, budget {job.budget:.3g} FLOPs"
    )
    run_theta(job, options.workers, options.threads, display)
    frame, _ = trials_frame(job)
    missing = shortfall(frame, options.trials)
    if missing is not None:
        out.print(f"[yellow]{missing}[/yellow]", highlight=False)
    chosen = promoted(frame, options.promote)
    for spec in chosen:
        search.candidates.setdefault(spec, parse_candidate(spec))
    return chosen


def _grid_stage(search: _Search, job: GridJob, display: Display) -> tuple[Any, Any]:
    """Tune the learning rates (if asked), then train the grid; (settings per structure,
    tuning frame)."""
    options, settings = search.options, search.settings
    per_structure = dict.fromkeys(search.candidates, settings)
    frame = None
    if options.lr_grid is not None:
        centers = {label: [settings.lr] for label in search.candidates}
        tuning = plan_tuning(search.grid(), centers, search.seeds[0])
        templates = {r.config.structure: r for r in tuning}
        best, frame = tune_lrs(job, templates, options.lr_grid, display)
        per_structure = {k: replace(settings, lr=best[k]) for k in search.candidates}
    run_grid(job, search.grid(per_structure), display)
    return per_structure, frame


def run_search(
    structures: Sequence[str | Candidate] = (),
    widths: str | Sequence[int] = (16, 64, 256),
    seeds: Sequence[int] = (0,),
    *,
    settings: RunSettings | None = None,
    options: SearchOptions | None = None,
    console: Console | None = None,
    task: Task | str | None = None,
    model: Callable[[Any, int, Any], Any] | str | None = None,
    **overrides: Any,
) -> SearchResult:
    """Search structures with proxy runs (see the module docs); fitting is the caller's.

    Args:
        structures: grid candidates: names (``"btt"``), ``"btt:r=0.5"``, θ strings, sparse
            specs (``"btt_moe:e=4,k=1"``, ``"moe:e=4,k=1"``: docs/moe.md).
        widths: hidden widths (a list or ``"16,64,256"``); every structure must realize at
            each.
        seeds: seeds per structure and width.
        settings: shared run settings (task, steps, lr, schedule, …).
        options: the search's options (:class:`~search.options.SearchOptions`); any of its
            fields may also be given as a keyword (``workers=2, store="runs.sqlite"``).
        console: where to print (a fresh rich Console by default).
        task: the task instead of the settings' (a registered name, ``"module:attr"`` or a
            :class:`~search.tasks.Task` object; objects need ``workers=1``).
        model: a model factory ``(structure, width, task) -> nn.Module`` or
            ``"module:attr"`` (one that does not import by name needs ``workers=1``).

    With ``workers > 1`` the workers are separate processes that import the main module,
    so a script must call this under ``if __name__ == "__main__":``.

    Raises:
        EinspaceError: an unknown task or option, no candidates, a width a structure
            cannot realize at, a malformed store or storage URL, or another bad argument.

    Examples:
        >>> import io, tempfile, pathlib
        >>> from rich.console import Console
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "runs.sqlite"
        >>> quiet = Console(file=io.StringIO())
        >>> settings = RunSettings(steps=8, eval_every=4, task_kwargs={"n_eval": 64})
        >>> result = run_search(["dense", "monarch"], [16, 36], settings=settings,
        ...                     store=path, progress=False, console=quiet)
        >>> sorted(result.runs["structure"].unique()), result.runs["status"].unique().tolist()
        (['dense', 'monarch'], ['finished'])
    """
    from rich.console import Console

    from search.store import RunStore

    started = time.perf_counter()
    out = console or Console()
    opts = with_options(options, **overrides)
    settings = settings or RunSettings()
    if task is not None or model is not None:
        from search.proxy import with_task_and_model

        settings = with_task_and_model(settings, task, model)
    search = _prepare(structures, widths, seeds, settings, opts, model)
    theta = _theta_job(search)
    plan = _plan(search, theta)  # also checks the learning-rate grid before any work
    if opts.dry_run:
        print_plan(out, plan, opts.plan_format)
        return _dry_result(search, plan, time.perf_counter() - started)
    display = ProgressDisplay(out, opts.progress)
    interrupted = False
    frames: dict[str, Any] = {"trials": None, "lrs": None}
    chosen: list[str] = []
    per_structure: Mapping[str, RunSettings] = {}
    with RunStore(search.target, lease_s=opts.lease_s) as run_store:
        out.print(plan.summary(), highlight=False)
        if theta is not None:
            _start_theta(theta, search, out)
        grid_job = GridJob(search.target, opts.sweep, replace(opts, lease_s=run_store.lease_s))
        try:
            with display:
                if theta is not None:
                    chosen = _theta_stage(theta, search, display, out)
                if search.candidates:
                    per_structure, frames["lrs"] = _grid_stage(search, grid_job, display)
        except KeyboardInterrupt:
            interrupted = True
        if theta is not None:
            with contextlib.suppress(Exception):
                frames["trials"], _ = trials_frame(theta)
        result = SearchResult(
            run_store.url,
            opts.sweep,
            *_stored(run_store, search.grid(per_structure)),
            structures=list(search.candidates),
            trials=frames["trials"],
            study=None if theta is None else theta.study,
            promoted=chosen,
            lrs=frames["lrs"],
            lr={k: s.lr for k, s in per_structure.items()},
            interrupted=interrupted,
            wall_s=time.perf_counter() - started,
            plan=plan,
        )
    print_result(out, result)
    return result


def _stored(store: Any, runs: Sequence[PlannedRun]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored state of the grid's runs, and their points."""
    return grid_frame(store, runs), store.points(run_ids=[r.run_id for r in runs])


def _dry_result(search: _Search, plan: SearchPlan, wall_s: float) -> SearchResult:
    """What a dry run returns: the plan, and empty runs and points."""
    import pandas as pd

    from search.grid import GRID_COLUMNS

    return SearchResult(
        search.options.store,
        search.options.sweep,
        pd.DataFrame(columns=list(GRID_COLUMNS)),
        pd.DataFrame(),
        list(search.candidates),
        wall_s=wall_s,
        plan=plan,
        dry_run=True,
    )
