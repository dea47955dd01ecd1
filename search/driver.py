"""The search driver: grid sweeps and θ-space search over proxy runs, then scaling fits.

:func:`run_search` does, in order:

1. **θ-space search** (when ``trials > 0``): optuna's TPE sampler proposes the seven raw
   numbers of :mod:`search.space` per trial; the snapped point is trained at
   ``theta_width`` until it has spent the compute ``budget`` (default: what dense spends in
   ``steps`` steps at that width), reporting its eval loss at 16 evenly spaced fractions
   of the budget to a :class:`~optuna.pruners.SuccessiveHalvingPruner` (rungs at 1/4 and
   1/2 of the budget, each keeping the better half). The objective is
   the eval loss at the budget, interpolated log-log on the logged curve. Points that are
   disconnected, redundant or not realizable at every width are pruned at once with the
   reason in the trial's ``rejection`` attribute (TPE treats pruned trials as bad), and
   so are diverged runs. Every trained trial is a run in the run store (sweep
   ``<sweep>/theta``); a pruned run is stored as finished with its shorter curve. The
   study lives in optuna RDB storage (by default the run store's own database), so
   several processes, on one machine or many, can share it (``load_if_exists``). Trials
   count toward ``trials`` once they have trained; rejected points do not. ``enqueue``
   puts given points first in a new study. A trial that an interrupt or a dead worker left
   failed (dead workers' trials are failed through optuna's heartbeat) is enqueued once
   more by the next search, and its run resumes from its checkpoint. The best
   ``promote`` distinct structures join the grid; with no structures and ``promote=0``
   the search is θ-only.
2. **Grid**: structures × widths × seeds become :class:`~search.proxy.ProxyConfig` runs in
   the run store (sweep ``<sweep>``). Finished, diverged and failed runs are skipped;
   runs left ``running`` by a dead process resume from their checkpoint. ``workers``
   processes claim runs from the shared store, so no run is trained twice.
3. **Fit**: the points of the grid's finished runs are pooled per structure over all
   widths and fitted with :func:`analysis.scaling.fit_table` (frontier, power law, and the
   compute multiplier against dense, read at the end of dense's frontier).

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
import hashlib
import itertools
import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import re
import signal
import socket
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from einspace.errors import EinspaceError, suggest
from einspace.structure import Structure
from search.space import PARAM_NAMES, Mode, check_widths, snap_theta, theta_point

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from rich.console import Console

    from search.proxy import CurvePoint, ProxyConfig, RunResult
    from search.store import RunStore

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

EVALS_PER_TRIAL: Final = 16
"""A θ trial reports its eval loss at this many evenly spaced fractions of the budget."""

PRUNE_MIN_RESOURCE: Final = 4
"""First successive-halving rung: a quarter of the budget (in units of 1/16 budget)."""

PRUNE_REDUCTION: Final = 2
"""Successive-halving reduction factor: rungs at 1/4 and 1/2 of the budget, half kept."""

Emit = Callable[[tuple[Any, ...]], None]


# --------------------------------------------------------------------------- inputs


def _parse_ints(values: str | Iterable[int], what: str, low: int, example: str) -> list[int]:
    items: list[object] = (
        [p.strip() for p in values.split(",") if p.strip()]
        if isinstance(values, str)
        else list(values)
    )
    out: list[int] = []
    for item in items:
        try:
            value = int(item) if isinstance(item, str) else item
        except ValueError:
            value = None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise EinspaceError(f"{what} {item!r} must be an integer >= {low}, e.g. {example}")
        if value not in out:
            out.append(value)
    if not out:
        raise EinspaceError(f"no {what}s given ({values!r}); expected e.g. '{example}'")
    return out


def parse_widths(widths: str | Iterable[int]) -> list[int]:
    """Widths from ``"16,64,256"`` or a sequence of ints; distinct, in the order given.

    Raises:
        EinspaceError: no widths, or a width that is not a positive integer.

    Examples:
        >>> parse_widths([64, 16, 64])
        [64, 16]
    """
    return _parse_ints(widths, "width", 1, "16,64,256")


def parse_seeds(seeds: str | Iterable[int]) -> list[int]:
    """Seeds from ``"0,1,2"`` or a sequence of ints ≥ 0; distinct, in the order given.

    Examples:
        >>> parse_seeds("0, 1")
        [0, 1]
    """
    return _parse_ints(seeds, "seed", 0, "0,1,2")


def parse_structures(specs: Iterable[str | Structure]) -> dict[str, Structure]:
    """Parse structure specs into ``{canonical label: structure}``, dropping repeats.

    The label is ``str(structure)``: ``"btt"`` becomes ``"btt(r=0.25)"``, a θ string keeps
    its paper form. Labels parse back to the same structure.

    Raises:
        EinspaceError: a spec that does not parse (the message names it).

    Examples:
        >>> list(parse_structures(["low_rank:r=0.25", "(1|0|0|1|0|0|0)"]))
        ['low_rank(r=0.25)', '(1|0|0|1|0|0|0)']
    """
    out: dict[str, Structure] = {}
    for spec in specs:
        structure = spec if isinstance(spec, Structure) else Structure.parse(str(spec))
        out.setdefault(str(structure), structure)
    return out


@dataclass(frozen=True)
class RunSettings:
    """The settings every run of a search shares (see :class:`~search.proxy.ProxyConfig`).

    Examples:
        >>> RunSettings(steps=50).config("btt", 16, seed=1).to_dict()["structure"]
        'btt(r=0.25)'
    """

    task: str = "mlp_regression"
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 64
    depth: int = 2
    eval_every: int = 25
    weight_decay: float = 0.0
    base_width: int = 64
    mode: Mode = "round"
    pad_tol: float = 0.15

    def config(
        self,
        structure: str | Structure,
        width: int,
        seed: int = 0,
        *,
        steps: int | None = None,
        eval_every: int | None = None,
    ) -> ProxyConfig:
        """The :class:`~search.proxy.ProxyConfig` of one run (imports torch)."""
        from search.proxy import ProxyConfig

        return ProxyConfig(
            structure=structure if isinstance(structure, str) else str(structure),
            width=width,
            steps=self.steps if steps is None else steps,
            task=self.task,
            task_kwargs=dict(self.task_kwargs),
            seed=seed,
            lr=self.lr,
            batch_size=self.batch_size,
            depth=self.depth,
            eval_every=self.eval_every if eval_every is None else eval_every,
            weight_decay=self.weight_decay,
            base_width=self.base_width,
            mode=self.mode,
            pad_tol=self.pad_tol,
        )

    def check(self) -> None:
        """Raise :class:`EinspaceError` for an unknown task or a bad value (imports torch)."""
        from search.tasks import TASKS

        if self.task not in TASKS:
            raise EinspaceError(f"unknown task {self.task!r}; {suggest(str(self.task), TASKS)}")
        self.config("dense", 8)  # validates every number


def grid_configs(
    structures: Mapping[str, Structure],
    widths: Sequence[int],
    seeds: Sequence[int],
    settings: RunSettings,
) -> list[ProxyConfig]:
    """One config per structure × width × seed, most expensive first (for load balance).

    Raises:
        EinspaceError: no structures, or a structure that does not realize at a width
            (naming both and the nearest width that works).

    Examples:
        >>> cfgs = grid_configs(parse_structures(["dense", "btt"]), [16, 64], [0], RunSettings())
        >>> [(c.structure, c.width) for c in cfgs]
        [('dense', 64), ('btt(r=0.25)', 64), ('dense', 16), ('btt(r=0.25)', 16)]
    """
    if not structures:
        raise EinspaceError(
            "the candidate list is empty: give structures (e.g. 'dense btt monarch "
            "low_rank kronecker') or θ-space trials (--trials N)"
        )
    if not seeds:
        raise EinspaceError("no seeds given; expected e.g. [0]")
    check_widths(structures, widths, mode=settings.mode, pad_tol=settings.pad_tol)
    configs = [
        settings.config(label, width, seed)
        for label in structures
        for width in widths
        for seed in seeds
    ]
    cost = {id(c): _cost(c, structures[c.structure]) for c in configs}
    return sorted(configs, key=lambda c: -cost[id(c)])


def _cost(config: ProxyConfig, structure: Structure) -> float:
    r = structure.realize(config.width, config.width, mode=config.mode, pad_tol=config.pad_tol)
    return float(config.steps * (config.depth * r.macs() + config.width * 16))


# --------------------------------------------------------------------------- storage


def _store_target(store: str | os.PathLike[str]) -> str:
    """The store location as a string that other processes can open (password kept)."""
    text = os.fspath(store)
    if "://" not in text and text not in ("", ":memory:"):
        text = str(Path(text).expanduser().resolve())
    return text


def _optuna_url(storage: str | None, store_target: str) -> str:
    if storage is None:
        if "://" in store_target:
            return store_target
        return f"sqlite:///{store_target}"
    return storage


def _open_optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """optuna RDB storage for ``url``; a malformed URL or missing driver raises."""
    import optuna
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    example = "sqlite:///search.sqlite or postgresql+psycopg://user:password@host:5432/db"
    if not isinstance(url, str) or "://" not in url:
        raise EinspaceError(f"storage URL {url!r} is malformed; expected e.g. {example}")
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError) as err:
        raise EinspaceError(
            f"storage URL {url!r} is malformed ({err}); expected e.g. {example}"
        ) from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 60}
    try:
        with warnings.catch_warnings():  # the heartbeat is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=60, grace_period=180
            )
    except ImportError as err:
        raise EinspaceError(
            f"the database driver for storage {parsed.render_as_string(hide_password=True)!r}"
            f" is not installed ({err}); e.g. pip install 'psycopg[binary]'"
        ) from None
    except Exception as err:  # optuna wraps SQLAlchemy errors in several ways
        raise EinspaceError(
            f"cannot open optuna storage {parsed.render_as_string(hide_password=True)!r}: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; "
            f"expected e.g. {example}"
        ) from None


# --------------------------------------------------------------------------- results


@dataclass
class SearchResult:
    """What :func:`run_search` did.

    Attributes:
        store: the run store's URL (password hidden).
        sweep: the grid's sweep name (θ trials are under ``<sweep>/theta``).
        runs: the grid's runs: run_id, structure, width, seed, status, final_eval_loss.
        fits: :func:`analysis.scaling.fit_table` of the grid (``multiplier`` vs dense).
        trials: the θ study's trials (number, state, value, theta, rejection, run_id), or
            None without a θ search.
        study: the optuna study name, or None.
        promoted: θ structures that joined the grid.
        interrupted: whether Ctrl-C stopped the search.
        wall_s: seconds spent.
    """

    store: str
    sweep: str
    runs: pd.DataFrame
    fits: pd.DataFrame
    trials: pd.DataFrame | None = None
    study: str | None = None
    promoted: list[str] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0


def interpolate_loss(
    points: Sequence[CurvePoint], compute: float, key: str = "eval_loss"
) -> float | None:
    """The loss at ``compute`` by linear interpolation in (log C, log L) between logged
    points; the last point's loss when the curve stops short; None without points.

    Examples:
        >>> from search.proxy import CurvePoint
        >>> pts = [CurvePoint(0, 0.0, 1.0, 1.0), CurvePoint(10, 100.0, 0.5, 0.4),
        ...        CurvePoint(20, 400.0, 0.3, 0.1)]
        >>> round(interpolate_loss(pts, 200.0), 12)
        0.2
        >>> interpolate_loss(pts, 1e6), interpolate_loss(pts, 50.0)
        (0.1, 0.4)
    """
    curve = [
        (p.compute, getattr(p, key))
        for p in points
        if getattr(p, key) is not None and p.compute > 0
    ]
    if not curve:
        return None
    if compute <= curve[0][0]:
        return float(curve[0][1])
    for (c0, l0), (c1, l1) in itertools.pairwise(curve):
        if c0 <= compute <= c1:
            if c1 == c0 or l0 <= 0 or l1 <= 0:
                return float(l1)
            t = (math.log(compute) - math.log(c0)) / (math.log(c1) - math.log(c0))
            return float(math.exp(math.log(l0) + t * (math.log(l1) - math.log(l0))))
    return float(curve[-1][1])


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


def _done_runs(store: RunStore) -> dict[str, dict[Any, Any]]:
    """Finished, diverged and failed runs of the store by id (they are never run again)."""
    runs = store.runs()
    final = runs[runs["status"].isin(["finished", "diverged", "failed"])]
    return {str(row["run_id"]): row for row in final.to_dict("records")}


def _stored_summary(config: Mapping[str, Any], row: Mapping[Any, Any]) -> dict[str, Any]:
    loss = row.get("final_eval_loss")
    return {
        "run_id": row["run_id"],
        "structure": config["structure"],
        "width": config["width"],
        "seed": config["seed"],
        "status": row["status"],
        "final_eval_loss": None if loss is None or math.isnan(loss) else float(loss),
        "cached": True,
        "trained_steps": 0,
        "resumed_from": None,
        "error": row.get("error"),
    }


# --------------------------------------------------------------------------- workers


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _grid_loop(
    store_target: str,
    configs: Sequence[Mapping[str, Any]],
    sweep: str,
    device: str | None,
    checkpoint_every: int | None,
    wid: int,
    emit: Emit,
) -> None:
    """Claim and train each config in turn (a worker; runs in-process or in a child)."""
    from search.proxy import run_config
    from search.store import RunStore, run_id

    with RunStore(store_target) as store:
        done = _done_runs(store)
        for config in configs:
            rid = run_id(config)
            if rid in done:  # nothing to train: report it without building the model
                emit(("done", wid, _stored_summary(config, done[rid])))
                continue
            label = f"{config['structure']} @{config['width']} s{config['seed']}"
            emit(("start", wid, label, int(config["steps"])))

            def on_point(point: CurvePoint, label: str = label) -> None:
                emit(("point", wid, label, point.step, point.eval_loss))

            result = run_config(
                config,
                store=store,
                sweep=sweep,
                device=device,
                checkpoint_every=checkpoint_every,
                on_point=on_point,
            )
            emit(("done", wid, _summary(result)))


def _grid_worker(
    store_target: str,
    configs: Sequence[Mapping[str, Any]],
    sweep: str,
    device: str | None,
    checkpoint_every: int | None,
    wid: int,
    threads: int | None,
    messages: Any,
) -> None:
    """Entry point of a grid worker process."""
    try:
        _set_threads(threads)
        _grid_loop(store_target, configs, sweep, device, checkpoint_every, wid, messages.put)
    except KeyboardInterrupt:
        messages.put(("interrupted", wid))
    except BaseException as err:
        messages.put(("crashed", wid, "".join(traceback.format_exception(err))))
    finally:
        messages.put(("exit", wid))


def _rotate(items: Sequence[Any], k: int, n: int) -> list[Any]:
    """``items`` started at the k-th of n equal offsets (workers start apart)."""
    if not items:
        return []
    shift = (k * len(items)) // n
    return list(items[shift:]) + list(items[:shift])


@contextlib.contextmanager
def _processes(
    target: Callable[..., None], args: Callable[[int], tuple[Any, ...]], workers: int
) -> Iterator[tuple[list[Any], Any]]:
    """Start ``workers`` processes; on leaving, wait for them to exit.

    When the block is left by an exception (Ctrl-C), workers still running after a grace
    period (a terminal's Ctrl-C reaches them too) are sent SIGINT themselves, and those
    that still do not exit are terminated.

    Where available the processes fork from a forkserver that has imported torch, optuna
    and this package once, so starting workers (and a second phase's workers) is quick;
    elsewhere they are spawned.
    """
    ctx = _context()
    messages = ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(*args(i), messages), daemon=False) for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        yield procs, messages
    except BaseException:
        _reap(procs, messages, 5.0)
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
        raise
    finally:
        _reap(procs, messages, 60.0)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def _reap(procs: Sequence[Any], messages: Any, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the processes to exit, draining their queue so
    that none blocks on flushing it."""
    deadline = time.monotonic() + timeout
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        with contextlib.suppress(queue_mod.Empty, OSError, EOFError, ValueError):
            while True:
                messages.get_nowait()
        time.sleep(0.05)


def _context() -> Any:
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


_PRELOAD: Final = ["torch", "torch._dynamo", "optuna", "search.proxy", "search.driver"]


def _pump(procs: Sequence[Any], messages: Any, handle: Callable[[tuple[Any, ...]], None]) -> None:
    """Forward worker messages to ``handle`` until every worker has exited."""
    exited: set[int] = set()
    while len(exited) < len(procs):
        try:
            message = messages.get(timeout=0.25)
        except queue_mod.Empty:
            for i, proc in enumerate(procs):
                if not proc.is_alive() and i not in exited and proc.exitcode not in (0, None):
                    exited.add(i)
                    handle(("crashed", i, f"worker {i} exited with code {proc.exitcode}"))
            continue
        if message[0] == "exit":
            exited.add(int(message[1]))
        else:
            handle(message)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the block (in this process), then restore them."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- grid


def _run_grid(
    store_target: str,
    configs: Sequence[ProxyConfig],
    *,
    sweep: str,
    workers: int,
    device: str | None,
    checkpoint_every: int | None,
    threads: int | None,
    display: _Display,
) -> None:
    from search.store import RunStore, run_id

    dicts = [c.to_dict() for c in configs]
    with RunStore(store_target) as store:
        done = _done_runs(store)
    display.begin("grid", len(dicts), workers)
    for config in dicts:  # report what the store already has without starting workers
        if run_id(config) in done:
            display.handle(("done", 0, _stored_summary(config, done[run_id(config)])))
    dicts = [c for c in dicts if run_id(c) not in done]
    workers = max(1, min(workers, len(dicts)))
    if not dicts:
        return
    if workers == 1:
        with _torch_threads(threads):
            _grid_loop(store_target, dicts, sweep, device, checkpoint_every, 0, display.handle)
        return

    def args(i: int) -> tuple[Any, ...]:
        return (
            store_target,
            _rotate(dicts, i, workers),
            sweep,
            device,
            checkpoint_every,
            i,
            threads,
        )

    with _processes(_grid_worker, args, workers) as (procs, messages):
        _pump(procs, messages, display.handle)
    _raise_crashes(display)


# --------------------------------------------------------------------------- θ search


@dataclass(frozen=True)
class _ThetaJob:
    """What a θ-search worker needs (picklable)."""

    storage: str
    study: str
    store_target: str
    sweep: str
    settings: RunSettings
    widths: tuple[int, ...]
    theta_width: int
    budget: float
    trials: int
    sampler_seed: int
    prune: bool
    device: str | None
    checkpoint_every: int | None


def _trained_count(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return sum(1 for t in done if "rejection" not in t.user_attrs)


def _per_step_compute(job: _ThetaJob, structure: Structure) -> float:
    from search.proxy import mlp_macs
    from search.tasks import get_task

    task = get_task(job.settings.task, **job.settings.task_kwargs)
    mode = cast(Mode, job.settings.mode)
    r = structure.realize(job.theta_width, job.theta_width, mode=mode, pad_tol=job.settings.pad_tol)
    macs = mlp_macs(task.d_in, task.d_out, job.theta_width, job.settings.depth, r.macs())
    return 6.0 * macs * job.settings.batch_size


def _objective(job: _ThetaJob, store: RunStore, wid: int, emit: Emit) -> Callable[[Any], float]:
    import optuna

    from search.proxy import run_config

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        raw = [trial.suggest_float(name, 0.0, 1.0) for name in PARAM_NAMES]
        point = theta_point(
            raw,
            widths=sorted({*job.widths, job.theta_width}),
            mode=cast(Mode, job.settings.mode),
            pad_tol=job.settings.pad_tol,
        )
        trial.set_user_attr("theta", point.spec)
        if point.structure is None:
            trial.set_user_attr("rejection", point.rejection)
            emit(("rejected", wid, point.spec, point.rejection))
            raise optuna.TrialPruned(point.rejection)
        per_step = _per_step_compute(job, point.structure)
        steps = min(math.ceil(job.budget / per_step), 16 * job.settings.steps)
        every = max(1, math.ceil(steps / EVALS_PER_TRIAL))
        config = job.settings.config(point.spec, job.theta_width, steps=steps, eval_every=every)
        label = f"trial {trial.number} {point.spec}"
        emit(("start", wid, label, steps))

        reported: set[int] = set()

        def on_point(p: CurvePoint) -> bool:
            emit(("point", wid, label, p.step, p.eval_loss))
            tick = round(EVALS_PER_TRIAL * p.compute / job.budget)
            if p.eval_loss is None or tick < 1 or tick in reported:
                return False
            reported.add(tick)
            trial.report(p.eval_loss, step=tick)
            return job.prune and trial.should_prune()

        result = run_config(
            config,
            store=store,
            sweep=f"{job.sweep}/theta",
            device=job.device,
            checkpoint_every=job.checkpoint_every,
            on_point=on_point,
        )
        if result.cached:  # the store had it: replay its curve to the pruner
            short = bool(result.points) and result.points[-1].step < steps  # pruned before
            if any(on_point(p) for p in result.points) or short:
                result = _as_pruned(result)
        trial.set_user_attr("run_id", result.run_id)
        trial.set_user_attr("status", result.status)
        value = interpolate_loss(result.points, job.budget)
        emit(("trial", wid, trial.number, point.spec, result.status, value))
        if result.status == "busy" or value is None:
            trial.set_user_attr("rejection", f"busy: run {result.run_id} is held elsewhere")
            raise optuna.TrialPruned(f"run {result.run_id} is {result.status}")
        if result.status in ("pruned", "diverged", "failed"):
            raise optuna.TrialPruned(f"run {result.status}: {result.error or ''}".strip())
        return value

    return objective


def _as_pruned(result: RunResult) -> RunResult:
    from dataclasses import replace

    return replace(result, status="pruned")


def _study(job: _ThetaJob, wid: int) -> optuna.Study:
    """Load or create the study, with a TPE sampler seeded from ``(sampler_seed, worker,
    trials so far)``: a worker that joins a study later does not repeat the proposals an
    earlier process made from the same seed."""
    import numpy as np
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _open_optuna_storage(job.storage)
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=PRUNE_MIN_RESOURCE, reduction_factor=PRUNE_REDUCTION
    )
    study = optuna.create_study(
        study_name=job.study,
        storage=storage,
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )
    existing = len(study.get_trials(deepcopy=False))
    seed = np.random.SeedSequence([job.sampler_seed, wid, existing]).generate_state(1)[0]
    study.sampler = optuna.samplers.TPESampler(seed=int(seed))
    return study


def _theta_loop(job: _ThetaJob, wid: int, emit: Emit) -> None:
    import optuna

    from search.store import RunStore

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(job, wid)

    def stop_when_enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if _trained_count(study) >= job.trials:
            study.stop()

    if _trained_count(study) >= job.trials:
        return
    with RunStore(job.store_target) as store:
        study.optimize(
            _objective(job, store, wid, emit),
            n_trials=50 * job.trials,
            callbacks=[stop_when_enough],
            catch=(),
        )


def _theta_worker(job: _ThetaJob, wid: int, threads: int | None, messages: Any) -> None:
    """Entry point of a θ-search worker process."""
    try:
        _set_threads(threads)
        _theta_loop(job, wid, messages.put)
    except KeyboardInterrupt:
        messages.put(("interrupted", wid))
    except BaseException as err:
        messages.put(("crashed", wid, "".join(traceback.format_exception(err))))
    finally:
        messages.put(("exit", wid))


def _run_theta(job: _ThetaJob, workers: int, threads: int | None, display: _Display) -> None:
    display.begin("θ trials", job.trials, workers)
    if _trained_count(_study(job, 0)) >= job.trials:  # a finished study: nothing to start
        return
    if workers == 1:
        with _torch_threads(threads):
            _theta_loop(job, 0, display.handle)
        return
    with _processes(_theta_worker, lambda i: (job, i, threads), workers) as (procs, messages):
        _pump(procs, messages, display.handle)
    _raise_crashes(display)


def _raise_crashes(display: _Display) -> None:
    if display.crashes:
        raise EinspaceError(
            f"{len(display.crashes)} worker process(es) crashed ({'; '.join(display.crashes)}). "
            f"A script that runs a search with workers > 1 must start it under "
            f"`if __name__ == '__main__':` (worker processes import the main module)"
        )


def _trials_frame(job: _ThetaJob) -> tuple[pd.DataFrame, optuna.Study]:
    import pandas as pd

    study = _study(job, 0)
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "theta": t.user_attrs.get("theta"),
                "rejection": t.user_attrs.get("rejection"),
                "run_status": t.user_attrs.get("status"),
                "run_id": t.user_attrs.get("run_id"),
            }
        )
    columns = ["number", "state", "value", "theta", "rejection", "run_status", "run_id"]
    return pd.DataFrame(rows, columns=columns), study


def _promoted(trials: pd.DataFrame, promote: int) -> list[str]:
    done = trials[(trials["state"] == "complete") & trials["value"].notna()]
    done = done.sort_values(["value", "number"])
    out: list[str] = []
    for spec in done["theta"]:
        if spec not in out and len(out) < promote:
            out.append(str(spec))
    return out


def _study_name(sweep: str, job_settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(job_settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{sweep}-theta-{digest}"


# --------------------------------------------------------------------------- fitting


def _fit(store: RunStore, run_ids: Sequence[str], labels: Sequence[str]) -> pd.DataFrame:
    from analysis.scaling import fit_table

    points = store.points(run_ids=list(run_ids))
    keep = ~points["status"].isin(["diverged", "failed"]) & points["eval_loss"].notna()
    dense = _dense_label(labels)
    return fit_table(points[keep], group="structure", dense=dense or "dense", loss="eval_loss")


def _dense_label(labels: Sequence[str]) -> str | None:
    if "dense" in labels:
        return "dense"
    for label in labels:
        with contextlib.suppress(EinspaceError):
            if Structure.parse(label).family.name == "dense":
                return label
    return None


def _grid_runs(store: RunStore, run_ids: Sequence[str]) -> pd.DataFrame:
    runs = store.runs()
    runs = runs[runs["run_id"].isin(set(run_ids))]
    columns = ["run_id", "structure", "width", "seed", "status", "final_eval_loss", "last_step"]
    return runs[columns].sort_values(["structure", "width", "seed"], ignore_index=True)


# --------------------------------------------------------------------------- the search


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
    progress: bool = True,
    console: Console | None = None,
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
        trials: θ-space trials that train (0: grid only).
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
        progress: show progress bars and the live table.
        console: where to print (a fresh rich Console by default).

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
        >>> sorted(result.fits["structure"]), result.runs["status"].unique().tolist()
        (['dense', 'monarch'], ['finished'])
    """
    from rich.console import Console

    from search.store import RunStore

    started = time.perf_counter()
    out = console or Console()
    settings = settings or RunSettings()
    settings.check()
    width_list = parse_widths(widths)
    seed_list = parse_seeds(seeds)
    candidates = parse_structures(structures)
    _check_int(workers, "workers", 1)
    _check_int(trials, "trials", 0)
    _check_int(promote, "promote", 0)
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
    with RunStore(target) as run_store:
        job: _ThetaJob | None = None
        if trials > 0:
            job = _theta_job(
                settings, width_list, target, sweep, trials, theta_width, budget,
                storage, study, sampler_seed, prune, device, checkpoint_every,
            )  # fmt: skip
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
                    promoted = _promoted(trials_frame, promote)
                    for spec in promoted:
                        candidates.setdefault(spec, Structure.parse(spec))
                if candidates:
                    _run_grid(
                        target,
                        grid_configs(candidates, width_list, seed_list, settings),
                        sweep=sweep,
                        workers=workers,
                        device=device,
                        checkpoint_every=checkpoint_every,
                        threads=threads,
                        display=display,
                    )
        except KeyboardInterrupt:
            interrupted = True
        if job is not None and trials_frame is None:
            with contextlib.suppress(Exception):
                trials_frame, _ = _trials_frame(job)
        ids = [
            _run_id_of(settings, label, w, s)
            for label in candidates
            for w in width_list
            for s in seed_list
        ]
        runs = _grid_runs(run_store, ids)
        fits = _fit(run_store, ids, list(candidates))
        url = run_store.url
    result = SearchResult(
        url, sweep, runs, fits, trials_frame, study_name, promoted, interrupted,
        time.perf_counter() - started,
    )  # fmt: skip
    _print_result(out, result)
    return result


def _raw_theta(item: Sequence[float] | str) -> tuple[float, ...]:
    """Seven raw numbers from a sequence or a ``"(a|b|c|d|e|f|r)"`` string (validated)."""
    if isinstance(item, str):
        body = item.strip().strip("()[]")
        try:
            values = [float(part) for part in re.split(r"[|,\s]+", body) if part]
        except ValueError:
            raise EinspaceError(
                f"θ point {item!r} is not 7 numbers; expected e.g. '(0.5|0|0.5|0|0.5|0.5|0.25)'"
            ) from None
    else:
        values = list(item)
    snap_theta(values)  # raises for a wrong count or a value outside [0, 1]
    return tuple(float(v) for v in values)


def _enqueue(job: _ThetaJob, points: Sequence[tuple[float, ...]]) -> None:
    """Put ``points`` first in a new study (a study that has trials is left as it is)."""
    if not points:
        return
    study = _study(job, 0)
    if study.trials:
        return
    for raw in points:
        study.enqueue_trial(dict(zip(PARAM_NAMES, raw, strict=True)))


def _requeue_interrupted(job: _ThetaJob) -> int:
    """Enqueue once more the trials an interrupt or a dead worker left failed; return how many.

    Trials of dead workers are first failed through optuna's heartbeat. A retry's own
    failure is not retried again. The retried run resumes from its checkpoint in the store.
    """
    import optuna
    from optuna.trial import TrialState

    study = _study(job, 0)
    with warnings.catch_warnings():  # marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    count = 0
    for t in trials:
        if t.state != TrialState.FAIL or "retry_of" in t.user_attrs or t.number in retried:
            continue
        if set(t.params) != set(PARAM_NAMES):
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        count += 1
    return count


def _run_id_of(settings: RunSettings, label: str, width: int, seed: int) -> str:
    from search.store import run_id

    return run_id(settings.config(label, width, seed).to_dict())


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EinspaceError(f"{name} = {value!r} must be an integer >= {low}")


def _theta_job(
    settings: RunSettings,
    widths: Sequence[int],
    target: str,
    sweep: str,
    trials: int,
    theta_width: int | None,
    budget: float | None,
    storage: str | None,
    study: str | None,
    sampler_seed: int,
    prune: bool,
    device: str | None,
    checkpoint_every: int | None,
) -> _ThetaJob:
    width = theta_width if theta_width is not None else sorted(widths)[len(widths) // 2]
    _check_int(width, "theta_width", 1)
    job = _ThetaJob(
        storage=_optuna_url(storage, target),
        study="",
        store_target=target,
        sweep=sweep,
        settings=settings,
        widths=tuple(widths),
        theta_width=width,
        budget=0.0,
        trials=trials,
        sampler_seed=sampler_seed,
        prune=prune,
        device=device,
        checkpoint_every=checkpoint_every,
    )
    if budget is None:
        budget = _per_step_compute(job, Structure.named("dense")) * settings.steps
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
        raise EinspaceError(f"budget = {budget!r} must be a positive number of FLOPs, e.g. 1e9")
    identity = {
        **asdict(settings),
        "theta_width": width,
        "budget": float(budget),
        "widths": sorted(widths),
    }
    name = study if study is not None else _study_name(sweep, identity)
    if not isinstance(name, str) or not name.strip():
        raise EinspaceError(f"study = {study!r} must be a non-empty name")
    from dataclasses import replace

    return replace(job, study=name, budget=float(budget))


# --------------------------------------------------------------------------- display


class _Display:
    """rich progress bars (overall + one per worker) and a live best-so-far table."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.best: dict[str, tuple[float, str]] = {}
        self.counts: dict[str, int] = {}
        self._live: Any = None
        self._progress: Any = None
        self._overall: Any = None
        self._rows: dict[int, Any] = {}
        self.crashes: list[str] = []
        self.outcomes: dict[str, str] = {}

    def __enter__(self) -> _Display:
        if not self.enabled:
            return self
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)
            self._live = None

    def begin(self, title: str, total: int, workers: int) -> None:
        """Start a phase (θ trials or grid) with ``total`` items."""
        if self._progress is None:
            self.console.print(f"{title}: {total} to do with {workers} worker(s)")
            return
        for task in list(self._progress.tasks):
            self._progress.remove_task(task.id)
        self._overall = self._progress.add_task(title, total=total)
        self._rows = {
            i: self._progress.add_task(f"  worker {i}", total=None) for i in range(workers)
        }
        self._refresh()

    def handle(self, message: tuple[Any, ...]) -> None:
        """React to a worker message (see :func:`_grid_loop` and :func:`_objective`)."""
        kind, wid = message[0], int(message[1])
        if kind == "start" and self._progress is not None:
            _, _, label, steps = message
            row = self._rows.get(wid)
            if row is not None:
                self._progress.reset(row, total=steps, description=f"  w{wid} {label}")
        elif kind == "point" and self._progress is not None:
            row = self._rows.get(wid)
            if row is not None:
                self._progress.update(row, completed=message[3])
        elif kind == "done":
            summary = message[2]
            if summary["status"] == "busy":  # another worker is on it: its message will come
                self._refresh()
                return
            label = summary["status"] + (" (stored)" if summary["cached"] else "")
            previous = self.outcomes.get(summary["run_id"])
            if previous is None:
                self._advance()
            if previous is None or not summary["cached"]:  # trained here beats stored
                self.outcomes[summary["run_id"]] = label
            loss = summary["final_eval_loss"]
            key = str(summary["structure"])
            if loss is not None and summary["status"] == "finished":
                where = f"w{summary['width']} s{summary['seed']}"
                if key not in self.best or loss < self.best[key][0]:
                    self.best[key] = (float(loss), where)
        elif kind == "trial":
            _, _, number, spec, status, value = message
            self._count(f"trial {status}")
            if value is not None and status == "finished":
                key = f"θ {spec}"
                if key not in self.best or value < self.best[key][0]:
                    self.best[key] = (float(value), f"trial {number}")
            if status != "busy":
                self._advance()
        elif kind == "rejected":
            self._count("θ rejected")
        elif kind == "crashed":
            self.crashes.append(f"worker {wid}: {str(message[2]).strip().splitlines()[-1]}")
            self.console.print(f"[red]worker {wid} crashed:[/red]\n{message[2]}")
        elif kind == "interrupted":
            self._count("interrupted")
        self._refresh()

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _advance(self) -> None:
        if self._progress is not None and self._overall is not None:
            self._progress.advance(self._overall)
        elif self._progress is None:
            pass

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        table = Table(title="best so far (eval loss)", show_lines=False)
        table.add_column("structure")
        table.add_column("eval loss", justify="right")
        table.add_column("where")
        for key, (loss, where) in sorted(self.best.items(), key=lambda kv: kv[1][0])[:10]:
            table.add_row(key, f"{loss:.4g}", where)
        tally = dict(self.counts)
        for label in self.outcomes.values():
            tally[label] = tally.get(label, 0) + 1
        counts = ", ".join(f"{v} {k}" for k, v in sorted(tally.items())) or "—"
        return Group(self._progress, table, f"runs: {counts}") if self._progress else table


def _print_result(console: Console, result: SearchResult) -> None:
    from rich.table import Table

    if result.trials is not None and len(result.trials):
        shown = result.trials.sort_values("value", na_position="last").head(10)
        table = Table(title=f"θ trials (study {result.study}; pruned: last reported loss)")
        for col in ("number", "state", "eval loss", "θ"):
            table.add_column(col, no_wrap=col != "θ")
        table.add_column("rejection", overflow="fold")
        for trial in shown.to_dict("records"):
            value = trial["value"]
            shown_value = "—" if value is None or math.isnan(value) else f"{value:.4g}"
            table.add_row(
                str(trial["number"]),
                str(trial["state"]),
                shown_value,
                str(trial["theta"]),
                str(trial["rejection"] or ""),
            )
        console.print(table)
        if result.promoted:
            console.print(f"promoted to the grid: {', '.join(result.promoted)}", highlight=False)
    fits = result.fits
    if fits.empty and result.runs.empty:
        console.print(f"no grid runs (θ search only); store {result.store}", highlight=False)
        return
    table = Table(title=f"scaling laws (sweep {result.sweep!r}, log L = a − m log C)")
    table.add_column("structure", overflow="fold")
    for col in ("m ± se", "a", "points", "C range (FLOPs)", "× vs dense"):
        table.add_column(col, justify="right", no_wrap=True)
    ordered = fits.sort_values("multiplier", ascending=False, na_position="last")
    for row in ordered.to_dict("records"):
        if row["note"] and math.isnan(row["m"]):
            table.add_row(str(row["structure"]), "—", "—", "0", "—", str(row["note"])[:60])
            continue
        se = "" if math.isnan(row["m_se"]) else f" ± {row['m_se']:.3f}"
        mult = "—" if math.isnan(row["multiplier"]) else f"{row['multiplier']:.3g}×"
        table.add_row(
            str(row["structure"]),
            f"{row['m']:.3f}{se}",
            f"{row['a']:.3f}",
            str(row["n_points"]),
            f"{row['compute_min']:.2g}–{row['compute_max']:.2g}",
            mult,
        )
    console.print(table)
    statuses = result.runs["status"].value_counts().to_dict()
    console.print(
        f"runs: {', '.join(f'{v} {k}' for k, v in statuses.items()) or 'none'}; store "
        f"{result.store}; {result.wall_s:.1f} s",
        highlight=False,
    )
    if result.interrupted:
        console.print(
            "[yellow]interrupted[/yellow]: finished runs are kept; run the same command again "
            "to resume the others"
        )
