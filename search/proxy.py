"""Proxy runs: train a small model with einsum-structured layers and log its curve.

The entry points: :func:`proxy_run` (a structure, a task, a width, settings by keyword) and
:func:`run_config` (a :class:`~search.proxy_config.ProxyConfig` or its stored dict). The
pieces live in their own modules: the config and its identity in :mod:`search.proxy_config`,
the curve and result in :mod:`search.run_result`, the loop and its hooks in
:mod:`search.training`, checkpoint bytes in :mod:`search.checkpoint`. This module joins them
with the run store (claim, resume, finish).

The model is :func:`search.models.build_model`'s: for the MLP tasks :class:`ProxyMLP`,
``d_in → width → … → width → d_out``: a dense input layer, ``depth`` hidden ``width × width``
:class:`~einspace.nn.EinsumLinear` layers of the structure under study, and a dense readout,
with ReLU in between; for ``task="lm"`` the decoder-only transformer of :mod:`search.lm`, in
which every attention and MLP projection is structured; or the user's own factory
(``model=``). Training follows structure-aware μP (docs/theory.md §4):
:func:`einspace.nn.param_groups` over the whole model gives structured layers their
per-factor learning rates and plain layers the rate of their ``mup_role`` (the MLP's input
layer ``lr``, its readout ``lr · base_width / width``). The MLP's dense layers have spectral
init ``σ = fan_in^{-1/2} · min(1, √(fan_out / fan_in))`` and zero biases. The optimizer is
AdamW.

**Learning-rate schedule** (:mod:`search.schedules`). The update of step ``s`` trains every
parameter group at its own μP rate times the schedule's factor: a linear warmup, then
``wsd`` (the default: constant, then a ``1 − sqrt`` cooldown to 0 over the last ``cooldown``
of the run), ``cosine`` (down to ``min_lr``) or ``constant``. A wsd run's rate is the same up
to its decay start whatever its length, so a long *trunk* pins checkpoints
(``keep_steps``) from which shorter *cooldown branches* resume (:mod:`search.branches`).

**Compute** (docs/theory.md §6) is training FLOPs: ``6 × MACs-per-token × tokens``. For the MLP a
token is one example, and MACs-per-token is that of the whole model: ``d_in·width`` for the
input layer, each hidden layer's :meth:`EinsumLinear.macs` at the training batch size,
and ``width·d_out`` for the readout (biases and nonlinearities are not counted, nor is
evaluation). After ``s`` optimizer steps of batch ``b``, ``compute = 6·M·b·s``. For the LM an
example is ``n_ctx`` tokens, so ``compute = 6·M·n_ctx·b·s`` with ``M`` of :mod:`search.lm`
(attention included); user models: :func:`search.models.macs_per_token`.

**Logged points** ``(step, compute, train_loss, eval_loss, tokens, lr, extra)`` are taken
at step 0, every ``eval_every`` steps and at the last step. ``eval_loss`` is the loss on the
task's fixed evaluation set with the parameters after ``step`` updates. ``train_loss`` is the
mean loss of the training batches since the previous point, each measured just before its
update; at step 0 it is the loss of the first batch at initialization. ``tokens`` is
``step × batch × tokens per example``. ``lr`` is the global rate of the update before the
point (at step 0: of the first update): the config's ``lr`` times the schedule's factor (the
rate a dense layer at ``base_width`` trains at; μP groups train at their own multiples).
``extra`` holds any other numbers by name (``None`` here).

**Reproducibility.** The model is built on CPU from ``seed`` (then moved to the device),
and the batch of step ``s`` is drawn with a generator seeded from ``(seed, s)``
(:mod:`search.training`), so a batch depends on nothing that ran before. The task itself
(e.g. the teacher network) comes from its own ``task_kwargs``, shared by every seed. On CPU,
the same config gives the same curve bit for bit.

**Divergence.** A non-finite training or evaluation loss at step ``s`` ends the run as
``diverged``: the points before ``s`` are kept as its last good points.

**With a run store** the run is claimed (:meth:`search.store.RunStore.claim`), its points
are logged as they come, a checkpoint (model, optimizer, RNG state and the partial
training-loss window, ``torch.save`` into bytes) is stored every ``checkpoint_every``
steps, and the run is finished, or marked diverged or failed. A claim of a run whose
worker died resumes from its newest checkpoint; on CPU the continuation is bitwise
identical to an uninterrupted run. Checkpoints are loaded with ``weights_only=True``.
A run the store already holds is not trained again: its stored points are returned.
On KeyboardInterrupt the run is left ``running`` with its newest checkpoint, so the next
process that claims it (once this one has exited) resumes it; the interrupt is re-raised.
Any other error during training marks the run failed and is returned, not raised, so a
sweep goes on.

Examples:
    >>> result = proxy_run("btt", "mlp_regression", width=16, steps=4, eval_every=2,
    ...                    task_kwargs={"n_eval": 64})
    >>> result.status, [p.step for p in result.points]
    ('finished', [0, 2, 4])
    >>> result.macs_per_token == 8 * 16 + 2 * 256 + 16 * 1  # BTT at 16: 2 × 4·4·4·2 per layer
    True
    >>> result.points[-1].compute == 6 * result.macs_per_token * 64 * 4
    True
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from einspace.errors import EinspaceError
from einspace.nn.device import resolve_device
from search.branches import BranchStart, find_branch_start
from search.checkpoint import restore_checkpoint
from search.compute import step_flops
from search.models import ProxyMLP, local_model, local_task, macs_per_token, tokens_per_example
from search.models import padding as model_padding
from search.proxy_config import (
    CONFIG_KIND,
    CONFIG_VERSION,
    ProxyConfig,
    make_config,
    positive_int,
)
from search.run_result import CurvePoint, RunResult, stored_points
from search.settings import Candidate, RunSettings, with_settings
from search.store import RunStore, run_id
from search.store.runs import RunTakenOver
from search.tasks import TASKS, Task
from search.training import (
    Diverged,
    StopWhen,
    StoreRecorder,
    TrainingHook,
    TrainingState,
    build_optimizer,
    seeded_model,
    train,
)

__all__ = [
    "CONFIG_KIND",
    "CONFIG_VERSION",
    "CurvePoint",
    "ProxyConfig",
    "ProxyMLP",
    "RunResult",
    "proxy_run",
    "run_config",
    "with_task_and_model",
]


def proxy_run(
    structure: Candidate | str,
    task: Task | str | None = None,
    width: int = 64,
    steps: int | None = None,
    *,
    seed: int = 0,
    settings: RunSettings | None = None,
    store: RunStore | str | os.PathLike[str] | None = None,
    sweep: str | None = None,
    device: torch.device | str | None = None,
    checkpoint_every: int | None = None,
    on_point: Callable[[CurvePoint], bool | None] | None = None,
    model: Callable[[Any, int, Any], nn.Module] | str | None = None,
    **overrides: Any,
) -> RunResult:
    """Train one proxy model and return its curve (see the module docs).

    Args:
        structure: the hidden layers' structure (object or spec string), or a sparse spec
            (``"btt_moe:e=4,k=1"``; ``"moe:e=4,k=1"`` on the LM task; docs/moe.md).
        task: a registered task name, ``"module:attr"`` (a task object, class or function,
            imported by path), or any object with the :class:`~search.tasks.Task` attributes
            (then ``task_kwargs`` must be empty, and its ``name`` and ``repr`` identify its
            runs, plus its ``digest`` when it has one); default: the settings' task.
        width: hidden width; the structure must realize at ``width × width``.
        steps: optimizer steps (default: the settings' steps).
        seed: seed of the init and the batch order.
        settings: the shared run settings (default: :class:`~search.settings.RunSettings`
            ``()``).
        store: a run store to claim, log, checkpoint and finish the run in: a
            :class:`~search.store.RunStore`, or a path or URL of one (opened and closed
            by this call).
        sweep: the sweep name the run is registered under.
        device: where to train (``None``: CPU; ``"cuda"`` works when available).
        checkpoint_every: steps between checkpoints (with a store); default: about four
            per run, on multiples of ``eval_every``.
        on_point: called with each logged point; returning True stops the run
            (status ``pruned``).
        model: your own model factory ``model(structure, width, task) -> nn.Module`` (or
            ``"module:attr"``); default: the task's proxy (:func:`search.models.build_model`).
            Its compute is its ``macs()`` or measured with ``FlopCounterMode``.
        **overrides: any field of :class:`~search.settings.RunSettings` by name (``lr``,
            ``batch_size``, ``depth``, ``eval_every``, ``weight_decay``, ``base_width``,
            ``mode``, ``pad_tol``, ``task_kwargs``, …), replacing the settings' value.

    Raises:
        EinspaceError: bad arguments (unknown task or setting, structure not realizable
            at ``width``, …), before anything is trained or stored.

    Examples:
        >>> r = proxy_run("dense", width=8, steps=2, eval_every=1, task_kwargs={"n_eval": 32})
        >>> [p.step for p in r.points], r.status
        ([0, 1, 2], 'finished')
    """
    base = with_settings(settings, **overrides)
    if steps is not None:
        base = replace(base, steps=steps)
    base = with_task_and_model(base, task, model)
    spec = structure if isinstance(structure, str) else str(structure)
    return run_config(
        make_config(base, spec, width, seed),
        store=store,
        sweep=sweep,
        device=device,
        checkpoint_every=checkpoint_every,
        on_point=on_point,
    )


def with_task_and_model(
    settings: RunSettings,
    task: Task | str | None = None,
    model: Callable[[Any, int, Any], nn.Module] | str | None = None,
) -> RunSettings:
    """``settings`` with a task (name, ``"module:attr"`` or :class:`~search.tasks.Task` object)
    and a model factory (``"module:attr"`` or a callable) put in; objects are kept in this
    process (:func:`search.models.local_task`) and identified by name and repr, or by
    ``module:qualname``.

    Raises:
        EinspaceError: a task that is neither a string nor a Task, or ``task_kwargs`` given
            with a task object.

    Examples:
        >>> from search.tasks import Digits
        >>> s = with_task_and_model(RunSettings(), Digits(seed=3))
        >>> s.task, s.task_repr
        ('digits', 'Digits(eval_fraction=0.2, seed=3)')
    """
    if isinstance(task, str):
        settings = replace(settings, task=task, task_repr=None)
    elif isinstance(task, Task):
        if settings.task_kwargs:
            raise EinspaceError(
                f"task_kwargs {dict(settings.task_kwargs)!r} apply to a task name; got a Task "
                f"object ({task!r}) as well"
            )
        name, text = local_task(task)
        settings = replace(settings, task=name, task_repr=text)
    elif task is not None:
        raise EinspaceError(
            f"task {task!r} must be a registered name ({', '.join(map(repr, TASKS))}), "
            f"'module:attr', or an object with the Task attributes (name, d_in, d_out, loss, "
            f"train_batch, eval_set)"
        )
    if isinstance(model, str):
        settings = replace(settings, model=model)
    elif model is not None:
        settings = replace(settings, model=local_model(model))
    return settings


def run_config(
    config: ProxyConfig | Mapping[str, Any],
    *,
    store: RunStore | str | os.PathLike[str] | None = None,
    sweep: str | None = None,
    device: torch.device | str | None = None,
    checkpoint_every: int | None = None,
    on_point: Callable[[CurvePoint], bool | None] | None = None,
    task: Task | None = None,
    keep_steps: Sequence[int] = (),
) -> RunResult:
    """Run a :class:`ProxyConfig` (or its dict); the arguments are those of :func:`proxy_run`.

    ``task`` overrides building the task from the config. ``keep_steps`` (with a store) are
    steps at which the run pins a checkpoint that is never dropped: those its cooldown
    branches start from. They do not change the run (nor its id).

    A config with a ``parent`` is a cooldown branch (:mod:`search.branches`; it needs the
    store that holds its trunk): it starts from the trunk's pinned checkpoint at its
    ``branch_step``, its curve begins with the trunk's points before that step, and it trains
    only its cooldown. While the trunk has not reached that step it returns status
    ``waiting`` and claims nothing; retry it later.

    Examples:
        >>> cfg = ProxyConfig("monarch", width=16, steps=2, eval_every=2,
        ...                   task_kwargs={"n_eval": 32})
        >>> run_config(cfg.to_dict()).final_eval_loss == run_config(cfg).final_eval_loss
        True
    """
    cfg = config if isinstance(config, ProxyConfig) else ProxyConfig.from_dict(config)
    started = time.perf_counter()
    dev = resolve_device(device)
    the_task = task if task is not None else cfg.make_task()
    digest = getattr(the_task, "digest", None)
    if cfg.task_digest is not None and digest != cfg.task_digest:
        raise EinspaceError(
            f"the data of task {cfg.task!r} changed: its digest is {digest!r}, the run was "
            f"configured for {cfg.task_digest!r} (a text or data file edited since?)"
        )
    every = _checkpoint_every(cfg, checkpoint_every)
    rid = run_id(cfg.to_dict())
    model = seeded_model(cfg, the_task)
    params = sum(p.numel() for p in model.parameters())
    macs = macs_per_token(model, the_task, cfg.batch_size)
    tokens = tokens_per_example(the_task)
    record = cfg.padding()
    if record is None:
        record = model_padding(model)
    base = RunResult(cfg, "finished", (), rid, params, macs, tokens, record)
    keep = frozenset(positive_int(s, "keep_steps", allow_zero=True) for s in keep_steps)
    if store is None:
        if cfg.parent is not None:
            raise EinspaceError(
                f"run {rid} is a cooldown branch of {cfg.parent}: give the store that holds "
                f"its trunk (store=…)"
            )
        return _train(cfg, the_task, model, dev, base, None, every, on_point, started)
    with _opened(store) as run_store:
        branch = None
        if cfg.parent is not None:
            branch = find_branch_start(run_store, cfg, rid)
            if branch is None:
                return replace(base, status="waiting", wall_s=time.perf_counter() - started)
        claim = run_store.claim(cfg.to_dict(), sweep=sweep)
        if claim is None:
            return _stored_result(run_store, base, started)
        # run_store remembers claim.attempt: every write below is fenced by it
        return _train(
            cfg,
            the_task,
            model,
            dev,
            base,
            run_store,
            every,
            on_point,
            started,
            keep_steps=keep,
            branch=branch,
        )


@contextlib.contextmanager
def _opened(store: RunStore | str | os.PathLike[str]) -> Iterator[RunStore]:
    """``store`` itself, or a :class:`~search.store.RunStore` opened from a path or URL for
    the block (then closed)."""
    if isinstance(store, RunStore):
        yield store
        return
    if not isinstance(store, str | os.PathLike):
        raise EinspaceError(
            f"store must be a RunStore, or a path or URL of one (e.g. 'runs.sqlite'); got "
            f"{type(store).__name__} {store!r}"
        )
    with RunStore(store) as opened:
        yield opened


def _checkpoint_every(config: ProxyConfig, value: int | None) -> int:
    if value is not None:
        return positive_int(value, "checkpoint_every")
    intervals = max(1, math.ceil(config.steps / config.eval_every / 4))
    return config.eval_every * intervals


def _stored_result(store: RunStore, base: RunResult, started: float) -> RunResult:
    runs = store.runs()
    row = runs[runs["run_id"] == base.run_id]
    status = str(row["status"].iloc[0]) if len(row) else "busy"
    if status in ("running", "pending"):
        status = "busy"
    points = stored_points(store, base.run_id)
    error = row["error"].iloc[0] if len(row) else None
    return replace(
        base,
        status=status,
        points=points,
        cached=True,
        wall_s=time.perf_counter() - started,
        error=None if error is None or (isinstance(error, float) and math.isnan(error)) else error,
    )


def _train(
    config: ProxyConfig,
    task: Task,
    model: nn.Module,
    device: torch.device,
    base: RunResult,
    store: RunStore | None,
    checkpoint_every: int,
    on_point: Callable[[CurvePoint], bool | None] | None,
    started: float,
    *,
    keep_steps: frozenset[int] = frozenset(),
    branch: BranchStart | None = None,
) -> RunResult:
    """Train the run (resuming from the store's newest checkpoint of it, or a branch from its
    trunk's) and record how it ended in the store: finished, diverged or failed."""
    rid = base.run_id
    model.to(device)
    optimizer = build_optimizer(model, config)
    state, resumed = TrainingState(), None
    hooks: list[TrainingHook] = []
    if store is not None:
        saved = store.load_checkpoint(rid)
        if saved is not None:
            state.step, state.window = restore_checkpoint(saved[1], model, optimizer, device)
            resumed = state.step
            state.points = {p.step: p for p in stored_points(store, rid) if p.step < state.step}
        elif branch is not None:
            diverged = _start_branch(store, rid, branch, state, model, optimizer, device)
            if diverged is not None:
                return _ended_diverged(store, base, state, diverged, started)
            resumed = state.step
        hooks.append(
            StoreRecorder(
                store,
                rid,
                config.steps,
                checkpoint_every,
                params=base.params,
                macs_per_token=base.macs_per_token,
                keep_steps=keep_steps,
            )
        )
    if on_point is not None:
        hooks.append(StopWhen(on_point))
    per_step = step_flops(base.macs_per_token * base.tokens_per_example, config.batch_size)
    start, status, error = state.step, "finished", None
    try:
        status = train(
            config,
            task,
            model,
            optimizer,
            state,
            device,
            per_step=per_step,
            tokens_per_step=base.tokens_per_example * config.batch_size,
            hooks=hooks,
        )
    except Diverged as div:
        status, error = "diverged", div.reason
        state.points = {s: p for s, p in state.points.items() if s < div.step}
        if store is not None:
            status, error = _recorded(
                functools.partial(store.mark_diverged, rid, div.step, div.reason), status, error
            )
    except KeyboardInterrupt:
        raise  # the run stays 'running' with its newest checkpoint; a later claim resumes it
    except RunTakenOver as lost:  # paused past the lease: the run is another worker's now
        status, error = "busy", str(lost)
    except Exception as err:  # never crash a sweep: record the failure and return it
        status, error = "failed", "".join(traceback.format_exception_only(err)).strip()
        if store is not None:
            status, error = _recorded(functools.partial(store.mark_failed, rid, err), status, error)
    else:
        if store is not None:
            status, error = _recorded(functools.partial(store.finish, rid), status, error)
    return replace(
        base,
        status=status,
        points=tuple(state.points[s] for s in sorted(state.points)),
        resumed_from=resumed,
        trained_steps=max(0, state.step - start),
        wall_s=time.perf_counter() - started,
        error=error,
    )


def _recorded(
    write: Callable[[], object], status: str, error: str | None
) -> tuple[str, str | None]:
    """``(status, error)`` after ``write()`` records the run's end in the store; a run taken
    over meanwhile is left to its new owner (``busy``)."""
    try:
        write()
    except RunTakenOver as lost:
        return "busy", str(lost)
    return status, error


def _start_branch(
    store: RunStore,
    rid: str,
    branch: BranchStart,
    state: TrainingState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[int, str] | None:
    """Put a branch at its start: the trunk's points before the branch step logged as its
    own, and the trunk's checkpoint loaded; returns the trunk's divergence instead when it
    diverged before the branch step (then nothing is loaded)."""
    state.points = {p.step: p for p in branch.points}
    if branch.points:
        store.log_points(rid, [p._asdict() for p in branch.points])
    if branch.diverged is not None:
        return branch.diverged
    if branch.blob is None:
        raise EinspaceError(
            f"the cooldown branch {rid} has neither a checkpoint of its own nor its trunk's; "
            f"it cannot resume"
        )
    state.step, state.window = restore_checkpoint(branch.blob, model, optimizer, device)
    return None


def _ended_diverged(
    store: RunStore, base: RunResult, state: TrainingState, at: tuple[int, str], started: float
) -> RunResult:
    """A branch whose trunk diverged before the branch step: it diverged there too."""
    step, reason = at
    status, error = _recorded(
        functools.partial(store.mark_diverged, base.run_id, step, reason), "diverged", reason
    )
    return replace(
        base,
        status=status,
        points=tuple(state.points[s] for s in sorted(state.points) if s < step),
        wall_s=time.perf_counter() - started,
        error=error,
    )
