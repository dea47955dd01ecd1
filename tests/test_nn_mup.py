"""Structure-aware μP (docs/theory.md §4): init statistics, hand-computed LR multipliers,
param_groups, normalization and zero init."""

from __future__ import annotations

import math

import pytest
import torch

from einspace import EinspaceError, Structure
from einspace.nn import BTTMoE, EinsumLinear, param_groups
from einspace.nn.mup import adam_multipliers, sgd_multipliers, spectral_sigma, spectral_sigmas


def test_spectral_sigma_formula() -> None:
    assert spectral_sigma(64, 512) == 1 / 8  # fan_out ≥ fan_in: 1/√fan_in
    assert spectral_sigma(512, 64) == 1 / 64  # 1/√512 · √(64/512) = 8/512
    assert spectral_sigma(16, 16) == 1 / 4


# By hand (docs/theory.md §4). BTT 256, r=1/4: α=γ=ε=φ=16, ρ=4; A fans (16, 16·4), B (16·4, 16).
# Low rank 256→512, r=1/2: rank 16; A fans (256, 16), B (16, 512); d_out/d_in = 2.
# Kronecker 256: A fans (16, 16), B (16, 16).
CASES = [
    ("btt", {"r": 0.25}, 256, 256, [(16, 64), (64, 16)], [8, 2], [2, 1 / 8], [1 / 4, 1 / 16]),
    (
        "low_rank",
        {"r": 0.5},
        256,
        512,
        [(256, 16), (16, 512)],
        [1 / 2, 8],
        [1 / 64, 8],
        [1 / 64, 1 / 4],
    ),
    ("kronecker", {}, 256, 256, [(16, 16), (16, 16)], [8, 8], [1 / 2, 1 / 2], [1 / 4, 1 / 4]),
]


@pytest.mark.parametrize(("name", "kw", "d_in", "d_out", "fans", "adam", "sgd", "sigma"), CASES)
def test_multipliers_by_hand(
    name: str,
    kw: dict[str, float],
    d_in: int,
    d_out: int,
    fans: list[tuple[int, int]],
    adam: list[float],
    sgd: list[float],
    sigma: list[float],
) -> None:
    r = Structure.named(name, **kw).realize(d_in, d_out)
    assert list(r.fans) == fans
    assert list(adam_multipliers(r)) == adam
    assert list(sgd_multipliers(r)) == sgd
    assert list(spectral_sigmas(r)) == sigma
    layer = EinsumLinear(d_in, d_out, r)
    groups = param_groups(torch.nn.Sequential(layer), lr=0.1)
    lrs = {n: g["lr"] for g in groups for n in g["names"]}
    assert [lrs["0.factors.0"], lrs["0.factors.1"]] == pytest.approx([0.1 * a for a in adam])
    assert lrs["0.bias"] == 0.1
    groups = param_groups(torch.nn.Sequential(layer), lr=0.1, optimizer="sgd")
    lrs = {n: g["lr"] for g in groups for n in g["names"]}
    assert [lrs["0.factors.0"], lrs["0.factors.1"]] == pytest.approx([0.1 * s for s in sgd])


def test_init_statistics() -> None:
    torch.manual_seed(0)
    layer = EinsumLinear(1024, 1024, "btt:r=0.25")  # 196608 entries per factor
    assert layer.sigmas == pytest.approx([32**-0.5, 192**-0.5 * math.sqrt(32 / 192)])
    for f, s in zip([f.detach() for f in layer.factors], layer.sigmas, strict=True):
        n = f.numel()
        assert abs(float(f.mean())) < 5 * s / math.sqrt(n)
        # the sample std of n normals is within a few σ/√(2n) of σ
        assert abs(float(f.std()) - s) < 5 * s / math.sqrt(2 * n)
    assert layer.bias is not None and torch.all(layer.bias == 0)


def test_zero_init_zeroes_the_last_applied_factor() -> None:
    layer = EinsumLinear(64, 64, "btt:r=0.25", zero_init=True)
    last = layer.plan.order[-1]
    assert torch.all(layer.factors[last] == 0)
    assert all(torch.any(f != 0) for i, f in enumerate(layer.factors) if i != last)
    assert torch.all(layer(torch.randn(3, 64)) == 0)


def test_normalization() -> None:
    layer = EinsumLinear(256, 256, "btt:r=0.25", normalize=True)
    assert layer.gain is not None and layer.gain.requires_grad
    with torch.no_grad():
        layer.factors[0].mul_(10.0)  # rms ≈ 10 σ: divided back to σ
        layer.factors[1].mul_(0.5)  # rms ≈ σ/2: left alone (max(1, ·))
        layer.gain.fill_(3.0)
    eff = [e.detach() for e in layer.effective_factors()]
    rms = [float(e.square().mean().sqrt()) for e in eff]
    raw = [float(f.detach().square().mean().sqrt()) for f in layer.factors]
    s0, s1 = layer.sigmas
    # factor 0 is applied first, factor 1 last and carries the gain
    assert rms[0] == pytest.approx(s0, rel=1e-5)
    assert rms[1] == pytest.approx(3.0 * raw[1], rel=1e-5) and raw[1] < s1
    x = torch.randn(4, 256)
    assert layer.bias is not None
    torch.testing.assert_close(layer(x), x @ layer.materialize().T + layer.bias)
    layer(x).sum().backward()
    assert layer.gain.grad is not None


def test_param_groups_layout() -> None:
    model = torch.nn.Sequential(
        EinsumLinear(256, 256, "btt:r=0.25"),
        torch.nn.LayerNorm(256),
        torch.nn.Linear(256, 10),
    )
    groups = param_groups(model, lr=1e-3)
    names = [n for g in groups for n in g["names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    plain = [g for g in groups if not g["mup"]]
    assert len(plain) == 1 and plain[0]["lr"] == 1e-3
    assert set(plain[0]["names"]) == {"0.bias", "1.weight", "1.bias", "2.weight", "2.bias"}
    torch.optim.AdamW(groups)  # optimizers accept the groups


def test_width_transfer() -> None:
    # Adam: lr_dense = lr · base_width / d_in, so a factor gets lr · base / fan_in / k
    model = torch.nn.Sequential(EinsumLinear(256, 256, "btt:r=0.25"))
    lrs = {n: g["lr"] for g in param_groups(model, 1.0, base_width=64) for n in g["names"]}
    assert lrs["0.factors.0"] == pytest.approx(64 / 16 / 2)  # = 8 · 64/256
    assert lrs["0.factors.1"] == pytest.approx(64 / 64 / 2)
    sgd = {n: g["lr"] for g in param_groups(model, 1.0, "sgd", base_width=64) for n in g["names"]}
    assert sgd["0.factors.0"] == pytest.approx(2.0)  # SGD's spectral rule is width-invariant


def test_moe_uses_rank_one_fans() -> None:
    moe = BTTMoE(256, 256, experts=8)
    assert moe.mup_realization.fans == ((16, 16), (16, 16))
    assert moe.sigmas == (0.25, 0.25)
    lrs = {n: g["lr"] for g in param_groups(torch.nn.Sequential(moe), 1.0) for n in g["names"]}
    assert lrs["0.factors.0"] == lrs["0.factors.1"] == 8.0  # (256/16)/2
    assert lrs["0.gate.weight"] == 1.0


def test_param_groups_bad_input() -> None:
    model = torch.nn.Sequential(EinsumLinear(64, 64, "monarch"))
    with pytest.raises(EinspaceError, match="optimizer = 'lion'"):
        param_groups(model, 1e-3, optimizer="lion")  # type: ignore[arg-type]
    with pytest.raises(EinspaceError, match="lr = -1"):
        param_groups(model, -1)
    with pytest.raises(EinspaceError, match="base_width = 0"):
        param_groups(model, 1e-3, base_width=0)


# --------------------------------------------------------------------------- plain layers


class _Net(torch.nn.Module):
    """Embedding → hidden Linear → structured → readout, the shapes of a tiny LM."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(256, width)
        self.hidden = torch.nn.Linear(width, 2 * width)
        self.block = EinsumLinear(2 * width, width, "dense")
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, 10)
        self.head.mup_role = "readout"  # type: ignore[assignment]


@pytest.mark.parametrize("width", [64, 256])
def test_plain_layers_get_mup_rates_adam(width: int) -> None:
    net = _Net(width)
    lrs = {n: g["lr"] for g in param_groups(net, 0.1, base_width=64) for n in g["names"]}
    m = 64 / width
    assert lrs["embed.weight"] == pytest.approx(0.1)  # input: O(1)
    assert lrs["hidden.weight"] == pytest.approx(0.1 * m)  # hidden: 1/fan_in
    assert lrs["hidden.bias"] == pytest.approx(0.1)
    assert lrs["head.weight"] == pytest.approx(0.1 * m)  # readout: 1/fan_in
    assert lrs["head.bias"] == lrs["norm.weight"] == lrs["norm.bias"] == pytest.approx(0.1)
    # a hidden nn.Linear gets what a dense EinsumLinear of the same fan-in gets
    assert lrs["block.factors.0"] == pytest.approx(0.1 * 64 / (2 * width))
    assert sorted(lrs) == sorted(n for n, _ in net.named_parameters())


def test_plain_layers_sgd_rules_and_roles_override() -> None:
    net = _Net(128)
    groups = param_groups(net, 1.0, "sgd", base_width=64, roles={"hidden": "input"})
    lrs = {n: g["lr"] for g in groups for n in g["names"]}
    assert lrs["embed.weight"] == pytest.approx(128 / 64)  # input: fan_out / base
    assert lrs["hidden.weight"] == lrs["hidden.bias"] == pytest.approx(256 / 64)  # as input
    assert lrs["head.weight"] == pytest.approx(64 / 128) and lrs["head.bias"] == 1.0
    hidden = {n: g["lr"] for g in param_groups(net, 1.0, "sgd", base_width=64) for n in g["names"]}
    assert hidden["hidden.weight"] == 1.0 and hidden["hidden.bias"] == pytest.approx(4.0)


def test_plain_layers_without_base_width_keep_lr_and_the_optimizer_trains() -> None:
    net = _Net(32)
    groups = param_groups(net, 0.01)
    assert [g["lr"] for g in groups if not g["mup"]] == [0.01]
    assert all(g["lr"] == 0.01 for g in groups)
    opt = torch.optim.Adam(param_groups(net, 0.01, base_width=16))
    before = net.hidden.weight.detach().clone()
    net.head(net.norm(net.block(net.hidden(net.embed(torch.tensor([1, 2])))))).sum().backward()
    opt.step()
    assert not torch.equal(before, net.hidden.weight)


def test_shared_weights_are_listed_once_under_their_first_module() -> None:
    net = _Net(64)
    net.tied = torch.nn.Linear(64, 256, bias=False)
    net.tied.weight = net.embed.weight  # a tied readout
    groups = param_groups(net, 1.0, base_width=32)
    names = [n for g in groups for n in g["names"]]
    assert names.count("embed.weight") == 1 and "tied.weight" not in names
    assert {n: g["lr"] for g in groups for n in g["names"]}["embed.weight"] == 1.0


def test_bad_roles_are_named() -> None:
    net = _Net(64)
    with pytest.raises(EinspaceError, match=r"roles names module 'haed'.*did you mean 'head'"):
        param_groups(net, 1.0, roles={"haed": "readout"})
    with pytest.raises(EinspaceError, match="roles\\['head'\\] = 'output'"):
        param_groups(net, 1.0, roles={"head": "output"})  # type: ignore[dict-item]
    net.hidden.mup_role = "middle"  # type: ignore[assignment]
    with pytest.raises(EinspaceError, match=r"hidden\.mup_role = 'middle'"):
        param_groups(net, 1.0)
