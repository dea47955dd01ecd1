"""Swapping a model's ``nn.Linear`` layers for structured ones, in place.

:func:`replace_linear` walks the model, replaces each selected ``nn.Linear`` by an
:class:`~einspace.nn.EinsumLinear` with the same widths, bias presence, device and dtype (the
old bias values are copied; the weight is re-initialized with the structure's μP init, or
projected from the old weight with ``project=True``), and reports what it did.

``nn.TransformerEncoderLayer`` works (training and eval); in inference mode its fused
fast path reads ``.weight`` — :attr:`EinsumLinear.weight` materializes the matrix so the
result is right, but that path runs dense (the summary notes it).

Layers are skipped, with the reason listed in the summary, when the structure cannot realize
their widths within ``pad_tol``, or when their parent reads ``.weight`` directly
(``nn.MultiheadAttention.out_proj``; swapping it would silently do nothing or break). If no
layer at all ends up replaced the call raises :class:`~einspace.EinspaceError` — a run that
silently trains the dense model is the worse failure.

Examples:
    >>> import torch
    >>> mlp = torch.nn.Sequential(
    ...     torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256),
    ...     torch.nn.Linear(256, 10))
    >>> summary = replace_linear(mlp, "btt:r=0.25", select="all_but_last")
    >>> [r.name for r in summary.replaced], summary.params_before, summary.params_after
    (['0', '2'], 524288, 196608)
    >>> mlp(torch.randn(3, 256)).shape
    torch.Size([3, 10])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from einspace.errors import EinspaceError
from einspace.nn.linear import EinsumLinear, StructureLike

__all__ = ["LayerReplacement", "ReplaceSummary", "replace_linear"]

Selector = Literal["all", "all_but_last"] | Callable[[str, nn.Linear], bool]


@dataclass(frozen=True)
class LayerReplacement:
    """One replaced layer. Counts are weights only (biases are unchanged and not counted).

    Attributes:
        name: the module's qualified name.
        d_in: input width.
        d_out: output width.
        params_before: ``d_in · d_out``.
        params_after: the structure's factor parameters.
        macs_before: ``d_in · d_out`` per token.
        macs_after: the structure's sequential MACs per token.
    """

    name: str
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
        replaced: the layers replaced, in module order.
        skipped: ``(name, reason)`` for each selected layer left dense.
        projection_errors: relative errors per name when ``project=True``.
        notes: caveats about replaced layers (e.g. a parent with a dense fast path).
    """

    structure: str
    replaced: list[LayerReplacement] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    projection_errors: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def params_before(self) -> int:
        """Weight parameters of the replaced layers before."""
        return sum(r.params_before for r in self.replaced)

    @property
    def params_after(self) -> int:
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
                f"  {r.name}: {r.d_in}→{r.d_out} params {r.params_before}→{r.params_after} "
                f"MACs {r.macs_before}→{r.macs_after}"
            )
        for name, reason in self.skipped:
            lines.append(f"  skipped {name}: {reason}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(
            f"  total params {self.params_before}→{self.params_after}, "
            f"MACs {self.macs_before}→{self.macs_after}"
        )
        return "\n".join(lines)


def _selected(model: nn.Module, select: Selector) -> list[tuple[str, nn.Linear]]:
    linears = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not isinstance(m, EinsumLinear)
    ]
    if callable(select):
        return [(n, m) for n, m in linears if select(n, m)]
    if select == "all":
        return linears
    if select == "all_but_last":
        return linears[:-1]
    raise EinspaceError(
        f"select = {select!r}; expected 'all', 'all_but_last' or a callable (name, layer) -> bool"
    )


def replace_linear(
    model: nn.Module,
    structure: StructureLike,
    select: Selector = "all",
    project: bool = False,
    **layer_kwargs: Any,
) -> ReplaceSummary:
    """Replace selected ``nn.Linear`` layers of ``model`` by :class:`EinsumLinear`, in place.

    Args:
        model: the model to modify.
        structure: a structure or string (realized per layer at its widths).
        select: ``"all"``, ``"all_but_last"`` (keeps the last ``nn.Linear`` in module order,
            usually the output head) or a callable ``(name, layer) -> bool``.
        project: initialize each new layer from the old weight with
            :meth:`EinsumLinear.from_dense` instead of the μP init.
        **layer_kwargs: passed to :class:`EinsumLinear` (``mode``, ``pad_tol``,
            ``normalize``, ``zero_init``); ``bias``, ``device`` and ``dtype`` follow the old
            layer.

    Returns:
        a :class:`ReplaceSummary`.

    Raises:
        EinspaceError: when nothing could be replaced (every reason is listed).
    """
    for key in ("bias", "device", "dtype"):
        if key in layer_kwargs:
            raise EinspaceError(f"{key} is taken from each replaced layer; do not pass {key}=")
    if isinstance(structure, EinsumLinear):
        raise EinspaceError("pass a structure (or string), not a layer")
    summary = ReplaceSummary(str(structure))
    targets = _selected(model, select)
    modules = dict(model.named_modules())
    for name, old in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        if isinstance(parent, nn.MultiheadAttention):
            summary.skipped.append(
                (name, "nn.MultiheadAttention reads out_proj.weight directly; left dense")
            )
            continue
        if not name:
            summary.skipped.append((name, "the model itself is the Linear; wrap it to replace"))
            continue
        w = old.weight
        kwargs = {**layer_kwargs, "device": w.device, "dtype": w.dtype}
        try:
            if project:
                new, err = EinsumLinear.from_dense(
                    w.detach(),
                    structure,
                    old.bias.detach() if old.bias is not None else None,
                    **kwargs,
                )
                summary.projection_errors[name] = err
            else:
                new = EinsumLinear(
                    old.in_features,
                    old.out_features,
                    structure,
                    bias=old.bias is not None,
                    **kwargs,
                )
                if old.bias is not None and new.bias is not None:
                    new.bias.data.copy_(old.bias.detach())
        except EinspaceError as err:
            summary.skipped.append((name, str(err)))
            continue
        new.train(old.training)
        setattr(parent, attr, new)
        if isinstance(parent, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer):
            note = (
                f"{parent_name or '<model>'}: {type(parent).__name__}'s inference fast path "
                "(eval, no grad) reads .weight and runs dense; turn it off with "
                "torch.backends.mha.set_fastpath_enabled(False) to run the structure"
            )
            if note not in summary.notes:
                summary.notes.append(note)
        dense = old.in_features * old.out_features
        summary.replaced.append(
            LayerReplacement(
                name=name,
                d_in=old.in_features,
                d_out=old.out_features,
                params_before=dense,
                params_after=new.params,
                macs_before=dense,
                macs_after=int(new.macs()),
            )
        )
    if not summary.replaced:
        reasons = "; ".join(f"{n or '<model>'}: {r}" for n, r in summary.skipped)
        found = f"{len(targets)} selected nn.Linear layer(s)" if targets else "no nn.Linear"
        raise EinspaceError(
            f"replace_linear({str(structure)!r}) replaced nothing: {found}"
            + (f" ({reasons})" if reasons else "")
            + ". Check `select`, or loosen pad_tol / use mode='exact' for awkward widths"
        )
    return summary
