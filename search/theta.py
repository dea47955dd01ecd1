"""The θ-space study of a search: optuna TPE trials of snapped θ points, pruned by
successive halving, stored in optuna RDB storage shared by every worker.

Examples:
    >>> from search.run_result import CurvePoint
    >>> interpolate_loss([CurvePoint(0, 0.0, 1.0, 1.0), CurvePoint(10, 100.0, 0.5, 0.5)], 100.0)
    0.5
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import re
import socket
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from einspace.errors import EinspaceError
from einspace.seeds import derive_seed
from einspace.structure import Structure
from search.budget import parse_compute_flops
from search.options import MAX_COMPUTE_RATIO, SearchOptions, check_int
from search.proxy_config import compute_per_step, make_config
from search.settings import RunSettings
from search.space import PARAM_NAMES, snap_theta, theta_point
from search.workers import Emit, processes, pump, raise_crashes, set_threads, torch_threads

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from sqlalchemy.engine import URL

    from search.progress import Display
    from search.run_result import CurvePoint, RunResult
    from search.store import RunStore

__all__ = [
    "EVALS_PER_TRIAL",
    "MAX_COMPUTE_RATIO",
    "PROPOSALS_PER_TRIAL",
    "PRUNE_MIN_RESOURCE",
    "PRUNE_REDUCTION",
    "UNREALIZABLE_VIOLATION",
    "ThetaJob",
    "check_compute_ratio",
    "compute_ratio",
    "costlier_than_dense",
    "enqueue_points",
    "interpolate_loss",
    "open_optuna_storage",
    "promoted",
    "raw_theta",
    "requeue_interrupted",
    "run_theta",
    "shortfall",
    "theta_job",
    "trials_frame",
]


EVALS_PER_TRIAL: Final = 16
"""A θ trial reports its eval loss at this many evenly spaced fractions of the budget."""


PROPOSALS_PER_TRIAL: Final = 50
"""A θ worker stops after this many proposals per trial asked for, trained or not: a space
whose points are nearly all rejected ends with a shortfall message instead of looping."""


PRUNE_MIN_RESOURCE: Final = 4
"""First successive-halving rung: a quarter of the budget (in units of 1/16 budget)."""


PRUNE_REDUCTION: Final = 2
"""Successive-halving reduction factor: rungs at 1/4 and 1/2 of the budget, half kept."""


UNREALIZABLE_VIOLATION: Final = 10.0
"""The constraint violation TPE is told for a θ point that does not realize at some width
(or is redundant). A point costlier than dense is told ``log(ratio / bound)`` (ρ = d at
width 256 under the default bound: log 128 ≈ 4.9), so the sampler ranks rejected points
by how far they miss and moves its proposals toward trainable ones. Without these
constraints a rejected trial is a pruned trial without a value, which TPE may count among
its good trials: at widths 8 and 16, where four of five θ points cost more than dense, it
then proposed 48 rejected points in a row."""


_DENSE: Final = Structure.named("dense")


def compute_ratio(
    settings: RunSettings, structure: Structure, widths: Sequence[int]
) -> tuple[float, int]:
    """The largest ratio of ``structure``'s model compute per step to dense's over
    ``widths``, and the width where it is reached.

    Examples:
        >>> rho_d = Structure.from_theta((0.15, 0.2, 0.65, 0.3, 0.35, 0.35, 1.0))
        >>> ratio, width = compute_ratio(RunSettings(), rho_d, [64, 128])
        >>> round(ratio, 1), width
        (92.8, 128)
    """
    ratios = [
        (compute_per_step(settings, structure, w) / compute_per_step(settings, _DENSE, w), w)
        for w in widths
    ]
    return max(ratios)


def check_compute_ratio(value: object) -> None:
    """Refuse a ``max_compute_ratio`` that is not a positive finite number.

    Examples:
        >>> check_compute_ratio(2.0)
        >>> check_compute_ratio(0)
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: max_compute_ratio = 0 must be a positive finite ...
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise EinspaceError(
            f"max_compute_ratio = {value!r} must be a positive finite number (times the "
            f"dense model's compute per step); the default is {MAX_COMPUTE_RATIO:g}, e.g. 2 "
            f"admits θ points up to twice dense's cost"
        )


def costlier_than_dense(
    settings: RunSettings,
    structure: Structure,
    widths: Sequence[int],
    limit: float = MAX_COMPUTE_RATIO,
) -> str | None:
    """Why ``structure``'s model costs more than ``limit`` × dense's per step at one of
    ``widths``, or None.

    Examples:
        >>> rho_d = Structure.from_theta((0.15, 0.2, 0.65, 0.3, 0.35, 0.35, 1.0))
        >>> print(costlier_than_dense(RunSettings(), rho_d, [64]))
        costlier than dense: 44.9× the dense model's compute per step at width 64
        >>> costlier_than_dense(RunSettings(), Structure.named("btt"), [64]) is None
        True
        >>> print(costlier_than_dense(RunSettings(), rho_d, [64], limit=10))
        costlier than dense: 44.9× the dense model's compute per step at width 64 (limit 10×)
        >>> costlier_than_dense(RunSettings(), rho_d, [64], limit=50) is None
        True
    """
    return _costlier_reason(*compute_ratio(settings, structure, widths), limit)


def _costlier_reason(ratio: float, width: int, limit: float) -> str | None:
    """The rejection for a model ``ratio`` × dense's per step at ``width``, or None."""
    if ratio <= limit:
        return None
    bound = "" if limit == MAX_COMPUTE_RATIO else f" (limit {limit:g}×)"
    return (
        f"costlier than dense: {ratio:.1f}× the dense model's compute per step at width "
        f"{width}{bound}"
    )


def _optuna_url(storage: str | None, store_target: str) -> str:
    if storage is None:
        if "://" in store_target:
            return store_target
        return f"sqlite:///{store_target}"
    return storage


def open_optuna_storage(url: str) -> optuna.storages.RDBStorage:
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
    shown = parsed.render_as_string(hide_password=True)
    for attempt in range(_STORAGE_TRIES):
        try:
            with _storage_lock(parsed), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=60, grace_period=180
                )
        except ImportError as err:
            raise EinspaceError(
                f"the database driver for storage {shown!r} is not installed ({err}); e.g. "
                f"pip install 'psycopg[binary]'"
            ) from None
        except Exception as err:  # optuna wraps SQLAlchemy errors in several ways
            if attempt + 1 < _STORAGE_TRIES and _transient_chain(err):
                time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
                continue
            raise EinspaceError(
                f"cannot open optuna storage {shown!r}: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}; check that the database is "
                f"reachable and writable, and that the URL is right (e.g. {example})"
            ) from None
    raise AssertionError("unreachable")


_STORAGE_TRIES: Final = 8
_STORAGE_LOCK: Final = 0x6F707475  # PostgreSQL advisory lock key of storage creation ("optu")


@contextlib.contextmanager
def _storage_lock(url: URL) -> Iterator[None]:
    """On PostgreSQL, hold a session advisory lock while optuna creates its tables, so
    that processes starting on a fresh database create them one at a time (on SQLite,
    optuna's create is retried instead)."""
    if url.get_backend_name() != "postgresql":
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _STORAGE_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _STORAGE_LOCK})
                conn.commit()
    finally:
        engine.dispose()


def _transient_chain(err: BaseException) -> bool:
    """Whether ``err`` or an exception it wraps is a lost race worth retrying."""
    from search.store.engine import transient_error

    seen: BaseException | None = err
    while seen is not None:
        if transient_error(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def interpolate_loss(
    points: Sequence[CurvePoint], compute: float, key: str = "eval_loss"
) -> float | None:
    """The loss at ``compute`` by linear interpolation in (log C, log L) between logged
    points; the last point's loss when the curve stops short; None without points.

    Examples:
        >>> from search.run_result import CurvePoint
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


@dataclass(frozen=True)
class ThetaJob:
    """What a θ-search worker needs (picklable): the study, the store, the run settings,
    the search's options (trials, sampler seed, pruning, device, …), and what
    :func:`theta_job` derived from them.

    Attributes:
        storage: the optuna RDB storage URL.
        study: the study name.
        store_target: the run store.
        sweep: the grid's sweep (θ runs are under ``<sweep>/theta``).
        settings: the run settings of every trial.
        widths: the grid's widths (a point must realize, and pay, at each).
        theta_width: the trials' width.
        budget: a trial's compute budget in FLOPs.
        steps: dense's steps at the θ width for the budget; a trial trains at most 16× it.
        options: the search's options.
    """

    storage: str
    study: str
    store_target: str
    sweep: str
    settings: RunSettings
    widths: tuple[int, ...]
    theta_width: int
    budget: float
    steps: int
    options: SearchOptions


def _trained_count(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return sum(1 for t in done if "rejection" not in t.user_attrs)


def _objective(job: ThetaJob, store: RunStore, wid: int, emit: Emit) -> Callable[[Any], float]:
    import optuna

    from search.proxy import run_config

    widths = sorted({*job.widths, job.theta_width})  # a point must realize, and pay, at each

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        raw = [trial.suggest_float(name, 0.0, 1.0) for name in PARAM_NAMES]
        point = theta_point(
            raw,
            widths=widths,
            mode=job.settings.mode,
            pad_tol=job.settings.pad_tol,
        )
        trial.set_user_attr("theta", point.spec)
        rejection = point.rejection
        if point.structure is None:
            trial.set_constraint("realizable", UNREALIZABLE_VIOLATION)
        else:
            ratio, at = compute_ratio(job.settings, point.structure, widths)
            rejection = _costlier_reason(ratio, at, job.options.max_compute_ratio)
            if rejection is not None:
                trial.set_constraint("compute", math.log(ratio / job.options.max_compute_ratio))
        if point.structure is None or rejection is not None:
            trial.set_user_attr("rejection", rejection)
            emit(("rejected", wid, point.spec, rejection))
            raise optuna.TrialPruned(rejection)
        per_step = compute_per_step(job.settings, point.structure, job.theta_width)
        steps = min(math.ceil(job.budget / per_step), 16 * job.steps)
        every = max(1, math.ceil(steps / EVALS_PER_TRIAL))
        config = make_config(
            job.settings, point.spec, job.theta_width, steps=steps, eval_every=every
        )
        if not _reserve(trial, job.options.trials):
            trial.set_user_attr(
                "rejection", f"the study has its {job.options.trials} trained trials"
            )
            trial.study.stop()
            raise optuna.TrialPruned(f"the study has its {job.options.trials} trained trials")
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
            return job.options.prune and trial.should_prune()

        result = run_config(
            config,
            store=store,
            sweep=f"{job.sweep}/theta",
            device=job.options.device,
            checkpoint_every=job.options.checkpoint_every,
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


def _reserve(trial: optuna.Trial, total: int) -> bool:
    """Take one of the study's ``total`` training slots for ``trial``; False when the study
    already has ``total`` trained trials.

    A trial marks itself ``training`` and then counts the trained trials and the other
    running trials so marked (mark first, count second: of two trials that race for the
    last slot, at least one sees the other). It trains if the count is under ``total``;
    otherwise it unmarks itself and waits for a slot to come free (a training trial that
    fails, or is found stale through optuna's heartbeat) or for the study to fill up. So
    ``total`` is the number of trained trials of the study as a whole, however many
    processes share it.
    """
    import optuna
    from optuna.trial import TrialState

    study = trial.study
    while True:
        trial.set_user_attr("training", True)
        trials = study.get_trials(deepcopy=False)
        trained = sum(
            1
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and "rejection" not in t.user_attrs
        )
        others = sum(
            1
            for t in trials
            if t.number != trial.number
            and t.state == TrialState.RUNNING
            and t.user_attrs.get("training")
        )
        if trained + others < total:
            return True
        trial.set_user_attr("training", False)
        if trained >= total:
            return False
        with warnings.catch_warnings():  # marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        time.sleep(random.uniform(0.2, 1.0))


def _as_pruned(result: RunResult) -> RunResult:
    from dataclasses import replace

    return replace(result, status="pruned")


def _study(job: ThetaJob, wid: int) -> optuna.Study:
    """Load or create the study, with a TPE sampler seeded from ``(sampler_seed, worker,
    trials so far)``: a worker that joins a study later does not repeat the proposals an
    earlier process made from the same seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_optuna_storage(job.storage)
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
    seed = derive_seed(job.options.sampler_seed, wid, existing, bits=32)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


def _theta_loop(job: ThetaJob, wid: int, emit: Emit) -> None:
    import optuna

    from search.store import RunStore

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(job, wid)

    def stop_when_enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if _trained_count(study) >= job.options.trials:
            study.stop()

    if _trained_count(study) >= job.options.trials:
        return
    with RunStore(job.store_target, lease_s=job.options.lease_s) as store:
        study.optimize(
            _objective(job, store, wid, emit),
            n_trials=PROPOSALS_PER_TRIAL * job.options.trials,
            callbacks=[stop_when_enough],
            catch=(),
        )


def _theta_worker(job: ThetaJob, wid: int, threads: int | None, messages: Any) -> None:
    """Entry point of a θ-search worker process."""
    try:
        set_threads(threads)
        _theta_loop(job, wid, messages.put)
    except KeyboardInterrupt:
        messages.put(("interrupted", wid))
    except BaseException as err:
        messages.put(("crashed", wid, "".join(traceback.format_exception(err))))
    finally:
        messages.put(("exit", wid))


def run_theta(job: ThetaJob, workers: int, threads: int | None, display: Display) -> None:
    """Run the study's trials with ``workers`` processes until it has ``trials`` trained."""
    display.begin("θ trials", job.options.trials, workers)
    if _trained_count(_study(job, 0)) >= job.options.trials:  # a finished study: nothing to start
        return
    if workers == 1:
        with torch_threads(threads):
            _theta_loop(job, 0, display.handle)
        return
    with processes(_theta_worker, lambda i: (job, i, threads), workers, job.options.device) as (
        procs,
        messages,
    ):
        pump(procs, messages, display.handle)
    raise_crashes(display)


def trials_frame(job: ThetaJob) -> tuple[pd.DataFrame, optuna.Study]:
    """The study's trials (number, state, value, theta, rejection, run_status, run_id)."""
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


def shortfall(trials: pd.DataFrame, wanted: int) -> str | None:
    """A sentence for a study that ran out of proposals before ``wanted`` trained trials, or
    None."""
    trained = trials[trials["rejection"].isna() & trials["state"].isin(["complete", "pruned"])]
    if len(trained) >= wanted:
        return None
    reasons = trials["rejection"].dropna()
    reasons = reasons[~reasons.str.startswith(("the study has", "busy:"))]
    kinds = reasons.str.split(":").str[0].value_counts()
    why = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    return (
        f"θ search: only {len(trained)} of {wanted} trials trained; {len(reasons)} of "
        f"{len(trials)} proposals were rejected ({why or 'none'}). Few θ points at these "
        "widths are trainable: add wider widths, enqueue points (--enqueue), or admit "
        "costlier ones (--max-compute-ratio)."
    )


def promoted(trials: pd.DataFrame, promote: int) -> list[str]:
    """The θ specs of the ``promote`` best distinct complete trials."""
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


def raw_theta(item: Sequence[float] | str) -> tuple[float, ...]:
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


def enqueue_points(job: ThetaJob, points: Sequence[tuple[float, ...]]) -> None:
    """Put ``points`` first in a new study (a study that has trials is left as it is)."""
    if not points:
        return
    study = _study(job, 0)
    if study.trials:
        return
    for raw in points:
        study.enqueue_trial(dict(zip(PARAM_NAMES, raw, strict=True)))


def requeue_interrupted(job: ThetaJob) -> int:
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


def theta_job(
    settings: RunSettings,
    options: SearchOptions,
    widths: Sequence[int],
    target: str,
    dense_steps: Callable[[int], int] | None = None,
) -> ThetaJob:
    """The job of a search's θ study: its storage, name, width and budget from ``options``.

    Args:
        settings: the run settings of the trials.
        options: the search's options (``theta_width``, ``trial_budget``, ``storage``, ``study``,
            ``trials``, …).
        widths: the grid's widths.
        target: the run store.
        dense_steps: dense's training steps at a width (default: ``settings.steps``); the
            default budget is dense's compute over them at the θ width.

    Raises:
        EinspaceError: a bad θ width, budget or study name.
    """
    width = options.theta_width
    width = width if width is not None else sorted(widths)[len(widths) // 2]
    width = check_int(width, "theta_width", 1)
    steps = dense_steps(width) if dense_steps is not None else int(settings.steps)
    if options.trial_budget is None:
        budget = compute_per_step(settings, _DENSE, width) * steps
    else:
        budget = parse_compute_flops(options.trial_budget)
    identity = {
        **asdict(settings),
        "theta_width": width,
        "budget": float(budget),
        "widths": sorted(widths),
    }
    name = options.study if options.study is not None else _study_name(options.sweep, identity)
    if not isinstance(name, str) or not name.strip():
        raise EinspaceError(f"study (--study) = {options.study!r} must be a non-empty name")
    return ThetaJob(
        storage=_optuna_url(options.storage, target),
        study=name,
        store_target=target,
        sweep=options.sweep,
        settings=settings,
        widths=tuple(widths),
        theta_width=width,
        budget=float(budget),
        steps=steps,
        options=options,
    )
