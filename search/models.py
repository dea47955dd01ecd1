"""The model a proxy run trains, its compute, and tasks and models named by import path.

:func:`build_model` turns a run config into the ``nn.Module`` it trains:

* the task's :func:`~search.tasks.model_kind` ``"mlp"`` → :class:`ProxyMLP`;
* ``"lm"`` → the decoder-only transformer :func:`search.lm.build_gpt` (every attention and
  MLP projection structured);
* a config with ``model = "module:attr"`` (or an in-process callable, see below) → the user's
  factory ``model(structure, width, task) -> nn.Module``.

Structured layers use the proxy sizes of the config's ``mode``: ``"auto"`` (the default) takes
the exact, most balanced realization wherever the width factors
(:func:`einspace.proxy_realization.proxy_realization`) and rounds only otherwise;
:func:`padding` records what every layer got.

**Compute** (docs: theory §6). :func:`macs_per_token` is the forward MACs per token of a
model: the LM's ``macs_per_token()`` (projections, readout and attention), the MLP's
``macs(batch)`` (one example is one token); a user model's ``macs()`` if it has one, read as
forward MACs per *example* and divided by the task's ``tokens_per_example`` (1 unless the task
says otherwise); otherwise it is measured with ``torch.utils.flop_counter.FlopCounterMode`` on
one training batch (FLOPs / 2 / tokens). A training step of batch ``b`` then costs
``6 × macs_per_token × tokens_per_example × b`` FLOPs.

**Tasks and models by path.** A task or model given as ``"package.module:attr"`` is imported
(``attr`` may be dotted; the current folder is searched too, as ``python -m`` does). A task
attribute may be a task object, or a class or function that returns one (called with the
run's ``task_kwargs``); a model attribute is the factory. Worker processes re-import them by
this path, so they must be importable there (a module on ``sys.path``, not ``__main__``).
Objects passed to :func:`search.proxy.proxy_run` or :func:`search.driver.run_search`
directly are kept in this process (:func:`local_task`, :func:`local_model`) and identified by
the task's ``name`` and ``repr`` (give your task a ``repr`` that names its settings and, when
it reads data, a ``digest`` attribute) and by the factory's ``module:qualname``.

Examples:
    >>> from search.tasks import MLPRegression
    >>> net = ProxyMLP(8, 1, 16, 1, "btt")
    >>> macs_per_token(net, MLPRegression(n_eval=8), 4) == 8 * 16 + 256 + 16
    True
    >>> load_spec("search.tasks:TextLM", "task").__name__
    'TextLM'
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from einspace.errors import EinspaceError, suggest
from einspace.moe import MoESpec, is_moe_spec
from einspace.nn.mup import spectral_sigma
from einspace.proxy_realization import padding_record, proxy_realization
from einspace.realization import Realization
from einspace.structure import Structure
from search.compute import mlp_macs_per_token
from search.tasks import TASKS, Task, get_task, model_kind

if TYPE_CHECKING:
    from search.proxy_config import ProxyConfig

__all__ = [
    "ModelFactory",
    "ProxyMLP",
    "build_model",
    "is_spec",
    "load_spec",
    "local_model",
    "local_task",
    "macs_per_token",
    "padding",
    "realize_layer",
    "resolve_model",
    "resolve_task",
    "tokens_per_example",
]

ModelFactory = Callable[[Any, int, Any], nn.Module]
"""``model(structure, width, task) -> nn.Module``."""

_LOCAL_TASKS: dict[tuple[str, str], Task] = {}
_LOCAL_MODELS: dict[str, ModelFactory] = {}


# --------------------------------------------------------------------------- by path


def is_spec(text: object) -> bool:
    """Whether ``text`` names an object by import path, ``"module:attr"``.

    Examples:
        >>> is_spec("mypkg.tasks:MyTask"), is_spec("lm")
        (True, False)
    """
    return isinstance(text, str) and ":" in text and not text.startswith(":")


def load_spec(spec: str, what: str) -> Any:
    """Import ``"module:attr"`` (``attr`` may be dotted) and return the attribute.

    Raises:
        EinspaceError: the module does not import or lacks the attribute (naming both and the
            nearest names it has).

    Examples:
        >>> load_spec("search.tasks:TASKZ", "task")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: task 'search.tasks:TASKZ': module 'search.tasks' has no ...
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise EinspaceError(f"{what} {spec!r} must be 'module:attr', e.g. 'mypkg.data:MyTask'")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:  # as `python -m` does: the current folder
        sys.path.append(here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise EinspaceError(
            f"{what} {spec!r}: cannot import module {module_name!r} ({err}); expected a module "
            f"on the Python path (run from its folder or pip install it)"
        ) from None
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = module_name + "".join("." + p for p in attr.split(".")[:i])
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"it has {names}"
            raise EinspaceError(
                f"{what} {spec!r}: module {owner!r} has no attribute {part!r}; {hint}"
            ) from None
        obj = getattr(obj, part)
    return obj


def local_task(task: Task) -> tuple[str, str]:
    """Keep a task object for this process's runs; returns its identity ``(name, repr)``."""
    key = (str(task.name), repr(task))
    _LOCAL_TASKS[key] = task
    return key


def local_model(factory: ModelFactory) -> str:
    """Keep a model factory for this process's runs; returns its label ``module:qualname``."""
    if not callable(factory):
        raise EinspaceError(
            f"model {factory!r} must be a callable (structure, width, task) -> nn.Module or a "
            f"'module:attr' string"
        )
    name = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    label = f"{getattr(factory, '__module__', None) or 'local'}:{name}"
    _LOCAL_MODELS[label] = factory
    return label


def importable(label: str, obj: object) -> bool:
    """Whether ``label`` imports to ``obj`` in a fresh process (not ``__main__``, no locals)."""
    if label.startswith("__main__:") or "<" in label:
        return False
    try:
        return bool(load_spec(label, "object") is obj)
    except EinspaceError:
        return False


def resolve_task(
    name: str, kwargs: Mapping[str, Any] | None = None, task_repr: str | None = None
) -> Task:
    """The task of a config: a registered name, a ``"module:attr"`` spec, or (with
    ``task_repr``) a task object kept by :func:`local_task` in this process.

    Raises:
        EinspaceError: an unknown name (listing the registered ones and the spec form), an
            import that fails, an object that is not a task, or a task object not in this
            process.

    Examples:
        >>> resolve_task("lm", {"n_ctx": 8}).n_ctx
        8
        >>> resolve_task("search.tasks:Digits").name
        'digits'
    """
    kw = dict(kwargs or {})
    if task_repr is not None:
        found = _LOCAL_TASKS.get((name, task_repr))
        if found is None:
            raise EinspaceError(
                f"task object {task_repr} (name {name!r}) is not available in this process: "
                f"task objects cannot cross to worker processes; pass the task as "
                f"'module:attr' (importable there) or use one worker"
            )
        return found
    if not is_spec(name):
        if name not in TASKS:
            raise EinspaceError(
                f"unknown task {name!r}; {suggest(str(name), TASKS)} (or 'module:attr' for "
                f"your own task)"
            )
        return get_task(name, **kw)
    obj = load_spec(name, "task")
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Task)):
        try:
            obj = obj(**kw)
        except TypeError as err:
            raise EinspaceError(f"task {name!r} called with {kw!r} failed: {err}") from None
    elif kw:
        raise EinspaceError(
            f"task {name!r} is a task object; task_kwargs {kw!r} apply only to a task class or "
            f"function"
        )
    if not isinstance(obj, Task):
        missing = [
            a
            for a in ("name", "d_in", "d_out", "loss", "train_batch", "eval_set")
            if not hasattr(obj, a)
        ]
        raise EinspaceError(
            f"task {name!r} gave {type(obj).__name__}, which is not a Task: it lacks "
            f"{', '.join(missing)} (see search.tasks.Task)"
        )
    return obj


def resolve_model(label: str) -> ModelFactory:
    """The model factory of a config's ``model`` label (kept in-process, or imported).

    Examples:
        >>> resolve_model("search.lm:build_gpt").__name__
        'build_gpt'
    """
    found = _LOCAL_MODELS.get(label)
    if found is not None:
        return found
    obj = load_spec(label, "model")
    if not callable(obj):
        raise EinspaceError(
            f"model {label!r} is a {type(obj).__name__}; expected a callable (structure, "
            f"width, task) -> nn.Module"
        )
    return cast(ModelFactory, obj)


# --------------------------------------------------------------------------- the MLP


def realize_layer(
    structure: Structure | str, d_in: int, d_out: int, mode: str, pad_tol: float
) -> Realization:
    """A structured layer's realization under ``mode`` (``"auto"``, ``"round"`` or ``"exact"``).

    Examples:
        >>> realize_layer("monarch", 128, 128, "auto", 0.15).sizes  # 8·16, not 11·11
        {'α': 8, 'γ': 16, 'ε': 8, 'φ': 16}
    """
    spec = structure if isinstance(structure, Structure) else Structure.parse(structure)
    if mode == "auto":
        return proxy_realization(spec, d_in, d_out, pad_tol=pad_tol)
    if mode not in ("round", "exact"):
        raise EinspaceError(f"mode = {mode!r}; {suggest(str(mode), ['auto', 'round', 'exact'])}")
    return spec.realize(d_in, d_out, mode=mode, pad_tol=pad_tol)  # type: ignore[arg-type]


class ProxyMLP(nn.Module):
    """``d_in → width → (structured width × width) × depth → d_out`` with ReLU.

    The input layer has ``mup_role = "input"`` and the readout ``"readout"``, so
    :func:`einspace.nn.param_groups` gives the whole model its μP rates. Dense layers have
    spectral init and zero biases.

    Args:
        d_in: input features.
        d_out: outputs.
        width: hidden width.
        depth: number of structured hidden layers.
        structure: their structure (a :class:`Structure` or spec), or a BTT-MoE spec
            (``"btt_moe:e=4,k=1"``; its ``macs`` are then the active MACs, and a training
            loop adds :meth:`aux_loss` to the loss). The standard MoE (``"moe:…"``) replaces
            transformer MLP blocks, which this model has none of: it is refused.
        mode: sizes of the structured layers (``"auto"``, ``"round"`` or ``"exact"``).
        pad_tol: padding tolerance of round mode.
        aux_weight: the weight of the BTT-MoE layers' auxiliary loss in :meth:`aux_loss`.

    Examples:
        >>> model = ProxyMLP(8, 1, 16, 1, "dense")
        >>> model(torch.zeros(3, 8)).shape, model.macs(3)
        (torch.Size([3, 1]), 400)
        >>> ProxyMLP(8, 1, 64, 1, "btt_moe:e=4,k=1").macs()  # 8·64 + (2·8³ + 64·4 gate) + 64
        1856
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        width: int,
        depth: int,
        structure: Structure | str,
        *,
        mode: str = "auto",
        pad_tol: float = 0.15,
        aux_weight: float = 0.01,
    ) -> None:
        from einspace.nn import BTTMoE, EinsumLinear

        super().__init__()
        self.d_in, self.d_out, self.width, self.depth = d_in, d_out, width, depth
        self.aux_weight = aux_weight
        self.embed = nn.Linear(d_in, width)
        if is_moe_spec(structure):  # BTT-MoE hidden layers, experts at the proxy's Monarch
            spec = MoESpec.parse(str(structure))
            if spec.kind != "btt_moe":
                raise EinspaceError(
                    f"{spec} replaces transformer MLP blocks; the MLP proxy has none (use "
                    f"--task lm, or btt_moe:e={spec.experts},k={spec.top_k})"
                )
            expert = realize_layer("monarch", width, width, mode, pad_tol)
            self.hidden = nn.ModuleList(
                BTTMoE(width, width, spec.experts, spec.top_k, expert=expert) for _ in range(depth)
            )
        else:
            realization = realize_layer(structure, width, width, mode, pad_tol)
            self.hidden = nn.ModuleList(
                EinsumLinear(width, width, realization) for _ in range(depth)
            )
        self.readout = nn.Linear(width, d_out)
        self.embed.mup_role = "input"  # type: ignore[assignment]
        self.readout.mup_role = "readout"  # type: ignore[assignment]
        with torch.no_grad():
            for layer in (self.embed, self.readout):
                fan_out, fan_in = layer.weight.shape
                layer.weight.normal_(0.0, spectral_sigma(fan_in, fan_out))
                layer.bias.zero_()

    def macs(self, batch: int = 1) -> int:
        """MACs per example: dense layers ``d_in·d_out``, structured layers their own count."""
        hidden = sum(int(cast(Any, layer).macs(batch=batch)) for layer in self.hidden)
        return mlp_macs_per_token(self.d_in, self.d_out, self.width, 1, hidden)

    def aux_loss(self) -> Tensor:
        """The BTT-MoE layers' auxiliary loss of the last forward pass times ``aux_weight``
        (:func:`einspace.nn.moe.aux_loss`; zero without routed layers): a training loop adds
        it to the loss."""
        from einspace.nn.moe import aux_loss

        return aux_loss(self, self.aux_weight)

    def point_extra(self) -> dict[str, float]:
        """The routers' health in the last forward pass, for a run's logged points
        (:func:`einspace.nn.moe.routing_stats`); empty without routed layers."""
        from einspace.nn.moe import routing_stats

        return routing_stats(self, self.aux_weight)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.embed(x))  # (B, width)
        for layer in self.hidden:
            h = torch.relu(layer(h))  # (B, width)
        return self.readout(h)  # (B, d_out)


# --------------------------------------------------------------------------- building


def build_model(config: ProxyConfig, task: Task | None = None) -> nn.Module:
    """The model a proxy run of ``config`` trains (before it is seeded; see
    :func:`search.training.seeded_model` for the seeded build).

    Args:
        config: the run config (its structure, width, mode and model settings).
        task: the task (default: the config's own).

    Raises:
        EinspaceError: a structure that does not realize at the width, or a model factory
            that fails or does not return an ``nn.Module``.

    Examples:
        >>> from search.proxy_config import ProxyConfig
        >>> type(build_model(ProxyConfig("btt", 32, task="lm", task_kwargs={"n_ctx": 8}))).__name__
        'GPT'
        >>> type(build_model(ProxyConfig("btt", 32))).__name__
        'ProxyMLP'
    """
    the_task = task if task is not None else config.make_task()
    if config.model:
        factory = resolve_model(config.model)
        try:
            net = factory(config.structure_object(), config.width, the_task)
        except EinspaceError:
            raise
        except Exception as err:
            raise EinspaceError(
                f"model {config.model!r} failed for structure {config.structure!r} at width "
                f"{config.width}: {type(err).__name__}: {err}"
            ) from None
        if not isinstance(net, nn.Module):
            raise EinspaceError(
                f"model {config.model!r} returned {type(net).__name__}; expected an nn.Module"
            )
        return net
    if model_kind(the_task) == "lm":
        from search.lm import build_gpt

        return build_gpt(
            config.structure,
            config.width,
            the_task,
            n_layer=config.n_layer,
            d_head=config.d_head,
            tied=config.tied,
            base_width=config.base_width,
            mode=config.mode,
            pad_tol=config.pad_tol,
            aux_weight=config.aux_weight,
        )
    return ProxyMLP(
        the_task.d_in,
        the_task.d_out,
        config.width,
        config.depth,
        config.structure,
        mode=config.mode,
        pad_tol=config.pad_tol,
        aux_weight=config.aux_weight,
    )


def padding(model: nn.Module) -> dict[str, dict[str, object]]:
    """Per structured layer of ``model``: mode, class sizes, input/output padding (for a
    BTT-MoE layer, its experts' Monarch).

    Examples:
        >>> padding(ProxyMLP(8, 1, 128, 1, "monarch"))["hidden.0"]["mode"]
        'exact'
        >>> padding(ProxyMLP(8, 1, 64, 1, "btt_moe:e=4,k=1"))["hidden.0"]["sizes"]
        {'α': 8, 'γ': 8, 'ε': 8, 'φ': 8}
    """
    from einspace.nn import BTTMoE, EinsumLinear

    return padding_record(
        {
            n: m.monarch if isinstance(m, BTTMoE) else m.realization
            for n, m in model.named_modules()
            if isinstance(m, EinsumLinear | BTTMoE)
        }
    )


def tokens_per_example(task: object) -> int:
    """The task's ``tokens_per_example`` (1 when it does not say).

    Examples:
        >>> from search.tasks import TextLM
        >>> tokens_per_example(TextLM(n_ctx=8)), tokens_per_example(object())
        (8, 1)
    """
    value = getattr(task, "tokens_per_example", None)
    return 1 if value is None else int(value)


def macs_per_token(model: nn.Module, task: Task, batch_size: int) -> int:
    """Forward MACs per token of ``model`` on ``task`` (see the module docs).

    Raises:
        EinspaceError: the model fails on a training batch while being measured.
    """
    per_token = getattr(model, "macs_per_token", None)
    if callable(per_token):
        return int(per_token())
    tokens = tokens_per_example(task)
    if isinstance(model, ProxyMLP):
        return int(model.macs(batch_size)) // tokens
    macs = getattr(model, "macs", None)
    if callable(macs):
        return round(float(macs()) / tokens)
    from torch.utils.flop_counter import FlopCounterMode

    x, _ = task.train_batch(0, batch_size)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    except Exception as err:
        raise EinspaceError(
            f"measuring the model's FLOPs on one batch of {batch_size} failed: "
            f"{type(err).__name__}: {err}"
        ) from None
    return round(counter.get_total_flops() / 2 / (batch_size * tokens))
