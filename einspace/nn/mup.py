"""Structure-aware μP (docs/theory.md §4): spectral init, factor normalization and learning rates.

Each factor is a batch of matrices with a fan-in (the classes it contracts at its step) and a
fan-out (the classes it adds), taken from :attr:`Realization.fans` (the core's best sequential
order).

* **Init**: entries ~ N(0, σ²) with ``σ = fan_in^{-1/2} · min(1, √(fan_out / fan_in))``.
* **Normalization** (optional): the forward pass uses ``F / max(1, rms(F) / σ)`` and a learnable
  scalar gain per layer (applied to the last factor).
* **Learning rates** (:func:`param_groups`): with Adam a factor gets
  ``lr_dense · (d_in / fan_in) / k``, with SGD
  ``lr_dense · ((fan_out / fan_in) / (d_out / d_in)) / k``.

**Plain layers.** :func:`param_groups` also gives a model's ``nn.Linear`` and ``nn.Embedding``
layers their μP learning rates, by role (the rules of the mup package's ``MuAdam`` /
``MuSGD``, with the readout's output multiplier folded into its learning rate). With
``m = base_width / fan_in`` and ``n = fan_out / base_width``:

========  ==========================  ===========================
role      Adam (weight, bias)          SGD (weight, bias)
========  ==========================  ===========================
input     ``lr``, ``lr``               ``lr·n``, ``lr·n``
hidden    ``lr·m``, ``lr``             ``lr``, ``lr·n``
readout   ``lr·m``, ``lr``             ``lr·m``, ``lr``
========  ==========================  ===========================

An ``nn.Embedding`` is an input layer (fan-in ``num_embeddings``), an ``nn.Linear`` a hidden
one, unless a module's ``mup_role`` attribute or the ``roles`` argument says otherwise (a
linear layer that reads the data is an input layer; the last one a readout). A hidden
``nn.Linear`` so gets exactly what a dense ``EinsumLinear`` of its shape gets. Without
``base_width`` every plain layer keeps ``lr`` (no width transfer).

``lr_dense`` is the μP learning rate of a dense layer with the same ``d_in``. Width transfer:
when ``base_width`` is given, ``lr`` is the learning rate tuned for a dense layer of
``d_in = base_width`` and μP's Adam rule (lr ∝ 1/fan_in) gives ``lr_dense = lr · base_width /
d_in`` for every structured layer (they are treated as hidden layers). The spectral SGD rule
(lr ∝ fan_out/fan_in) does not change with width at a fixed aspect ratio, so for SGD
``lr_dense = lr`` whatever ``base_width`` is. Without ``base_width``, ``lr_dense = lr``.

Examples:
    >>> from einspace import Structure
    >>> r = Structure.named("btt", r=0.25).realize(1024, 1024)
    >>> r.fans
    ((32, 192), (192, 32))
    >>> [round(s, 6) for s in spectral_sigmas(r)]
    [0.176777, 0.029463]
    >>> adam_multipliers(r)
    (16.0, 2.6666666666666665)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

from einspace.errors import EinspaceError, suggest
from einspace.validation import check_int

if TYPE_CHECKING:
    import torch
    from torch import nn

    from einspace.realization import Realization

__all__ = [
    "ROLES",
    "FactoredLayer",
    "Role",
    "adam_multipliers",
    "param_groups",
    "sgd_multipliers",
    "spectral_sigma",
    "spectral_sigmas",
]


def spectral_sigma(fan_in: int, fan_out: int) -> float:
    """``fan_in^{-1/2} · min(1, √(fan_out / fan_in))``.

    Examples:
        >>> spectral_sigma(64, 512), spectral_sigma(512, 64)
        (0.125, 0.015625)
    """
    return math.sqrt(min(fan_in, fan_out)) / fan_in  # the same, with less rounding


def spectral_sigmas(realization: Realization) -> tuple[float, ...]:
    """The init standard deviation of each factor (core order)."""
    return tuple(spectral_sigma(fi, fo) for fi, fo in realization.fans)


def adam_multipliers(realization: Realization) -> tuple[float, ...]:
    """Per factor: ``(d_in / fan_in) / k``, the Adam LR multiplier over ``lr_dense``."""
    k = realization.k
    return tuple((realization.d_in / fi) / k for fi, _ in realization.fans)


def sgd_multipliers(realization: Realization) -> tuple[float, ...]:
    """Per factor: ``((fan_out / fan_in) / (d_out / d_in)) / k``, the SGD LR multiplier."""
    k, ratio = realization.k, realization.d_out / realization.d_in
    return tuple(((fo / fi) / ratio) / k for fi, fo in realization.fans)


Role: TypeAlias = Literal["input", "hidden", "readout"]
ROLES: tuple[Role, ...] = ("input", "hidden", "readout")
"""The roles of plain layers in :func:`param_groups` (see the module docs)."""


@dataclass(frozen=True)
class _FactorGroup:
    name: str
    param: torch.Tensor
    lr: float
    dense: bool = False


@runtime_checkable
class FactoredLayer(Protocol):
    """A layer whose factors get μP learning rates: :class:`~einspace.nn.EinsumLinear` and
    :class:`~einspace.nn.BTTMoE` are; any module with these two attributes is."""

    @property
    def mup_realization(self) -> Realization:
        """The realization whose fans set the factors' multipliers."""
        ...

    @property
    def factors(self) -> Sequence[torch.nn.Parameter]:
        """The factor parameters, in the realization's factor order."""
        ...


def _structured_factors(
    model: nn.Module, lr: float, optimizer: str, base_width: int | None
) -> Iterator[_FactorGroup]:
    for mod_name, module in model.named_modules():
        if not isinstance(module, FactoredLayer):
            continue
        r = module.mup_realization
        lr_dense = lr
        if base_width is not None and optimizer == "adam":
            lr_dense = lr * base_width / r.d_in
        mult = adam_multipliers(r) if optimizer == "adam" else sgd_multipliers(r)
        for i, p in enumerate(module.factors):
            prefix = f"{mod_name}." if mod_name else ""
            yield _FactorGroup(f"{prefix}factors.{i}", p, lr_dense * mult[i])


def _dense_layers(
    model: nn.Module,
    lr: float,
    optimizer: str,
    base_width: int | None,
    roles: Mapping[str, Role] | None,
) -> Iterator[_FactorGroup]:
    """The parameters of plain ``nn.Linear`` / ``nn.Embedding`` layers with their μP rates."""
    from torch import nn

    layers = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | nn.Embedding)
    }
    given: dict[str, object] = dict(roles or {})
    for key, role in given.items():
        if key not in layers:
            raise EinspaceError(
                f"roles names module {key!r}, which is not a plain nn.Linear or nn.Embedding "
                f"of the model; {suggest(str(key), layers)}"
            )
        if role not in ROLES:
            raise EinspaceError(f"roles[{key!r}] = {role!r}; {suggest(str(role), ROLES)}")
    for name, module in layers.items():
        default = "input" if isinstance(module, nn.Embedding) else "hidden"
        role = str(given.get(name, getattr(module, "mup_role", default)))
        if role not in ROLES:
            raise EinspaceError(f"{name}.mup_role = {role!r}; {suggest(str(role), ROLES)}")
        if isinstance(module, nn.Embedding):
            fan_in, fan_out = module.num_embeddings, module.embedding_dim
        else:
            fan_in, fan_out = module.in_features, module.out_features
        w_lr, b_lr = _dense_rates(role, fan_in, fan_out, lr, optimizer, base_width)
        prefix = f"{name}." if name else ""
        yield _FactorGroup(f"{prefix}weight", module.weight, w_lr, True)
        bias = getattr(module, "bias", None)
        if bias is not None:
            yield _FactorGroup(f"{prefix}bias", bias, b_lr, True)


def _dense_rates(
    role: str, fan_in: int, fan_out: int, lr: float, optimizer: str, base_width: int | None
) -> tuple[float, float]:
    """(weight, bias) learning rates of a plain layer (the table of the module docs)."""
    if base_width is None:
        return lr, lr
    m, n = base_width / fan_in, fan_out / base_width
    if optimizer == "adam":
        return (lr, lr) if role == "input" else (lr * m, lr)
    if role == "input":
        return lr * n, lr * n
    return (lr, lr * n) if role == "hidden" else (lr * m, lr)


def param_groups(
    model: nn.Module,
    lr: float,
    optimizer: Literal["adam", "sgd"] = "adam",
    base_width: int | None = None,
    roles: Mapping[str, Role] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with the μP learning rates of docs/theory.md §4, for a model.

    Every factor of every :class:`~einspace.nn.EinsumLinear` and
    :class:`~einspace.nn.BTTMoE` in ``model`` gets its multiplier, and every plain
    ``nn.Linear`` and ``nn.Embedding`` the rate of its role (see the module docs); parameters
    with equal learning rates share a group. Everything else — gains, norms, other modules
    — and every plain-layer parameter whose rate is ``lr`` goes into one group with ``lr``.
    Groups carry a ``"names"`` key (optimizers ignore extra keys) and ``"mup"``: True for
    the rescaled ones. Works with AdamW too (pass ``optimizer="adam"``).

    Args:
        model: the module to scan (shared parameters are listed once, by their first module).
        lr: the dense learning rate (at ``base_width`` when given, see the module docs).
        optimizer: ``"adam"`` or ``"sgd"``: which μP rule to apply.
        base_width: the width ``lr`` was tuned at, for μP width transfer.
        roles: module name → ``"input"``, ``"hidden"`` or ``"readout"`` for plain layers
            (overrides their ``mup_role`` attribute and the defaults).

    Examples:
        >>> import torch
        >>> from einspace.nn import EinsumLinear
        >>> net = torch.nn.Sequential(EinsumLinear(64, 64, "low_rank:r=0.5"), torch.nn.ReLU())
        >>> [(g["lr"], g["names"]) for g in param_groups(net, lr=1e-3)]
        [(0.0005, ['0.factors.0']), (0.004, ['0.factors.1']), (0.001, ['0.bias'])]
        >>> opt = torch.optim.Adam(param_groups(net, lr=1e-3))

        A whole MLP at twice its base width: input at ``lr``, hidden and readout at
        ``lr · base_width / fan_in``:

        >>> mlp = torch.nn.Sequential(torch.nn.Linear(8, 128), torch.nn.Linear(128, 128),
        ...                           torch.nn.Linear(128, 1))
        >>> groups = param_groups(mlp, 1.0, base_width=64, roles={"0": "input", "2": "readout"})
        >>> [(g["lr"], g["names"]) for g in groups]
        [(0.5, ['1.weight', '2.weight']), (1.0, ['0.weight', '0.bias', '1.bias', '2.bias'])]
    """
    if optimizer not in ("adam", "sgd"):
        raise EinspaceError(f"optimizer = {optimizer!r}; expected 'adam' or 'sgd'")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise EinspaceError(f"lr = {lr!r} must be a positive number, e.g. 1e-3")
    if base_width is not None:
        base_width = check_int(base_width, "base_width", example=64, what="a width (or None)")
    seen: set[int] = set()
    by_lr: dict[float, dict[str, Any]] = {}
    plain: dict[str, Any] = {"params": [], "lr": float(lr), "names": [], "mup": False}
    scaled = _structured_factors(model, float(lr), optimizer, base_width)
    dense = _dense_layers(model, float(lr), optimizer, base_width, roles)
    for fg in itertools.chain(scaled, dense):
        if id(fg.param) in seen:
            continue
        seen.add(id(fg.param))
        group = (
            plain
            if fg.lr == lr and fg.dense
            else by_lr.setdefault(fg.lr, {"params": [], "lr": fg.lr, "names": [], "mup": True})
        )
        group["params"].append(fg.param)
        group["names"].append(fg.name)
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            plain["params"].append(p)
            plain["names"].append(name)
    groups = list(by_lr.values())
    if plain["params"]:
        groups.append(plain)
    return groups


def init_factors(params: Iterable[torch.Tensor], sigmas: Iterable[float]) -> None:
    """Fill each tensor with N(0, σ²) in place (no autograd)."""
    import torch

    with torch.no_grad():
        for p, s in zip(params, sigmas, strict=True):
            p.normal_(0.0, s)
