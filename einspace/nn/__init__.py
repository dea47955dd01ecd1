"""Torch layers for einsum structures (the only part of einspace that imports torch).

* :class:`EinsumLinear` — a structured linear layer that runs a precompiled plan.
* :class:`BTTMoE` — BTT with its rank index split into top-k routed experts.
* :func:`param_groups` — structure-aware μP learning rates for optimizers.
* :func:`coord_check` — μP's coordinate check: activation RMS per layer across widths.
* :func:`replace_linear` — swap a model's linear layers (``nn.Linear``, HF ``Conv1D``) in place.
* :class:`ExecutionPlan` — the framework-neutral schedule a layer runs.

Examples:
    >>> import torch
    >>> from einspace.nn import EinsumLinear
    >>> EinsumLinear(256, 256, "monarch")(torch.randn(4, 256)).shape
    torch.Size([4, 256])
"""

from einspace.nn.coord import coord_check, plot_coord_check
from einspace.nn.linear import EinsumLinear
from einspace.nn.moe import BTTMoE
from einspace.nn.mup import param_groups
from einspace.nn.surgery import ReplaceSummary, replace_linear
from einspace.plan import ExecutionPlan

__all__ = [
    "BTTMoE",
    "EinsumLinear",
    "ExecutionPlan",
    "ReplaceSummary",
    "coord_check",
    "param_groups",
    "plot_coord_check",
    "replace_linear",
]
