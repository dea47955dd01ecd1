"""The training loop of a proxy run, read top to bottom, and the hooks that watch it.

:func:`train` is one loop over the optimizer steps of a run (in the shape of nanoGPT's
``train.py``): at every logged step it measures a :class:`~search.run_result.CurvePoint` and
shows it to the hooks; then it draws the step's batch, takes one AdamW step, and tells the
hooks the step is done. Everything else hooks in as a small object with those two methods
(:class:`TrainingHook`): :class:`StoreRecorder` logs points to a run store, saves checkpoints
and heartbeats; :class:`StopWhen` stops the run early (pruning) when a callback says so.

**Reproducibility.** :func:`seeded_model` builds the model on CPU from a seed derived from
the config's ``seed``, and :func:`train_batch` draws the batch of step ``s`` with a generator
seeded from ``(seed, s)``: a batch depends on nothing that ran before, so a run resumed from a
checkpoint (:mod:`search.checkpoint`) continues bit for bit on CPU.

**Divergence.** A non-finite training or evaluation loss raises :class:`Diverged` naming the
step; the points measured before it stay in the :class:`TrainingState`.

**Mixture of experts.** The optimizer minimizes :func:`training_objective`: the task loss plus
the model's ``aux_loss()`` when it has one (the routers' load-balancing and z-loss, weighted
by ``--aux-weight``); the logged ``train_loss`` and ``eval_loss`` stay the task's, and each
point's ``extra`` holds the model's ``point_extra()`` (for a sparse model: ``aux_loss``,
``load_entropy``, ``load_max``, ``collapsed``…, measured on the evaluation set).

Examples:
    >>> from search.proxy_config import ProxyConfig
    >>> cfg = ProxyConfig("dense", 8, steps=4, eval_every=2, task_kwargs={"n_eval": 16})
    >>> task = cfg.make_task()
    >>> model = seeded_model(cfg, task)
    >>> state = TrainingState()
    >>> train(cfg, task, model, build_optimizer(model, cfg), state, per_step=10.0,
    ...       tokens_per_step=8)
    'finished'
    >>> [(p.step, p.compute, p.tokens) for p in state.points.values()]
    [(0, 0.0, 0), (2, 20.0, 16), (4, 40.0, 32)]
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from einspace.nn import param_groups
from einspace.seeds import derive_seed
from search.checkpoint import checkpoint_bytes
from search.models import build_model
from search.run_result import CurvePoint

if TYPE_CHECKING:
    from search.proxy_config import ProxyConfig
    from search.store import RunStore
    from search.tasks import Task

__all__ = [
    "Diverged",
    "StopWhen",
    "StoreRecorder",
    "TrainingHook",
    "TrainingState",
    "build_optimizer",
    "evaluate",
    "seeded_model",
    "set_lr",
    "train",
    "train_batch",
    "training_objective",
]

_STREAM_INIT, _STREAM_BATCH = 1, 2


class Diverged(Exception):
    """A non-finite loss: the run ends ``diverged`` at ``step``."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


@dataclass
class TrainingState:
    """Where a run stands: ``step`` optimizer steps done, the training losses since the
    last logged point (``window``) and the points logged so far, by step."""

    step: int = 0
    window: list[float] = field(default_factory=list)
    points: dict[int, CurvePoint] = field(default_factory=dict)


class TrainingHook(Protocol):
    """What :func:`train` tells an observer of the run."""

    def on_point(self, point: CurvePoint) -> bool:
        """A point was logged; return True to stop the run here (``pruned``)."""
        ...

    def on_step(self, done: int, snapshot: Callable[[], bytes]) -> None:
        """Optimizer step ``done`` finished; ``snapshot()`` gives its checkpoint bytes."""
        ...


def seeded_model(config: ProxyConfig, task: Task) -> nn.Module:
    """The model of ``config``, built on CPU from its seed without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, _STREAM_INIT))
        return build_model(config, task)


def build_optimizer(model: nn.Module, config: ProxyConfig) -> torch.optim.AdamW:
    """AdamW with μP groups for the whole model (:func:`einspace.nn.param_groups`): per-factor
    rates for structured layers, input/hidden/readout rates for plain layers by ``mup_role``.
    Each group keeps its own peak rate as ``base_lr``; :func:`set_lr` scales it."""
    groups = param_groups(model, config.lr, optimizer="adam", base_width=config.base_width)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set every parameter group's rate to its own ``base_lr`` times ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def train_batch(
    task: Task, config: ProxyConfig, step: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The training batch of ``step``: drawn from a generator seeded by ``(seed, step)``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derive_seed(config.seed, _STREAM_BATCH, step))
    return task.train_batch(step, config.batch_size, generator=gen, device=device)


def evaluate(model: nn.Module, task: Task, data: tuple[Tensor, Tensor]) -> float:
    """The loss of ``model`` on ``data`` (in eval mode, without gradients)."""
    model.eval()
    with torch.no_grad():
        loss = float(task.loss(model(data[0]), data[1]))
    model.train()
    return loss


def train(
    config: ProxyConfig,
    task: Task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    device: torch.device | None = None,
    *,
    per_step: float,
    tokens_per_step: int = 0,
    hooks: Sequence[TrainingHook] = (),
) -> str:
    """Train ``model`` from ``state.step`` to ``config.steps``; returns ``"finished"`` or
    ``"pruned"`` (a hook asked to stop before the last step).

    Points are logged at step 0, every ``eval_every`` steps and at the last step (at a
    resumed start the checkpoint's point is logged again, identically); ``compute`` is
    ``per_step × step`` and ``tokens`` ``tokens_per_step × step``. The update of step ``s``
    trains at each group's ``base_lr`` times ``config.lr_factor(s)``. ``state`` is updated
    as the run goes, so it holds the points logged so far when an error escapes.

    Raises:
        Diverged: a non-finite training or evaluation loss.
    """
    dev = device if device is not None else torch.device("cpu")
    eval_data = task.eval_set(dev)
    for step in range(state.step, config.steps + 1):
        state.step = step
        if step % config.eval_every == 0 or step == config.steps:
            point = _measure(config, task, model, eval_data, dev, state)
            point = point._replace(compute=per_step * step, tokens=tokens_per_step * step)
            state.window = []
            state.points[step] = point
            stop = [hook.on_point(point) for hook in hooks]
            if any(stop) and step < config.steps:
                return "pruned"
        if step == config.steps:
            break
        x, y = train_batch(task, config, step, dev)
        loss = task.loss(model(x), y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Diverged(step, f"training loss became {value} at step {step}")
        objective = training_objective(model, loss, step)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        set_lr(optimizer, config.lr_factor(step))
        optimizer.step()
        state.window.append(value)
        snapshot = functools.partial(checkpoint_bytes, step + 1, model, optimizer, state.window)
        for hook in hooks:
            hook.on_step(step + 1, snapshot)
    return "finished"


def training_objective(model: nn.Module, loss: Tensor, step: int = 0) -> Tensor:
    """What the optimizer minimizes: the task ``loss`` plus the model's ``aux_loss()`` when
    it has one (a mixture of experts' load-balancing and z-loss, already weighted:
    :meth:`search.lm.GPT.aux_loss`); the logged losses stay the task's.

    Raises:
        Diverged: a non-finite auxiliary loss.

    Examples:
        >>> from search.models import ProxyMLP
        >>> net = ProxyMLP(8, 1, 64, 1, "btt_moe:e=4,k=1")
        >>> loss = net(torch.randn(16, 8)).square().mean()
        >>> extra = (training_objective(net, loss) - loss).detach()
        >>> bool(torch.isclose(extra, net.aux_loss().detach()))
        True
    """
    aux: object = getattr(model, "aux_loss", None)
    if not callable(aux):
        return loss
    extra = aux()
    if not isinstance(extra, Tensor):
        return loss
    value = float(extra.detach())
    if not math.isfinite(value):
        raise Diverged(step, f"auxiliary loss became {value} at step {step}")
    return loss + extra


@dataclass
class StopWhen:
    """Stop the run at the first logged point for which ``callback(point)`` is true."""

    callback: Callable[[CurvePoint], bool | None]

    def on_point(self, point: CurvePoint) -> bool:
        """Whether the callback asks to stop."""
        return bool(self.callback(point))

    def on_step(self, done: int, snapshot: Callable[[], bytes]) -> None:
        """Nothing to do after a step."""


@dataclass
class StoreRecorder:
    """Log a run's points (and its model's size) into a run store as they come, save a
    checkpoint every ``checkpoint_every`` steps (not at the last) and a pinned one at each of
    ``keep_steps`` (those cooldown branches resume from), and heartbeat the claim in between
    so that the run's lease (``store.lease_s``) never lapses while it trains (every quarter
    lease)."""

    store: RunStore
    run_id: str
    steps: int
    checkpoint_every: int
    params: int | None = None
    macs_per_token: float | None = None
    keep_steps: frozenset[int] = frozenset()
    last_beat: float = field(default_factory=time.monotonic)

    def on_point(self, point: CurvePoint) -> bool:
        """Log ``point``."""
        self.store.log_points(
            self.run_id,
            [point._asdict()],
            params=self.params,
            macs_per_token=self.macs_per_token,
        )
        self.last_beat = time.monotonic()
        return False

    def on_step(self, done: int, snapshot: Callable[[], bytes]) -> None:
        """Checkpoint at multiples of ``checkpoint_every`` and at ``keep_steps`` (pinned),
        else heartbeat when due."""
        pin = done in self.keep_steps
        if pin or (done % self.checkpoint_every == 0 and done < self.steps):
            self.store.save_checkpoint(self.run_id, done, snapshot(), pin=pin)
            self.last_beat = time.monotonic()
        elif time.monotonic() - self.last_beat > self.store.lease_s / 4:
            self.store.heartbeat(self.run_id)
            self.last_beat = time.monotonic()


def _measure(
    config: ProxyConfig,
    task: Task,
    model: nn.Module,
    eval_data: tuple[Tensor, Tensor],
    device: torch.device,
    state: TrainingState,
) -> CurvePoint:
    """The point of ``state.step``: the eval loss now, the mean training loss of the window
    (at step 0: the loss of the first batch at initialization), the learning rate of the
    update before it (at step 0: of the first update) and, when the model has a
    ``point_extra()`` method (e.g. a mixture of experts: its auxiliary loss and expert load),
    the numbers it returns by name (read right after the evaluation, so a mixture of experts
    reports its routers on the evaluation set; an empty dict logs nothing); compute and
    tokens are left 0."""
    step, window = state.step, state.window
    eval_loss = evaluate(model, task, eval_data)
    if not math.isfinite(eval_loss):
        raise Diverged(step, f"eval loss became {eval_loss} at step {step}")
    point_extra: Any = getattr(model, "point_extra", None)
    extra = point_extra() if callable(point_extra) else None
    if step == 0 and not window:
        x, y = train_batch(task, config, 0, device)
        with torch.no_grad():
            train_loss = float(task.loss(model(x), y))
        if not math.isfinite(train_loss):
            raise Diverged(0, f"training loss is {train_loss} at initialization")
    else:
        train_loss = float(sum(window) / len(window)) if window else math.nan
    lr = config.lr * config.lr_factor(max(step - 1, 0))
    train = None if math.isnan(train_loss) else train_loss
    return CurvePoint(step, 0.0, train, eval_loss, 0, lr, dict(extra) if extra else None)
