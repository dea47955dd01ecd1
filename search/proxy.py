"""Proxy runs: train a small model with einsum-structured layers and log its curve.

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

**Compute** (docs/theory.md §6) is training FLOPs: ``6 × MACs-per-token × tokens``. For the MLP a
token is one example, and MACs-per-token is that of the whole model: ``d_in·width`` for the
input layer, each hidden layer's :meth:`EinsumLinear.macs` at the training batch size,
and ``width·d_out`` for the readout (biases and nonlinearities are not counted, nor is
evaluation). After ``s`` optimizer steps of batch ``b``, ``compute = 6·M·b·s``. For the LM an
example is ``n_ctx`` tokens, so ``compute = 6·M·n_ctx·b·s`` with ``M`` of :mod:`search.lm`
(attention included); user models: :func:`search.models.macs_per_token`.

**Logged points** ``(step, compute, train_loss, eval_loss)`` are taken at step 0, every
``eval_every`` steps and at the last step. ``eval_loss`` is the loss on the task's fixed
evaluation set with the parameters after ``step`` updates. ``train_loss`` is the mean
loss of the training batches since the previous point, each measured just before its
update; at step 0 it is the loss of the first batch at initialization.

**Reproducibility.** The model is built on CPU from ``seed`` (then moved to the device),
and the batch of step ``s`` is drawn with a generator seeded from ``(seed, s)``, so a
batch depends on nothing that ran before. The task itself (e.g. the teacher network)
comes from its own ``task_kwargs``, shared by every seed. On CPU, the same config gives
the same curve bit for bit.

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
import io
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from einspace.errors import EinspaceError, suggest
from einspace.proxy_realization import padding_record
from einspace.realization import Realization
from einspace.structure import Structure
from search.compute import step_flops
from search.models import (
    ProxyMLP,
    build_model,
    is_spec,
    local_model,
    local_task,
    macs_per_token,
    realize_layer,
    tokens_per_example,
)
from search.settings import RunSettings, with_settings
from search.store.runs import RunTakenOver
from search.tasks import TASKS, Task, model_kind

if TYPE_CHECKING:
    import pandas as pd

    from search.store import RunStore

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

CONFIG_KIND: Final = "proxy"
CONFIG_VERSION: Final = 2
"""Bumped when the model or the training loop changes, so old runs are not reused."""

_RESULT_STATUSES: Final = ("finished", "diverged", "failed", "pruned", "busy")
_STREAM_INIT, _STREAM_BATCH = 1, 2


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ProxyConfig(RunSettings):
    """Everything that determines a proxy run; its :meth:`to_dict` is the run's identity.

    A :class:`~search.settings.RunSettings` (task, steps, lr, …: the settings a search's
    runs share, with their defaults) plus what differs per run. ``structure`` is
    normalized to the canonical spec ``str(Structure.parse(spec))`` (``"btt"`` becomes
    ``"btt(r=0.25)"``), which parses back to the same structure.

    Attributes:
        structure: the hidden layers' structure spec.
        width: hidden width (the structured layers are ``width × width``).
        seed: seed of the model init and of the batch order.
        task_digest: the task's ``digest`` (of its data, e.g. the LM corpus), when it has one.

    A config's ``to_dict`` also records ``padding``: the mode, class sizes and padding of every
    structured layer of the built-in proxies (derived from the other fields).

    Examples:
        >>> cfg = ProxyConfig("btt", width=64, steps=100)
        >>> cfg.structure, ProxyConfig.from_dict(cfg.to_dict()) == cfg
        ('btt(r=0.25)', True)
    """

    structure: str
    width: int
    seed: int = field(default=0, kw_only=True)
    task_digest: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        spec = self.structure
        structure = spec if isinstance(spec, Structure) else _parse_structure(spec)
        object.__setattr__(self, "structure", str(structure))
        for name in (
            "width", "steps", "batch_size", "depth", "eval_every", "base_width", "n_layer",
            "d_head",
        ):  # fmt: skip
            _positive_int(getattr(self, name), name, allow_zero=name == "depth")
        _positive_int(self.seed, "seed", allow_zero=True)
        for name in ("lr", "weight_decay", "pad_tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise EinspaceError(f"{name} = {value!r} must be a number")
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise EinspaceError(f"{name} = {value!r} must be finite and positive")
            object.__setattr__(self, name, float(value))
        if self.mode not in ("auto", "round", "exact"):
            raise EinspaceError(
                f"mode = {self.mode!r}; {suggest(str(self.mode), ['auto', 'round', 'exact'])}"
            )
        if not isinstance(self.tied, bool):
            raise EinspaceError(f"tied = {self.tied!r} must be True or False")
        if not isinstance(self.model, str):
            raise EinspaceError(f"model = {self.model!r} must be a 'module:attr' string")
        if not isinstance(self.task, str) or not (
            self.task in TASKS or is_spec(self.task) or self.task_repr is not None
        ):
            raise EinspaceError(
                f"unknown task {self.task!r}; {suggest(str(self.task), TASKS)} (or "
                f"'module:attr' for your own task)"
            )
        if not isinstance(self.task_kwargs, Mapping):
            raise EinspaceError(f"task_kwargs must be a mapping; got {self.task_kwargs!r}")
        object.__setattr__(self, "task_kwargs", dict(self.task_kwargs))

    def structure_object(self) -> Structure:
        """The parsed structure."""
        return Structure.parse(self.structure)

    def to_dict(self) -> dict[str, Any]:
        """The run config as stored (JSON-ready; ``kind`` and ``version`` included).

        Examples:
            >>> ProxyConfig("dense", width=8, steps=1).to_dict()["structure"]
            'dense'
        """
        out = {"kind": CONFIG_KIND, "version": CONFIG_VERSION, **asdict(self)}
        for key in ("task_repr", "task_digest"):
            if out[key] is None:
                del out[key]
        if not out["model"]:
            del out["model"]
        record = self.padding()
        if record is not None:
            out["padding"] = record
        return out

    def padding(self) -> dict[str, dict[str, object]] | None:
        """Mode, class sizes and padding of every structured layer of the built-in proxy
        (``None`` with a user model: its run result has them).

        Examples:
            >>> ProxyConfig("monarch", 128, depth=1).padding()["hidden.0"]["input"]
            0
        """
        if self.model:
            return None
        return _padding_of(self)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ProxyConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. a stored run's config).

        Raises:
            EinspaceError: not a proxy config, of another version, or with unknown keys.
        """
        if config.get("kind") != CONFIG_KIND:
            raise EinspaceError(
                f"config {dict(config)!r} is not a proxy-run config (kind {config.get('kind')!r}"
                f", expected {CONFIG_KIND!r})"
            )
        if config.get("version") != CONFIG_VERSION:
            raise EinspaceError(
                f"proxy config version {config.get('version')!r}; this einspace runs version "
                f"{CONFIG_VERSION}"
            )
        names = {f.name for f in fields(cls)}
        body = {k: v for k, v in config.items() if k not in ("kind", "version", "padding")}
        unknown = [k for k in body if k not in names]
        if unknown:
            raise EinspaceError(
                f"unknown proxy config key {unknown[0]!r}; {suggest(unknown[0], names)}"
            )
        return cls(**body)


def _parse_structure(spec: object) -> Structure:
    if not isinstance(spec, str):
        raise EinspaceError(
            f"structure {spec!r} must be a Structure or a spec string such as 'btt', "
            f"'btt:r=0.5' or '(0.5|0|0.5|0|0.5|0.5|0.25)'"
        )
    return Structure.parse(spec)


def _positive_int(value: object, name: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        nearest = f"; the nearest valid value is {low}" if isinstance(value, int) else ""
        raise EinspaceError(f"{name} = {value!r} must be an integer >= {low}{nearest}")
    return int(value)


# --------------------------------------------------------------------------- model


def _optimizer(model: nn.Module, config: ProxyConfig) -> torch.optim.AdamW:
    """AdamW with μP groups for the whole model (:func:`einspace.nn.param_groups`): per-factor
    rates for structured layers, input/hidden/readout rates for plain layers by ``mup_role``."""
    from einspace.nn import param_groups

    groups = param_groups(model, config.lr, optimizer="adam", base_width=config.base_width)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _padding_of(config: ProxyConfig) -> dict[str, dict[str, object]]:
    """The padding record of the built-in proxy of ``config``, from its realizations alone."""
    w, real = config.width, config.mode
    layers: dict[str, Realization] = {}
    if model_kind(config.make_task()) == "lm":
        sizes = {"attn.q": (w, w), "attn.k": (w, w), "attn.v": (w, w), "attn.o": (w, w)}
        sizes |= {"mlp.fc": (w, 4 * w), "mlp.proj": (4 * w, w)}
        for i in range(config.n_layer):
            for name, (d_in, d_out) in sizes.items():
                layers[f"h.{i}.{name}"] = realize_layer(
                    config.structure, d_in, d_out, real, config.pad_tol
                )
    else:
        for i in range(config.depth):
            layers[f"hidden.{i}"] = realize_layer(config.structure, w, w, real, config.pad_tol)
    return padding_record(layers)


def _seed_from(*words: int) -> int:
    state = np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)
    return int(state[0] & 0x7FFF_FFFF_FFFF_FFFF)


def _build_model(config: ProxyConfig, task: Task) -> nn.Module:
    """The model of ``config``, built on CPU from its seed without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_from(config.seed, _STREAM_INIT))
        return build_model(config, task)


# --------------------------------------------------------------------------- results


class CurvePoint(NamedTuple):
    """One logged point of a run (see the module docs for what each field means)."""

    step: int
    compute: float
    train_loss: float | None
    eval_loss: float | None


@dataclass(frozen=True)
class RunResult:
    """What a proxy run produced.

    Attributes:
        config: the run's config.
        status: ``finished``, ``diverged``, ``failed``, ``pruned`` (stopped by the
            ``on_point`` callback; stored as finished with a shorter curve) or ``busy``
            (another live worker holds the run, or took it over from this one after
            this one missed its lease: then ``error`` says so, and this call wrote no
            more of it).
        points: the logged curve, by step (for a diverged run: its good points).
        run_id: the run's id in the store (also computed without a store).
        params: parameters of the whole model.
        macs_per_token: forward MACs per token of the whole model (one example is
            ``tokens_per_example`` tokens: 1 for the MLP tasks, ``n_ctx`` for ``lm``).
        tokens_per_example: tokens per example of the task.
        padding: mode, class sizes and padding of every structured layer.
        resumed_from: the checkpoint step this call resumed from, if any.
        trained_steps: optimizer steps this call took (0 when the store had the run).
        cached: whether the run came from the store instead of being trained here.
        wall_s: seconds this call spent.
        error: the divergence or failure message.
    """

    config: ProxyConfig
    status: str
    points: tuple[CurvePoint, ...]
    run_id: str
    params: int
    macs_per_token: int
    tokens_per_example: int = 1
    padding: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    resumed_from: int | None = None
    trained_steps: int = 0
    cached: bool = False
    wall_s: float = 0.0
    error: str | None = None

    @property
    def final_eval_loss(self) -> float | None:
        """The eval loss of the last point that has one."""
        return next((p.eval_loss for p in reversed(self.points) if p.eval_loss is not None), None)

    @property
    def compute(self) -> float:
        """The compute of the last logged point."""
        return self.points[-1].compute if self.points else 0.0

    def frame(self) -> pd.DataFrame:
        """The curve as a DataFrame with columns step, compute, train_loss, eval_loss."""
        import pandas as pd

        return pd.DataFrame(self.points, columns=list(CurvePoint._fields))


# --------------------------------------------------------------------------- running


def proxy_run(
    structure: Structure | str,
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
        structure: the hidden layers' structure (object or spec string).
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
        base.config(spec, width, seed),
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
) -> RunResult:
    """Run a :class:`ProxyConfig` (or its dict); the arguments are those of :func:`proxy_run`.

    ``task`` overrides building the task from the config.

    Examples:
        >>> cfg = ProxyConfig("monarch", width=16, steps=2, eval_every=2,
        ...                   task_kwargs={"n_eval": 32})
        >>> run_config(cfg.to_dict()).final_eval_loss == run_config(cfg).final_eval_loss
        True
    """
    from search.store import run_id as store_run_id

    cfg = config if isinstance(config, ProxyConfig) else ProxyConfig.from_dict(config)
    started = time.perf_counter()
    dev = _device(device)
    the_task = task if task is not None else cfg.make_task()
    digest = getattr(the_task, "digest", None)
    if cfg.task_digest is not None and digest != cfg.task_digest:
        raise EinspaceError(
            f"the data of task {cfg.task!r} changed: its digest is {digest!r}, the run was "
            f"configured for {cfg.task_digest!r} (a text or data file edited since?)"
        )
    every = _checkpoint_every(cfg, checkpoint_every)
    rid = store_run_id(cfg.to_dict())
    model = _build_model(cfg, the_task)
    params = sum(p.numel() for p in model.parameters())
    macs = macs_per_token(model, the_task, cfg.batch_size)
    tokens = tokens_per_example(the_task)
    record = cfg.padding()
    if record is None:
        from search.models import padding as model_padding

        record = model_padding(model)
    base = RunResult(cfg, "finished", (), rid, params, macs, tokens, record)
    if store is None:
        return _train(cfg, the_task, model, dev, base, None, every, on_point, started)
    with _opened(store) as run_store:
        claim = run_store.claim(cfg.to_dict(), sweep=sweep)
        if claim is None:
            return _stored_result(run_store, base, started)
        # run_store remembers claim.attempt: every write below is fenced by it
        return _train(cfg, the_task, model, dev, base, run_store, every, on_point, started)


@contextlib.contextmanager
def _opened(store: RunStore | str | os.PathLike[str]) -> Iterator[RunStore]:
    """``store`` itself, or a :class:`~search.store.RunStore` opened from a path or URL for
    the block (then closed)."""
    from search.store import RunStore

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


def _device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise EinspaceError(
            f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:0'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EinspaceError(f"device {device!r} asked for but CUDA is not available; use 'cpu'")
    return dev


def _checkpoint_every(config: ProxyConfig, value: int | None) -> int:
    if value is not None:
        return _positive_int(value, "checkpoint_every")
    intervals = max(1, math.ceil(config.steps / config.eval_every / 4))
    return config.eval_every * intervals


def _stored_result(store: RunStore, base: RunResult, started: float) -> RunResult:
    runs = store.runs()
    row = runs[runs["run_id"] == base.run_id]
    status = str(row["status"].iloc[0]) if len(row) else "busy"
    if status in ("running", "pending"):
        status = "busy"
    points = _stored_points(store, base.run_id)
    error = row["error"].iloc[0] if len(row) else None
    return replace(
        base,
        status=status,
        points=points,
        cached=True,
        wall_s=time.perf_counter() - started,
        error=None if error is None or (isinstance(error, float) and math.isnan(error)) else error,
    )


def _stored_points(store: RunStore, rid: str) -> tuple[CurvePoint, ...]:
    frame = store.points(run_ids=[rid])
    columns = [frame[c].tolist() for c in CurvePoint._fields]
    return tuple(
        CurvePoint(int(step), float(compute), _opt(train), _opt(ev))
        for step, compute, train, ev in zip(*columns, strict=True)
    )


def _opt(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


# --------------------------------------------------------------------------- training


class _Diverged(Exception):
    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


def _batch(
    task: Task, config: ProxyConfig, step: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(_seed_from(config.seed, _STREAM_BATCH, step))
    return task.train_batch(step, config.batch_size, generator=gen, device=device)


def _evaluate(model: nn.Module, task: Task, data: tuple[Tensor, Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(task.loss(model(data[0]), data[1]))
    model.train()
    return loss


def _checkpoint_blob(
    step: int, model: nn.Module, optimizer: torch.optim.Optimizer, window: list[float]
) -> bytes:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "window": list(window),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _restore(
    blob: bytes, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> tuple[int, list[float]]:
    state = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"].cpu())
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
    return int(state["step"]), [float(v) for v in state["window"]]


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
) -> RunResult:
    rid = base.run_id
    model.to(device)
    optimizer = _optimizer(model, config)
    start, resumed = 0, None
    window: list[float] = []  # training losses since the last logged point
    points: dict[int, CurvePoint] = {}
    if store is not None:
        saved = store.load_checkpoint(rid)
        if saved is not None:
            start, window = _restore(saved[1], model, optimizer, device)
            resumed = start
            points = {p.step: p for p in _stored_points(store, rid) if p.step < start}
    per_step = step_flops(base.macs_per_token * base.tokens_per_example, config.batch_size)
    eval_data = task.eval_set(device)
    last_beat = time.monotonic()
    beat_every = store.lease_s / 4 if store is not None else math.inf
    status, error, step = "finished", None, start
    try:
        for step in range(start, config.steps + 1):
            if step % config.eval_every == 0 or step == config.steps:
                # at a resumed start this logs the checkpoint's point again, identically
                point = _log_point(config, task, model, eval_data, device, step, window, per_step)
                window = []
                points[step] = point
                if store is not None:
                    store.log_points(rid, [point._asdict()])
                    last_beat = time.monotonic()
                if on_point is not None and on_point(point) and step < config.steps:
                    status = "pruned"
                    break
            if step == config.steps:
                break
            x, y = _batch(task, config, step, device)
            loss = task.loss(model(x), y)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise _Diverged(step, f"training loss became {value} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            window.append(value)
            done = step + 1
            if store is not None:
                if done % checkpoint_every == 0 and done < config.steps:
                    store.save_checkpoint(
                        rid, done, _checkpoint_blob(done, model, optimizer, window)
                    )
                    last_beat = time.monotonic()
                elif time.monotonic() - last_beat > beat_every:
                    store.heartbeat(rid)
                    last_beat = time.monotonic()
    except _Diverged as div:
        status, error = "diverged", div.reason
        points = {s: p for s, p in points.items() if s < div.step}
        if store is not None:
            try:
                store.mark_diverged(rid, div.step, div.reason)
            except RunTakenOver as lost:
                status, error = "busy", str(lost)
    except KeyboardInterrupt:
        raise  # the run stays 'running' with its newest checkpoint; a later claim resumes it
    except RunTakenOver as lost:  # paused past the lease: the run is another worker's now
        status, error = "busy", str(lost)
    except Exception as err:  # never crash a sweep: record the failure and return it
        status, error = "failed", "".join(traceback.format_exception_only(err)).strip()
        if store is not None:
            status, error = _mark_failed(store, rid, err, status, error)
    else:
        if store is not None:
            try:
                store.finish(rid)
            except RunTakenOver as lost:
                status, error = "busy", str(lost)
    return replace(
        base,
        status=status,
        points=tuple(points[s] for s in sorted(points)),
        resumed_from=resumed,
        trained_steps=max(0, step - start),
        wall_s=time.perf_counter() - started,
        error=error,
    )


def _mark_failed(
    store: RunStore, rid: str, err: Exception, status: str, error: str
) -> tuple[str, str]:
    """Record a failed run; a run taken over meanwhile is left to its new owner."""
    try:
        store.mark_failed(rid, err)
    except RunTakenOver as lost:
        return "busy", str(lost)
    return status, error


def _log_point(
    config: ProxyConfig,
    task: Task,
    model: nn.Module,
    eval_data: tuple[Tensor, Tensor],
    device: torch.device,
    step: int,
    window: list[float],
    per_step: float,
) -> CurvePoint:
    eval_loss = _evaluate(model, task, eval_data)
    if not math.isfinite(eval_loss):
        raise _Diverged(step, f"eval loss became {eval_loss} at step {step}")
    if step == 0 and not window:
        x, y = _batch(task, config, 0, device)
        with torch.no_grad():
            train = float(task.loss(model(x), y))
        if not math.isfinite(train):
            raise _Diverged(0, f"training loss is {train} at initialization")
    else:
        train = float(sum(window) / len(window)) if window else math.nan
    return CurvePoint(step, per_step * step, None if math.isnan(train) else train, eval_loss)
