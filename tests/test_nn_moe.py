"""BTTMoE (docs/theory.md §5): routing, both dispatch paths against an einsum reference, the
auxiliary loss, counts and bad input."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from einspace import EinspaceError
from einspace.nn import BTTMoE


def reference(moe: BTTMoE, x: torch.Tensor) -> torch.Tensor:
    """The BTT einsum with the gate vector on ρ, written directly."""
    x2 = x.reshape(-1, moe.d_in)
    idx, w, _ = moe.route(x2)
    scale = torch.zeros(x2.shape[0], moe.experts, dtype=x.dtype).scatter(1, idx, w)
    r = moe.realization
    n = r.sizes
    xp = F.pad(x2, (0, max(0, r.padded_in - moe.d_in)))[:, : r.padded_in]
    a, b = moe.core_factors()
    y = torch.einsum("zag,agfe,ze,gcfe->zcf", xp.reshape(-1, n["α"], n["γ"]), a, scale, b)
    y = F.pad(y.reshape(x2.shape[0], -1), (0, max(0, moe.d_out - r.padded_out)))
    y = y[:, : moe.d_out]
    return (y + moe.bias if moe.bias is not None else y).reshape(*x.shape[:-1], moe.d_out)


def make(d_in: int, d_out: int, experts: int, top_k: int) -> BTTMoE:
    torch.manual_seed(0)
    moe = BTTMoE(d_in, d_out, experts, top_k, dtype=torch.float64)
    with torch.no_grad():  # a non-trivial gate and bias
        moe.gate.weight.normal_()
        assert moe.bias is not None
        moe.bias.normal_()
    return moe


@pytest.mark.parametrize(
    ("d_in", "d_out", "experts", "top_k"),
    [
        (64, 64, 4, 2),
        (60, 72, 8, 2),
        (64, 48, 8, 1),
        (64, 64, 3, 3),
        (64, 16, 4, 2),
        (64, 64, 1, 1),
    ],
)
def test_dispatch_paths_match_reference(d_in: int, d_out: int, experts: int, top_k: int) -> None:
    moe = make(d_in, d_out, experts, top_k)
    x = torch.randn(2, 50, d_in, dtype=torch.float64, requires_grad=True)
    ref = reference(moe, x)
    gy = torch.randn_like(ref)
    params = [x, *moe.parameters()]
    want = torch.autograd.grad(ref, params, gy, allow_unused=True)
    for dispatch in ("dense", "sparse", "grouped"):
        moe.dispatch = dispatch
        y = moe(x)
        torch.testing.assert_close(y, ref)
        got = torch.autograd.grad(y, params, gy, allow_unused=True)
        for g, w in zip(got, want, strict=True):
            if w is None:
                continue
            torch.testing.assert_close(g, w)


def test_unselected_experts_are_zero() -> None:
    moe = make(64, 64, 4, 1)
    x = torch.randn(10, 64, dtype=torch.float64)
    idx, w, _ = moe.route(x)
    assert torch.allclose(w, torch.ones_like(w))  # top-1: softmax of one logit
    # the output only depends on the selected expert's slices: zero the others' B slices
    with torch.no_grad():
        y = moe(x)
        _, b = moe.core_factors()
        for e in range(4):
            if e not in idx:
                b[..., e].normal_()
        torch.testing.assert_close(moe(x), y)


def test_aux_loss() -> None:
    moe = BTTMoE(64, 64, experts=4, top_k=2)
    x = torch.randn(32, 64)
    moe(x)
    # zero gate: uniform router probabilities, so E·⟨P, f⟩ = E · Σ (1/E) f_e = 1,
    # and logsumexp of E zeros is log E
    assert moe.aux_loss is not None
    assert float(moe.aux_loss.detach()) == pytest.approx(
        1 + 0.1 * torch.log(torch.tensor(4.0)) ** 2
    )
    with torch.no_grad():
        moe.gate.weight.normal_()
    y = moe(x)
    loss = y.square().mean() + 0.01 * moe.aux_loss
    loss.backward()
    assert moe.gate.weight.grad is not None and torch.any(moe.gate.weight.grad != 0)


def test_counts() -> None:
    moe = BTTMoE(1024, 1024, experts=8, top_k=2)
    # α = γ = ε = φ = 32, ρ = 8: each factor 32³·8 = 262144; BTT MACs 2 · 262144
    assert moe.params == 2 * 262144
    assert moe.btt_macs == 524288
    # the paper's count: 2 of 8 experts = 131072, plus the gate 1024 · 8 = 8192
    assert moe.macs() == 139264
    assert moe.gate_params == 8192 and moe.total_params == 524288 + 8192
    assert moe.active_params == 2 * 65536 + 8192
    total = sum(p.numel() for p in moe.parameters())
    assert total == 524288 + 8192 + 1024  # factors, gate (no bias), output bias


@pytest.mark.parametrize(("dispatch", "experts_run"), [("sparse", 2), ("dense", 8)])
def test_flop_counter_sees_active_macs(dispatch: str, experts_run: int) -> None:
    """FlopCounterMode counts what runs: the sparse path runs k = 2 experts per token and the
    gate (the paper's 139,264 MACs at d = 1024); the dense path, like the paper's code, runs
    all 8 experts and masks (524,288 + 8,192)."""
    from torch.utils.flop_counter import FlopCounterMode

    moe = BTTMoE(1024, 1024, experts=8, top_k=2, dispatch=dispatch)  # type: ignore[arg-type]
    with torch.no_grad():
        moe.gate.weight.normal_()  # routes tokens to different experts
    tokens = 64
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        moe(torch.randn(tokens, 1024))
    per_token = counter.get_total_flops() / 2 / tokens
    assert per_token == experts_run * 2 * 32**3 + 1024 * 8
    if dispatch == "sparse":
        assert per_token == moe.macs()


def test_flop_counter_on_the_grouped_path() -> None:
    """The grouped path runs every expert on C rows, C = the most tokens any expert got:
    E · C expert applications instead of k · tokens (the padding is counted, it runs)."""
    from torch.utils.flop_counter import FlopCounterMode

    moe = BTTMoE(256, 256, experts=4, top_k=2, dispatch="grouped")
    with torch.no_grad():
        moe.gate.weight.normal_()
    tokens = 40
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        moe(torch.randn(tokens, 256))
    assert moe.load is not None
    cap = round(float(moe.load.max()) * 2 * tokens)  # selections of the busiest expert
    assert cap > 2 * tokens / 4  # not perfectly balanced, so there is padding
    expert = 2 * 16**3  # a Monarch at 256: 16·16·16 per factor
    assert counter.get_total_flops() == 2 * (4 * cap * expert + tokens * 256 * 4)


def test_load_is_the_selection_frequency() -> None:
    moe = BTTMoE(64, 64, experts=4, top_k=1)
    with torch.no_grad():  # expert 2 wins every token: its logit is the largest
        moe.gate.weight.zero_()
        moe.gate.weight[2].fill_(1.0)
    moe(torch.ones(10, 64))
    assert moe.load is not None
    assert moe.load.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_bad_input() -> None:
    with pytest.raises(EinspaceError, match="top_k = 5 exceeds experts = 4"):
        BTTMoE(64, 64, experts=4, top_k=5)
    with pytest.raises(EinspaceError, match="experts = 0"):
        BTTMoE(64, 64, experts=0)
    with pytest.raises(EinspaceError, match="dispatch = 'fast'"):
        BTTMoE(64, 64, experts=4, dispatch="fast")  # type: ignore[arg-type]
    moe = BTTMoE(64, 64, experts=4)
    with pytest.raises(EinspaceError, match="d_in = 64"):
        moe(torch.randn(3, 63))


def test_round_trips_and_repr() -> None:
    moe = make(64, 64, 4, 2)
    x = torch.randn(5, 64, dtype=torch.float64)
    y = moe(x)
    clone = pickle.loads(pickle.dumps(moe))
    torch.testing.assert_close(clone(x), y)
    fresh = BTTMoE(64, 64, 4, 2, dtype=torch.float64)
    fresh.load_state_dict(moe.state_dict())
    torch.testing.assert_close(fresh(x), y)
    assert (
        repr(BTTMoE(64, 64, experts=4, top_k=1)) == "BTTMoE(d_in=64, d_out=64, experts=4, top_k=1)"
    )


@pytest.mark.parametrize("dispatch", ["dense", "sparse", "grouped"])
def test_autocast_bf16(dispatch: str) -> None:
    torch.manual_seed(0)
    moe = BTTMoE(64, 48, experts=4, top_k=2, dispatch=dispatch)  # type: ignore[arg-type]
    with torch.no_grad():
        moe.gate.weight.normal_()
        assert moe.bias is not None
        moe.bias.normal_()
    x = torch.randn(40, 64)
    want = moe(x)
    g32 = torch.autograd.grad(want.square().sum(), list(moe.factors))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = moe(x)
    assert got.dtype == torch.bfloat16
    scale = float(want.detach().abs().max())
    torch.testing.assert_close(got.float(), want.detach(), rtol=0.05, atol=0.03 * scale)
    grads = torch.autograd.grad(got.float().square().sum(), list(moe.factors))
    for g, g_ref in zip(grads, g32, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, g_ref, rtol=0.1, atol=0.06 * float(g_ref.abs().max()))


def test_dtype_mismatch_is_an_einspace_error() -> None:
    moe = BTTMoE(64, 64, experts=4)
    with pytest.raises(EinspaceError, match=r"dtype torch.float64 given to BTTMoE"):
        moe(torch.randn(3, 64, dtype=torch.float64))


def test_routing_stats_flag_a_collapsed_router() -> None:
    from einspace.nn.moe import aux_loss, routed_layers, routing_stats

    torch.manual_seed(0)
    net = torch.nn.Sequential(BTTMoE(64, 64, experts=4, top_k=1), BTTMoE(64, 64, experts=4))
    with torch.no_grad():
        net[0].gate.weight[3].fill_(1.0)  # every positive-sum token goes to expert 3
        net[1].gate.weight.normal_()  # random: spread
    net(torch.rand(64, 64))
    assert list(routed_layers(net)) == ["0", "1"]
    stats = routing_stats(net)
    assert stats["load_max"] == 1.0 and stats["load_entropy_min"] == 0.0
    assert stats["collapsed"] == 0.5  # the first layer of two
    assert stats["aux_loss"] == pytest.approx(float(aux_loss(net).detach()))
    assert routing_stats(torch.nn.Linear(2, 2)) == {}
    assert float(aux_loss(torch.nn.Linear(2, 2))) == 0.0
