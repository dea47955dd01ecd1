"""Swapping a model's linear layers for structured ones, in place.

:func:`replace_linear` walks the model, replaces each selected linear layer — ``nn.Linear``,
or ``transformers``' ``Conv1D`` (GPT-2), which stores its weight transposed — by an
:class:`~einspace.nn.EinsumLinear` with the same widths, bias presence, device and dtype (the
old bias values are copied; the weight is re-initialized with the structure's μP init, or
projected from the old weight with ``project=True``), and reports what it did. Given a sparse
spec (``"btt_moe:e=4,k=2"``) each layer becomes a :class:`~einspace.nn.BTTMoE` instead (μP
init; add each layer's ``aux_loss`` to the training loss). What is known
about other libraries' layers and tied weights lives in :mod:`einspace.nn.adapters`.

``nn.TransformerEncoderLayer`` works (training and eval); in inference mode its fused
fast path reads ``.weight`` — :attr:`EinsumLinear.weight` materializes the matrix so the
result is right, but that path runs dense (the summary notes it).

Every linear layer left dense is listed in the summary's ``skipped`` with its reason: not
selected; the structure cannot realize its widths within ``pad_tol``; its parent reads
``.weight`` directly (``nn.MultiheadAttention.out_proj``; swapping it would silently do
nothing or break); or its weight is *tied* — the same parameter is held by another module,
such as GPT-2's ``lm_head``, whose weight is the token embedding. Replacing a tied layer
breaks the tie and usually grows the model, so it needs ``untie=True`` (the summary notes
it). A layer registered under several names is replaced under all of them by one new layer.
If no layer at all ends up replaced the call raises :class:`~einspace.EinspaceError` — a run
that silently trains the dense model is the worse failure.

``params_before`` and ``params_after`` are the model's parameter totals (each shared
parameter once, as ``sum(p.numel() for p in model.parameters())`` counts them);
``weights_before``/``weights_after`` and the MACs are those of the replaced layers.

Examples:
    >>> import torch
    >>> mlp = torch.nn.Sequential(
    ...     torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256),
    ...     torch.nn.Linear(256, 10))
    >>> summary = replace_linear(mlp, "btt:r=0.25", select="all_but_last")
    >>> [r.name for r in summary.replaced], summary.weights_before, summary.weights_after
    (['0', '2'], 524288, 196608)
    >>> summary.params_before, summary.params_after == sum(p.numel() for p in mlp.parameters())
    (528138, True)
    >>> summary.skipped
    [('3', "not selected (select='all_but_last' keeps the last linear layer)")]
    >>> mlp(torch.randn(3, 256)).shape
    torch.Size([3, 10])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from einspace.errors import EinspaceError
from einspace.moe import MoESpec, is_moe_spec
from einspace.nn.adapters import DenseView, dense_view, forget_tie, parameter_owners
from einspace.nn.linear import EinsumLinear, StructureLike
from einspace.nn.moe import BTTMoE

__all__ = ["LayerReplacement", "ReplaceSummary", "replace_linear"]

Selector = Literal["all", "all_but_last"] | Callable[[str, nn.Module], bool]


@dataclass(frozen=True)
class LayerReplacement:
    """One replaced layer. Counts are weights only (biases are unchanged and not counted).

    Attributes:
        name: the module's qualified name.
        kind: what it was (``"nn.Linear"``, ``"transformers Conv1D"``).
        d_in: input width.
        d_out: output width.
        params_before: ``d_in · d_out``.
        params_after: the structure's factor parameters.
        macs_before: ``d_in · d_out`` per token.
        macs_after: the structure's sequential MACs per token.
    """

    name: str
    kind: str
    d_in: int
    d_out: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int


@dataclass
class ReplaceSummary:
    """What :func:`replace_linear` did.

    Attributes:
        structure: the structure used (as given).
        params_before: the model's parameters before (shared ones counted once).
        params_after: the model's parameters after.
        replaced: the layers replaced, in module order.
        skipped: ``(name, reason)`` for each linear layer left dense, selected or not.
        projection_errors: relative errors per name when ``project=True``.
        notes: caveats (a tied layer left alone or untied, a parent with a dense fast path).
    """

    structure: str
    params_before: int = 0
    params_after: int = 0
    replaced: list[LayerReplacement] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    projection_errors: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def weights_before(self) -> int:
        """Weight parameters of the replaced layers before."""
        return sum(r.params_before for r in self.replaced)

    @property
    def weights_after(self) -> int:
        """Weight parameters of the replaced layers after."""
        return sum(r.params_after for r in self.replaced)

    @property
    def macs_before(self) -> int:
        """MACs per token of the replaced layers before."""
        return sum(r.macs_before for r in self.replaced)

    @property
    def macs_after(self) -> int:
        """MACs per token of the replaced layers after."""
        return sum(r.macs_after for r in self.replaced)

    def __str__(self) -> str:
        lines = [f"replace_linear({self.structure!r}): {len(self.replaced)} replaced"]
        for r in self.replaced:
            lines.append(
                f"  {r.name} ({r.kind}): {r.d_in}→{r.d_out} params {r.params_before}→"
                f"{r.params_after} MACs {r.macs_before}→{r.macs_after}"
            )
        for name, reason in self.skipped:
            lines.append(f"  skipped {name or '<model>'}: {reason}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(
            f"  model params {self.params_before}→{self.params_after}; replaced layers: "
            f"weights {self.weights_before}→{self.weights_after}, "
            f"MACs/token {self.macs_before}→{self.macs_after}"
        )
        return "\n".join(lines)


@dataclass
class _Layer:
    """A linear layer of the model: every name it is registered under, and how to read it."""

    names: list[str]
    module: nn.Module
    view: DenseView | None
    problem: str | None  # why an adapter that knows the class cannot read it


def _layers(model: nn.Module) -> list[_Layer]:
    found: dict[int, _Layer] = {}
    inside: list[str] = []  # the names of BTTMoE layers: their gate is theirs, not the model's
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, EinsumLinear | BTTMoE) or any(name.startswith(p) for p in inside):
            if isinstance(m, BTTMoE):
                inside.append(f"{name}." if name else "")
            continue
        if id(m) in found:
            found[id(m)].names.append(name)
            continue
        try:
            view = dense_view(m)
        except ValueError as err:
            found[id(m)] = _Layer([name], m, None, f"{type(m).__name__} not readable: {err}")
            continue
        if view is not None:
            found[id(m)] = _Layer([name], m, view, None)
    return list(found.values())


def _selected(layers: list[_Layer], select: Selector) -> list[bool]:
    if callable(select):
        return [bool(select(x.names[0], x.module)) for x in layers]
    if select == "all":
        return [True] * len(layers)
    if select == "all_but_last":
        return [i < len(layers) - 1 for i in range(len(layers))]
    raise EinspaceError(
        f"select = {select!r}; expected 'all', 'all_but_last' or a callable (name, layer) -> bool"
    )


def _describe(layers: list[_Layer]) -> str:
    if not layers:
        return "no linear layer (nn.Linear or transformers Conv1D)"
    kinds: dict[str, int] = {}
    for x in layers:
        kind = x.view.kind if x.view is not None else type(x.module).__name__
        kinds[kind] = kinds.get(kind, 0) + 1
    return (
        f"{len(layers)} linear layer(s) (" + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")"
    )


def _ties(layer: _Layer, owners: dict[int, list[str]]) -> list[str]:
    """The names outside this layer that hold one of its parameters."""
    assert layer.view is not None
    own = set(layer.names)
    return [
        n
        for p in layer.view.parameters
        for n in owners.get(id(p), [])
        if n.rpartition(".")[0] not in own
    ]


Parent = tuple[str, nn.Module, str]  # (qualified name, module, attribute)
_MOE_KWARGS = {"mode", "pad_tol", "dispatch", "z_loss_weight", "device", "dtype"}


def _skip_reason(layer: _Layer, parents: list[Parent], tied: list[str], untie: bool) -> str | None:
    """Why a selected layer is left dense, or None to replace it."""
    if layer.view is None:
        return f"{layer.problem}; left dense"
    if not layer.names[0]:
        return "the model itself is the layer; wrap it to replace"
    if any(isinstance(p, nn.MultiheadAttention) for _, p, _ in parents):
        return "nn.MultiheadAttention reads out_proj.weight directly; left dense"
    if tied and not untie:
        return (
            f"shares parameters with {', '.join(tied)} (tied weights); replacing it would "
            "break the tie, so it is left dense (untie=True replaces it)"
        )
    return None


def _build(
    view: DenseView, structure: StructureLike | MoESpec, project: bool, kwargs: dict[str, Any]
) -> tuple[EinsumLinear | BTTMoE, float | None]:
    """The new layer for ``view`` (and the projection error with ``project``)."""
    bias = view.bias
    if isinstance(structure, MoESpec):
        unknown = sorted(set(kwargs) - _MOE_KWARGS)
        if project or unknown:
            what = "project=True" if project else ", ".join(f"{k}=" for k in unknown)
            raise EinspaceError(
                f"{structure} takes mode=, pad_tol=, dispatch= and z_loss_weight=, not {what}: "
                "its output depends on the gate, so it starts from its μP init"
            )
        moe = BTTMoE(
            view.d_in, view.d_out, structure.experts, structure.top_k, bias is not None, **kwargs
        )
        if bias is not None and moe.bias is not None:
            moe.bias.data.copy_(bias.detach())
        return moe, None
    if project:
        b = bias.detach() if bias is not None else None
        return EinsumLinear.from_dense(view.weight.detach(), structure, b, **kwargs)
    new = EinsumLinear(view.d_in, view.d_out, structure, bias=bias is not None, **kwargs)
    if bias is not None and new.bias is not None:
        new.bias.data.copy_(bias.detach())
    return new, None


def _install(
    model: nn.Module, layer: _Layer, new: nn.Module, parents: list[Parent], tied: list[str]
) -> list[str]:
    """Put ``new`` in every place of ``layer``; return the notes this calls for."""
    name, notes = layer.names[0], []
    new.train(layer.module.training)
    for _, parent, attr in parents:
        setattr(parent, attr, new)
    if len(layer.names) > 1:
        notes.append(
            f"{name}: one module registered as {', '.join(layer.names)}; "
            "all of them now share the new layer"
        )
    if tied:
        note = f"{name}: untied from {', '.join(tied)} (untie=True); those keep the dense weight"
        hf = forget_tie(model, [f"{n}.{p}" for n in layer.names for p in ("weight", "bias")])
        notes.append(note + (f"; {hf}" if hf else ""))
    for parent_name, parent, _ in parents:
        if isinstance(parent, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer):
            notes.append(
                f"{parent_name or '<model>'}: {type(parent).__name__}'s inference fast path "
                "(eval, no grad) reads .weight and runs dense; turn it off with "
                "torch.backends.mha.set_fastpath_enabled(False) to run the structure"
            )
    return notes


def _record(name: str, view: DenseView, new: EinsumLinear | BTTMoE) -> LayerReplacement:
    dense = view.d_in * view.d_out
    after = new.total_params if isinstance(new, BTTMoE) else new.params
    return LayerReplacement(
        name, view.kind, view.d_in, view.d_out, dense, after, dense, int(new.macs())
    )


def replace_linear(
    model: nn.Module,
    structure: StructureLike | MoESpec,
    select: Selector = "all",
    project: bool = False,
    untie: bool = False,
    **layer_kwargs: Any,
) -> ReplaceSummary:
    """Replace selected linear layers of ``model`` by structured ones, in place.

    Args:
        model: the model to modify.
        structure: a structure or string (realized per layer at its widths), or a sparse
            spec (``"btt_moe:e=4,k=2"``, :mod:`einspace.moe`): each layer becomes a
            :class:`~einspace.nn.BTTMoE` whose ``aux_loss`` the training loss should add.
        select: ``"all"``, ``"all_but_last"`` (keeps the last linear layer in module order,
            usually the output head) or a callable ``(name, layer) -> bool``.
        project: initialize each new layer from the old weight with
            :meth:`EinsumLinear.from_dense` instead of the μP init (not for BTT-MoE).
        untie: also replace layers whose weight is tied to another module's (the tie is
            broken: the other module keeps the dense weight); by default they are skipped.
        **layer_kwargs: passed to :class:`EinsumLinear` (``mode``, ``pad_tol``,
            ``normalize``, ``zero_init``) or :class:`BTTMoE` (``mode``, ``pad_tol``,
            ``dispatch``, ``z_loss_weight``); ``bias``, ``device`` and ``dtype`` follow the
            old layer.

    Returns:
        a :class:`ReplaceSummary` (for a BTT-MoE, ``params_after`` counts every expert and
        the gate and ``macs_after`` the active MACs, k experts plus the gate).

    Raises:
        EinspaceError: when nothing could be replaced (every reason is listed).
    """
    for key in ("bias", "device", "dtype"):
        if key in layer_kwargs:
            raise EinspaceError(f"{key} is taken from each replaced layer; do not pass {key}=")
    if isinstance(structure, EinsumLinear | BTTMoE):
        raise EinspaceError("pass a structure (or string), not a layer")
    spec = (
        MoESpec.parse(structure)
        if isinstance(structure, str) and is_moe_spec(structure)
        else structure
    )
    summary = ReplaceSummary(str(spec))
    summary.params_before = sum(p.numel() for p in model.parameters())
    layers = _layers(model)
    chosen = _selected(layers, select)
    owners = parameter_owners(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    for layer, pick in zip(layers, chosen, strict=True):
        name = layer.names[0]
        if not pick:
            why = (
                "select='all_but_last' keeps the last linear layer"
                if select == "all_but_last"
                else "select returned False"
            )
            summary.skipped.append((name, f"not selected ({why})"))
            continue
        parents = [
            (pn, modules[pn] if pn else model, attr)
            for pn, _, attr in (n.rpartition(".") for n in layer.names)
        ]
        tied = _ties(layer, owners) if layer.view is not None else []
        reason = _skip_reason(layer, parents, tied, untie)
        if reason is not None:
            summary.skipped.append((name, reason))
            if tied and not untie:
                summary.notes.append(f"{name}: {reason}")
            continue
        assert layer.view is not None
        w = layer.view.weight
        kwargs = {**layer_kwargs, "device": w.device, "dtype": w.dtype}
        try:
            new, err = _build(layer.view, spec, project, kwargs)
        except EinspaceError as error:
            summary.skipped.append((name, str(error)))
            continue
        if err is not None:
            summary.projection_errors[name] = err
        summary.notes += [
            n for n in _install(model, layer, new, parents, tied) if n not in summary.notes
        ]
        summary.replaced.append(_record(name, layer.view, new))
    summary.params_after = sum(p.numel() for p in model.parameters())
    if not summary.replaced:
        reasons = "; ".join(f"{n or '<model>'}: {r}" for n, r in summary.skipped)
        found = _describe(layers) + (f", {sum(chosen)} selected" if layers else "")
        raise EinspaceError(
            f"replace_linear({str(spec)!r}) replaced nothing: {found}"
            + (f" ({reasons})" if reasons else "")
            + ". Check `select`, or loosen pad_tol / use mode='exact' for awkward widths"
        )
    return summary
