"""replace_linear on an MLP and a transformer block: forward still runs, counts as reported."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from einspace import EinspaceError
from einspace.nn import EinsumLinear, replace_linear


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256, bias=False), nn.Linear(256, 10)
    )


def test_mlp_all_but_last() -> None:
    model = mlp()
    bias0 = model[0].bias.detach().clone()
    summary = replace_linear(model, "btt:r=0.25", select="all_but_last")
    assert [r.name for r in summary.replaced] == ["0", "2"]
    assert isinstance(model[0], EinsumLinear) and isinstance(model[2], EinsumLinear)
    assert isinstance(model[3], nn.Linear) and not isinstance(model[3], EinsumLinear)
    torch.testing.assert_close(model[0].bias, bias0)  # bias kept
    assert model[2].bias is None
    # 256→1024: α = γ = 16, ε = φ = 32, ρ = round(256^¼) = 4
    # A = 16·16·32·4 = 32768, B = 16·32·32·4 = 65536 (both layers, transposed shapes)
    assert [r.params_after for r in summary.replaced] == [98304, 98304]
    assert [r.macs_after for r in summary.replaced] == [98304, 98304]
    assert summary.params_before == summary.macs_before == 2 * 262144
    assert summary.params_after == 196608 and summary.macs_after == 196608
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 196608 + 1024 + (256 * 10 + 10)  # factors + kept biases + head
    assert model(torch.randn(7, 256)).shape == (7, 10)
    assert "total params 524288→196608" in str(summary)


def test_transformer_block() -> None:
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=256, batch_first=True)
    x = torch.randn(2, 5, 64)
    block.eval()
    summary = replace_linear(block, "monarch")
    assert [r.name for r in summary.replaced] == ["linear1", "linear2"]
    assert summary.skipped[0][0] == "self_attn.out_proj"
    assert "MultiheadAttention" in summary.skipped[0][1]
    # 64→256 Monarch: α = γ = 8, ε = φ = 16: A = 8·8·16 = 1024, B = 8·16·16 = 2048
    assert summary.params_after == 2 * 3072 and summary.macs_after == 2 * 3072
    assert not block.training and not block.linear1.training
    assert "fast path" in summary.notes[0]
    y = block(x)  # eval with autograd on: the structured path
    assert y.shape == x.shape and torch.isfinite(y).all()
    with torch.no_grad():  # the dense fast path reads .weight = the materialized matrix
        torch.testing.assert_close(block(x), y)
    block.train()
    block(x).sum().backward()
    assert block.linear1.factors[0].grad is not None


def test_callable_select_device_dtype_and_projection() -> None:
    model = nn.Sequential(nn.Linear(64, 64).double(), nn.Linear(64, 64).double())
    summary = replace_linear(
        model, "low_rank:r=0.5", select=lambda name, _: name == "1", project=True
    )
    assert [r.name for r in summary.replaced] == ["1"]
    assert model[1].factors[0].dtype == torch.float64
    assert 0 < summary.projection_errors["1"] < 1


def test_skips_and_raises() -> None:
    model = nn.Sequential(nn.Linear(100, 64), nn.Linear(64, 64))
    summary = replace_linear(model, "block_diagonal")  # 100 truncates 20 %: skipped
    assert [r.name for r in summary.replaced] == ["1"]
    assert summary.skipped[0][0] == "0" and "pad_tol" in summary.skipped[0][1]
    with pytest.raises(EinspaceError, match="replaced nothing"):
        replace_linear(nn.Sequential(nn.Linear(100, 64)), "block_diagonal")
    with pytest.raises(EinspaceError, match=r"no nn\.Linear"):
        replace_linear(nn.Sequential(nn.ReLU()), "monarch")
    with pytest.raises(EinspaceError, match="select = 'some'"):
        replace_linear(mlp(), "monarch", select="some")  # type: ignore[arg-type]
    with pytest.raises(EinspaceError, match="dtype is taken from each replaced layer"):
        replace_linear(mlp(), "monarch", dtype=torch.float64)
