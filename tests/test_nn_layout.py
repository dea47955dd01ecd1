"""The layer stores each factor in the axis order its plan's product reads; state dicts
keep the structure's (core) order, so checkpoints written in that order load bit-exactly."""

from __future__ import annotations

import pytest
import torch

from einspace.nn import EinsumLinear


@pytest.mark.parametrize("structure", ["monarch", "btt:r=0.25", "tt:r=0.25"])
def test_core_order_state_dict_loads_bit_exactly(structure: str) -> None:
    layer = EinsumLinear(64, 64, structure, dtype=torch.float64)
    shapes = layer.realization.factor_shapes
    if structure != "tt:r=0.25":  # Monarch and BTT: the plan re-lays at least one factor
        assert any(axes != tuple(sorted(axes)) for axes in layer._stored_axes)
    gen = torch.Generator().manual_seed(3)
    core = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    state = {f"factors.{i}": w.clone() for i, w in enumerate(core)}
    state["bias"] = torch.randn(64, generator=gen, dtype=torch.float64)
    layer.load_state_dict(state)
    for got, want in zip(layer.core_factors(), core, strict=True):
        assert torch.equal(got.detach(), want)
    saved = layer.state_dict()
    for i, want in enumerate(core):
        assert torch.equal(saved[f"factors.{i}"], want)
    # the map is the realization's, evaluated from the core-order factors by numpy
    dense = torch.tensor(layer.realization.materialize([w.numpy() for w in core]))
    x = torch.randn(5, 64, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ dense.T + state["bias"])
