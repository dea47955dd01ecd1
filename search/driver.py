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
   :func:`search.tuning.tune_lrs` trains each grid structure at the smallest width on a log
   grid of base learning rates (sweep ``<sweep>/lr``) and the grid then uses each
   structure's best rate, transferred to larger widths by μP.
3. **Grid**: structures × widths × seeds become :class:`~search.proxy_config.ProxyConfig` runs in
   the run store (sweep ``<sweep>``). Finished, diverged and failed runs are skipped;
   runs left ``running`` by a dead process resume from their checkpoint. ``workers``
   processes claim runs from the shared store, so no run is trained twice.

:func:`run_search` returns the grid's runs and their logged points; fitting them is the
caller's (:func:`analysis.search_fits.fit_search`, as ``einspace search`` does).

The parts live in their own modules: :mod:`search.settings` (the shared run settings and
input parsing), :mod:`search.grid` (the grid's configs and its workers),
:mod:`search.theta` (the θ study), :mod:`search.workers` (worker processes and their
messages) and :mod:`search.progress` (progress bars and the result tables).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from einspace.errors import EinspaceError
from einspace.structure import Structure
from search.grid import _grid_runs, _run_grid, _run_id_of, grid_configs
from search.progress import _Display, _print_result
from search.proxy_config import check_settings, compute_per_step
from search.settings import RunSettings, _check_int, parse_seeds, parse_structures, parse_widths
from search.space import check_widths
from search.theta import (
    MAX_COMPUTE_RATIO,
    _enqueue,
    _open_optuna_storage,
    _promoted,
    _raw_theta,
    _requeue_interrupted,
    _run_theta,
    _shortfall,
    _theta_job,
    _ThetaJob,
    _trials_frame,
    check_compute_ratio,
    interpolate_loss,
)
from search.tuning import tune_lrs

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from search.tasks import Task
    from search.tuning import LRGrid


__all__ = [
    "DEFAULT_STORE",
    "RunSettings",
    "SearchResult",
    "grid_configs",
    "interpolate_loss",
    "parse_seeds",
    "parse_structures",
    "parse_widths",
    "run_search",
]


DEFAULT_STORE: Final = "einspace-runs.sqlite"
"""The run store of ``einspace search`` when none is given (in the current folder)."""


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


@dataclass
class SearchResult:
    """What :func:`run_search` did.

    Attributes:
        store: the run store's URL (password hidden).
        sweep: the grid's sweep name (θ trials are under ``<sweep>/theta``).
        runs: the grid's runs: run_id, structure, width, seed, status, final_eval_loss.
        points: the grid's logged points (:meth:`~search.store.RunStore.points`), for the
            caller to fit (:func:`analysis.search_fits.fit_search`).
        structures: the grid's structure labels, in the order given.
        trials: the θ study's trials (number, state, value, theta, rejection, run_id), or
            None without a θ search.
        study: the optuna study name, or None.
        promoted: θ structures that joined the grid.
        lrs: the learning-rate tuning runs (structure, lr, run_id, status, final_eval_loss,
            best), or None without tuning.
        lr: the base learning rate each grid structure trained with.
        interrupted: whether Ctrl-C stopped the search.
        wall_s: seconds spent.
    """

    store: str
    sweep: str
    runs: pd.DataFrame
    points: pd.DataFrame
    structures: list[str] = field(default_factory=list)
    trials: pd.DataFrame | None = None
    study: str | None = None
    promoted: list[str] = field(default_factory=list)
    lrs: pd.DataFrame | None = None
    lr: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    wall_s: float = 0.0


def run_search(
    structures: Sequence[str | Structure] = (),
    widths: str | Sequence[int] = (16, 64, 256),
    seeds: Sequence[int] = (0,),
    *,
    settings: RunSettings | None = None,
    store: str | os.PathLike[str] = DEFAULT_STORE,
    sweep: str = "search",
    workers: int = 1,
    device: str | None = None,
    checkpoint_every: int | None = None,
    threads: int | None = 1,
    trials: int = 0,
    promote: int = 3,
    theta_width: int | None = None,
    budget: float | None = None,
    storage: str | None = None,
    study: str | None = None,
    sampler_seed: int = 0,
    prune: bool = True,
    enqueue: Sequence[Sequence[float] | str] = (),
    lease_s: float = 120.0,
    progress: bool = True,
    console: Console | None = None,
    task: Task | str | None = None,
    model: Callable[[Any, int, Any], Any] | str | None = None,
    lr_grid: LRGrid | None = None,
    max_compute_ratio: float = MAX_COMPUTE_RATIO,
) -> SearchResult:
    """Search structures with proxy runs and fit their scaling laws (see the module docs).

    Args:
        structures: grid candidates: names (``"btt"``), ``"btt:r=0.5"``, θ strings.
        widths: hidden widths (a list or ``"16,64,256"``); every structure must realize at
            each.
        seeds: seeds per structure and width.
        settings: shared run settings (task, steps, lr, …).
        store: run store: an SQLite path or any SQLAlchemy URL.
        sweep: name of the grid's sweep in the store.
        workers: processes that train runs in parallel (each claims runs from the store).
        device: torch device of the runs (default CPU).
        checkpoint_every: steps between checkpoints (default: about four per run).
        threads: torch intra-op threads per worker (None: torch's default). One thread is
            the default: proxy models are small, and more threads per worker than cores
            per worker make every run many times slower when the CPU is shared.
        trials: θ-space trials that train, counted in the study as a whole: several
            processes (or machines) that share the study train ``trials`` between them,
            not each (0: grid only).
        promote: how many of the best θ structures join the grid.
        theta_width: width of the θ trials (default: the middle grid width).
        budget: θ trials' compute budget in FLOPs (default: dense's compute in
            ``settings.steps`` steps at ``theta_width``).
        storage: optuna RDB storage URL (default: the run store's database).
        study: optuna study name (default: derived from the sweep and the θ settings).
        sampler_seed: seed of the TPE sampler (worker i uses ``sampler_seed + i``).
        prune: prune θ trials by successive halving.
        enqueue: θ points (7 raw numbers or a ``"(α|β|γ|δ|ε|φ|ρ)"`` string) that a new
            study evaluates first, before the sampler proposes its own.
        lease_s: seconds a worker's run stays its own without a heartbeat (workers beat
            every quarter of it); a run whose worker misses it is taken over by another
            worker, and the old one's later writes are refused. It is not part of a
            run's identity.
        progress: show progress bars and the live table.
        console: where to print (a fresh rich Console by default).
        task: the task instead of the settings' (a registered name, ``"module:attr"`` or a
            :class:`~search.tasks.Task` object; objects need ``workers=1``).
        model: a model factory ``(structure, width, task) -> nn.Module`` or
            ``"module:attr"`` (a callable that does not import by its ``module:qualname``
            needs ``workers=1``).
        lr_grid: tune each structure's base learning rate first (:mod:`search.tuning`): a
            count of log-spaced values around ``settings.lr`` (two decades) or the values;
            None: every structure trains with ``settings.lr``.
        max_compute_ratio: θ points whose model needs more than this times the dense
            model's compute per step, at the θ width or a grid width, are rejected before
            training (:func:`search.theta.costlier_than_dense`). It bounds which points a
            study trains, not any run's identity.

    With ``workers > 1`` the workers are separate processes that import the main module,
    so a script must call this under ``if __name__ == "__main__":``.

    Raises:
        EinspaceError: unknown task, an empty candidate list, a width a structure cannot
            realize at (with the nearest one that works), a malformed store or storage URL,
            or another bad argument.

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
    settings = settings or RunSettings()
    if task is not None or model is not None:
        from search.proxy import with_task_and_model

        settings = with_task_and_model(settings, task, model)
    _check_crossing(settings, model, workers)
    check_settings(settings)
    width_list = parse_widths(widths)
    seed_list = parse_seeds(seeds)
    candidates = parse_structures(structures)
    _check_int(workers, "workers", 1)
    _check_int(trials, "trials", 0)
    _check_int(promote, "promote", 0)
    check_compute_ratio(max_compute_ratio)  # also without θ trials: a bad value is a mistake
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float) or not 0 < lease_s < 1e9:
        raise EinspaceError(
            f"lease_s (--lease) = {lease_s!r} must be a positive number of seconds, e.g. 120 "
            f"(the default); workers heartbeat every quarter of it"
        )
    if not candidates and trials == 0:
        grid_configs(candidates, width_list, seed_list, settings)  # raises: empty list
    seeded = [_raw_theta(item) for item in enqueue]
    check_widths(candidates, width_list, mode=settings.mode, pad_tol=settings.pad_tol)
    target = _store_target(store)
    display = _Display(out, progress)
    interrupted = False
    trials_frame: pd.DataFrame | None = None
    study_name: str | None = None
    promoted: list[str] = []
    per_structure: dict[str, RunSettings] = {}
    lr_frame: pd.DataFrame | None = None
    with RunStore(target, lease_s=lease_s) as run_store:
        job: _ThetaJob | None = None
        if trials > 0:
            job = _theta_job(
                settings, width_list, target, sweep, trials, theta_width, budget,
                storage, study, sampler_seed, prune, device, checkpoint_every,
                max_compute_ratio,
            )  # fmt: skip
            job = replace(job, lease_s=run_store.lease_s)
            study_name = job.study
            _open_optuna_storage(job.storage)  # a malformed URL fails before any work
            _enqueue(job, seeded)
            retries = _requeue_interrupted(job)
            if retries:
                out.print(f"θ search: retrying {retries} interrupted trial(s)")
        try:
            with display:
                if job is not None:
                    out.print(
                        f"θ search: study {job.study!r}, {trials} trials at width "
                        f"{job.theta_width}, budget {job.budget:.3g} FLOPs"
                    )
                    _run_theta(job, workers, threads, display)
                    trials_frame, _ = _trials_frame(job)
                    shortfall = _shortfall(trials_frame, job.trials)
                    if shortfall is not None:
                        out.print(f"[yellow]{shortfall}[/yellow]", highlight=False)
                    promoted = _promoted(trials_frame, promote)
                    for spec in promoted:
                        candidates.setdefault(spec, Structure.parse(spec))
                if candidates:
                    per_structure = dict.fromkeys(candidates, settings)
                    if lr_grid is not None:
                        best, lr_frame = tune_lrs(
                            target, candidates, min(width_list), seed_list[0], settings,
                            lr_grid, sweep=sweep, workers=1, device=device,  # see tune_lrs
                            checkpoint_every=checkpoint_every, threads=threads, display=display,
                            lease_s=run_store.lease_s,
                        )  # fmt: skip
                        per_structure = {k: replace(settings, lr=best[k]) for k in candidates}
                    configs = [
                        config
                        for label, structure in candidates.items()
                        for config in grid_configs(
                            {label: structure}, width_list, seed_list, per_structure[label]
                        )
                    ]
                    configs.sort(key=lambda c: -c.steps * compute_per_step(c, c.structure, c.width))
                    _run_grid(
                        target,
                        configs,
                        sweep=sweep,
                        workers=workers,
                        device=device,
                        checkpoint_every=checkpoint_every,
                        threads=threads,
                        display=display,
                        lease_s=run_store.lease_s,
                    )
        except KeyboardInterrupt:
            interrupted = True
        if job is not None and trials_frame is None:
            with contextlib.suppress(Exception):
                trials_frame, _ = _trials_frame(job)
        ids = [
            _run_id_of(per_structure.get(label, settings), label, w, s)
            for label in candidates
            for w in width_list
            for s in seed_list
        ]
        runs = _grid_runs(run_store, ids)
        points = run_store.points(run_ids=ids)
        url = run_store.url
    result = SearchResult(
        url, sweep, runs, points, list(candidates), trials_frame, study_name, promoted,
        lr_frame, {k: s.lr for k, s in per_structure.items()}, interrupted,
        time.perf_counter() - started,
    )  # fmt: skip
    _print_result(out, result)
    return result
