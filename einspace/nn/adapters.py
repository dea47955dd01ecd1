"""What :func:`~einspace.nn.replace_linear` knows about other libraries' layers and models.

Two kinds of knowledge, each in a small adapter:

* **linear-like layers** — :func:`dense_view` reads a layer as the map ``y = x Wᵀ + b`` with
  ``W`` of shape ``(d_out, d_in)``: ``nn.Linear`` directly, and ``transformers``' ``Conv1D``
  (GPT-2, GPT, ImageGPT), which stores its weight transposed, ``(d_in, d_out)``. ``Conv1D`` is
  recognized by its class name and module, so ``transformers`` is never imported here.
* **tied weights** — :func:`parameter_owners` finds every module holding each parameter (a
  parameter shared between modules, such as GPT-2's ``lm_head.weight`` which *is*
  ``transformer.wte.weight``), and :func:`forget_tie` tells a ``transformers`` model that a
  tie was broken, so that a later ``tie_weights()`` does not try to restore it.

Examples:
    >>> import torch
    >>> view = dense_view(torch.nn.Linear(3, 5))
    >>> view.kind, view.d_in, view.d_out, tuple(view.weight.shape)
    ('nn.Linear', 3, 5, (5, 3))
    >>> emb = torch.nn.Embedding(10, 4)
    >>> model = torch.nn.ModuleDict({"emb": emb, "head": torch.nn.Linear(4, 10, bias=False)})
    >>> model["head"].weight = emb.weight
    >>> parameter_owners(model)[id(emb.weight)]
    ['emb.weight', 'head.weight']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DenseView", "dense_view", "forget_tie", "is_hf_conv1d", "parameter_owners"]


@dataclass(frozen=True)
class DenseView:
    """A linear-like layer read as ``y = x Wᵀ + b``.

    Attributes:
        kind: what the layer is (``"nn.Linear"``, ``"transformers Conv1D"``).
        d_in: input width.
        d_out: output width.
        weight: ``W``, shape ``(d_out, d_in)`` (a view of the layer's parameter).
        bias: ``b``, shape ``(d_out,)``, or None.
        parameters: the layer's own parameter tensors (weight, then bias).
    """

    kind: str
    d_in: int
    d_out: int
    weight: torch.Tensor
    bias: torch.Tensor | None
    parameters: tuple[torch.Tensor, ...]


def is_hf_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is (a subclass of) ``transformers``' ``Conv1D``, without importing it."""
    return any(
        c.__name__ == "Conv1D" and c.__module__.split(".")[0] == "transformers"
        for c in type(module).__mro__
    )


def _linear(module: nn.Module) -> DenseView | None:
    if not isinstance(module, nn.Linear):
        return None
    w, b = module.weight, module.bias
    return DenseView(
        "nn.Linear",
        module.in_features,
        module.out_features,
        w,
        b,
        (w,) if b is None else (w, b),
    )


def _hf_conv1d(module: nn.Module) -> DenseView | None:
    if not is_hf_conv1d(module):
        return None
    w = module.weight  # (nx, nf) = (d_in, d_out): x @ W + b
    b = getattr(module, "bias", None)
    b = b if isinstance(b, torch.Tensor) else None
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise ValueError(f"weight is {type(w).__name__}; expected a 2-d (d_in, d_out) tensor")
    d_in, d_out = w.shape
    if (getattr(module, "nx", d_in), getattr(module, "nf", d_out)) != (d_in, d_out):
        raise ValueError(
            f"weight has shape {tuple(w.shape)} but nx = {module.nx}, nf = {module.nf}; "
            "expected (nx, nf)"
        )
    return DenseView(
        "transformers Conv1D",
        int(d_in),
        int(d_out),
        w.T,
        b,
        (w,) if b is None else (w, b),
    )


# the adapters tried in turn; the first that recognizes a layer reads it
_ADAPTERS: tuple[Callable[[nn.Module], DenseView | None], ...] = (_linear, _hf_conv1d)


def dense_view(module: nn.Module) -> DenseView | None:
    """The layer as ``y = x Wᵀ + b``, or None when no adapter knows it.

    Raises:
        ValueError: when an adapter knows the layer's class but its state is not what that
            class holds (the message says what was found).
    """
    for adapter in _ADAPTERS:
        view = adapter(module)
        if view is not None:
            return view
    return None


def parameter_owners(model: nn.Module) -> dict[int, list[str]]:
    """``id(parameter)`` → every qualified name under which ``model`` holds it."""
    owners: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    return owners


def forget_tie(model: nn.Module, names: list[str]) -> str | None:
    """Tell a ``transformers`` model that the parameters ``names`` are no longer tied.

    Sets ``config.tie_word_embeddings = False`` on each ``transformers`` (sub)model whose
    declared ties mention one of ``names`` (so ``tie_weights()``, ``resize_token_embeddings``
    and saving do not re-tie or drop the new layer), and returns a sentence saying so, or None
    for a model that is not from ``transformers``.
    """
    done = []
    for prefix, sub in model.named_modules():
        config = getattr(sub, "config", None)
        keys = getattr(sub, "_tied_weights_keys", None)
        if config is None or not keys or not getattr(config, "tie_word_embeddings", False):
            continue
        head = f"{prefix}." if prefix else ""
        declared = keys.items() if isinstance(keys, dict) else ((k, "") for k in keys)
        mentioned = {f"{head}{k}" for pair in declared for k in pair if k}
        if not mentioned & set(names):
            continue
        config.tie_word_embeddings = False
        tied = getattr(sub, "all_tied_weights_keys", None)
        if isinstance(tied, dict):
            for name in names:
                tied.pop(name.removeprefix(head), None)
        done.append(f"{prefix or '<model>'}.config.tie_word_embeddings")
    if not done:
        return None
    return f"set {', '.join(done)} = False so transformers does not re-tie it"
