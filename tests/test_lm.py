"""Tests of search.lm: the GPT-style LM proxy, its FLOP count and its μP setup."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from einspace import Structure
from einspace.errors import EinspaceError
from einspace.nn import EinsumLinear
from einspace.nn.execute import PlanFunction, prefers_dense
from search.lm import GPT, GPTConfig, build_gpt
from search.tasks import TextLM

STRUCTURES = ["dense", "btt", "monarch", "low_rank", "kronecker"]


def _tiny(structure: str = "btt", **kw: object) -> GPT:
    fields: dict[str, object] = {"d_model": 48, "n_layer": 2, "n_ctx": 16}
    fields.update(kw)
    return GPT(GPTConfig(structure, **fields))  # type: ignore[arg-type]


def _graph_nodes(t: torch.Tensor) -> set[str]:
    """Names of the autograd nodes that produced ``t``."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or type(node).__name__ in seen:
            continue
        seen.add(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return seen


def test_dense_counts_by_hand() -> None:
    model = _tiny("dense")
    # per block: q, k, v, o 48·48 each; fc 48·192; proj 192·48
    per_block = 4 * 48 * 48 + 2 * 48 * 192
    assert model.macs_breakdown() == {
        "projections": 2 * per_block,  # 55296
        "readout": 48 * 256,
        "attention": 2 * 16 * 48,  # n_layer · n_ctx · d_model
    }
    assert model.macs_per_token() == 55296 + 12288 + 1536
    assert model.flops_per_token() == 6 * 69120
    assert model.executed_macs_per_token() == 55296 + 12288 + 2 * 1536
    # parameters: projections + 5 LayerNorms (2 per block + final) + readout
    assert model.num_params() == 55296 + 5 * 2 * 48 + 48 * 256
    assert model.num_params(non_embedding=False) == model.num_params() + 256 * 48 + 16 * 48
    assert model.num_params() == sum(p.numel() for p in model.parameters()) - 272 * 48


@pytest.mark.parametrize("mode", ["auto", "round"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_training_flops_match_flop_counter(structure: str, mode: str) -> None:
    """FlopCounterMode counts 2 FLOPs per MAC of every mm/bmm, including those that
    EinsumLinear's custom autograd.Function runs in its backward pass.

    32 tokens, fewer than any layer's padded input width, so every projection runs its
    factored plan (with more rows a small layer may take the dense GEMM path, which
    computes the same map with more FLOPs; compute is always counted for the structure)."""
    model = _tiny(structure, mode=mode)
    idx = torch.randint(256, (2, 16), generator=torch.Generator().manual_seed(0))
    tokens = idx.numel()
    for layer in model.structured_layers().values():
        assert not prefers_dense(layer._program, tokens)
    counter = FlopCounterMode(display=False)
    with counter:
        logits = model(idx)
        forward = counter.get_total_flops()
        torch.nn.functional.cross_entropy(logits.reshape(-1, 256), idx.reshape(-1)).backward()
    assert forward == 2 * model.executed_macs_per_token() * tokens
    assert counter.get_total_flops() == 6 * model.executed_macs_per_token() * tokens
    # the convention counts the causal half of the score and value matmuls
    parts = model.macs_breakdown()
    executed = model.executed_macs_per_token()
    assert model.macs_per_token() == executed - parts["attention"]
    assert model.flops_per_token() == 6 * (parts["projections"] + parts["readout"] + 2 * 16 * 48)


@pytest.mark.parametrize("structure", ["btt", "monarch", "low_rank"])
def test_flop_counter_sees_the_custom_backward_of_each_projection(structure: str) -> None:
    layer = EinsumLinear(48, 192, structure, bias=False)
    x = torch.randn(10, 48, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with counter:
        y = layer(x)
        assert f"{PlanFunction.__name__}Backward" in _graph_nodes(y)  # the custom Function
        forward = counter.get_total_flops()
        y.sum().backward()
    assert forward == 2 * int(layer.macs()) * 10
    assert counter.get_total_flops() == 6 * int(layer.macs()) * 10  # backward: 2 × forward
    assert layer.macs() == layer.realization.macs("sequential")


def test_every_projection_is_structured_and_the_rest_dense() -> None:
    model = _tiny("monarch", d_model=64)
    layers = model.structured_layers()
    assert len(layers) == 6 * 2
    suffixes = sorted({name.split(".", 2)[2] for name in layers})
    assert suffixes == ["attn.k", "attn.o", "attn.q", "attn.v", "mlp.fc", "mlp.proj"]
    assert {layer.structure for layer in layers.values()} == {Structure.named("monarch")}
    shapes = {name.split(".", 2)[2]: (m.d_in, m.d_out) for name, m in layers.items()}
    assert shapes["mlp.fc"] == (64, 256) and shapes["mlp.proj"] == (256, 64)
    assert shapes["attn.q"] == (64, 64)
    dense = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert dense == ["lm_head"]
    assert model.h[0].attn.n_head == 4 and model.h[0].attn.scale == 1 / 16
    assert _tiny("dense", d_model=128).h[0].attn.n_head == 8  # heads scale, d_head fixed


def test_zero_init_gives_uniform_predictions_and_the_model_learns() -> None:
    task = TextLM(n_ctx=16, n_eval=8)
    model = build_gpt("btt", 32, task, n_layer=1, base_width=32)
    assert model.lm_head is not None and not model.lm_head.weight.any()
    for block in model.h:
        for layer in (block.attn.o, block.mlp.proj):
            assert not layer.factors[layer.plan.order[-1]].any()
    x, y = task.eval_set()
    with torch.no_grad():
        start = float(task.loss(model(x), y))
    assert start == pytest.approx(math.log(256), abs=1e-6)
    opt = torch.optim.Adam(model.optimizer_groups(3e-3 * 10))
    for step in range(40):
        xb, yb = task.train_batch(step, 16)
        loss = task.loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(task.loss(model(x), y)) < start - 1.0  # far below uniform


def test_attention_is_causal() -> None:
    model = _tiny("kronecker", zero_init=False)
    idx = torch.randint(256, (2, 16), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 256
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    with pytest.raises(EinspaceError, match="exceeds n_ctx = 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_mup_learning_rates_of_the_whole_model() -> None:
    model = _tiny("low_rank", d_model=64, base_width=32)
    lrs = {n: g["lr"] for g in model.optimizer_groups(1.0) for n in g["names"]}
    assert sorted(lrs) == sorted(n for n, _ in model.named_parameters())
    assert lrs["wte.weight"] == lrs["wpe.weight"] == 1.0  # input layers: O(1)
    assert lrs["lm_head.weight"] == pytest.approx(32 / 64)  # readout: base / fan_in
    assert lrs["h.0.ln_1.weight"] == lrs["ln_f.bias"] == 1.0
    q = model.h[0].attn.q
    fans = q.realization.fans  # low rank: (d_in, rank), (rank, d_out)
    for i, (fan_in, _) in enumerate(fans):
        assert lrs[f"h.0.attn.q.factors.{i}"] == pytest.approx((32 / 64) * (64 / fan_in) / 2)


def test_tied_readout_uses_the_embedding_with_a_width_multiplier() -> None:
    model = _tiny("dense", d_model=64, tied=True, base_width=32)
    assert model.lm_head is None and model.readout_mult == 0.5
    idx = torch.randint(256, (2, 8))
    with torch.no_grad():
        h = model.ln_f(model.h[1](model.h[0](model.wte(idx) + model.wpe(torch.arange(8)))))
        torch.testing.assert_close(model(idx), 0.5 * h @ model.wte.weight.T)
    names = [n for g in model.optimizer_groups(1.0) for n in g["names"]]
    assert names.count("wte.weight") == 1


def test_bad_configs_are_named() -> None:
    with pytest.raises(EinspaceError, match="not a multiple of d_head = 16; use d_model = 48"):
        GPTConfig("btt", d_model=50)
    with pytest.raises(EinspaceError, match="mode = 'exactly'"):
        GPTConfig("btt", d_model=32, mode="exactly")  # type: ignore[arg-type]
    with pytest.raises(EinspaceError, match="n_layer = 0"):
        GPTConfig("btt", d_model=32, n_layer=0)
    with pytest.raises(EinspaceError, match="unknown structure"):
        GPTConfig("btt2", d_model=32)


# ---------------------------------------------------------------------- sparse models
def _moe_tiny(structure: str, **kw: object) -> GPT:
    fields: dict[str, object] = {"d_model": 64, "n_layer": 2, "n_ctx": 16}
    fields.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(structure, **fields))  # type: ignore[arg-type]


def test_btt_moe_counts_by_hand() -> None:
    from einspace.nn import BTTMoE

    model = _moe_tiny("btt_moe:e=4,k=2")
    assert model.config.structure == "btt_moe(e=4, k=2)"
    layers = model.structured_layers()
    assert len(layers) == 12 and all(isinstance(m, BTTMoE) for m in layers.values())
    # experts: Monarch 64→64 is 8·8·8 twice = 1024 MACs; 64→256 and 256→64 8·8·16 + 8·16·16
    assert layers["h.0.mlp.fc"].monarch.sizes == {"α": 8, "γ": 8, "ε": 16, "φ": 16}
    square, up, down = 2 * 1024 + 64 * 4, 2 * 3072 + 64 * 4, 2 * 3072 + 256 * 4
    assert model.macs_breakdown()["projections"] == 2 * (4 * square + up + down)
    experts = 4 * (4 * 1024) + 4 * 3072 + 4 * 3072  # params = MACs for Monarch
    gates = 4 * 64 * 4 + 64 * 4 + 256 * 4
    assert model.num_params() == 2 * (experts + gates) + 5 * 2 * 64 + 64 * 256


def test_standard_moe_counts_by_hand() -> None:
    from search.lm import MoEMLP

    model = _moe_tiny("moe:e=4,k=2")
    assert isinstance(model.h[0].mlp, MoEMLP) and len(model.h[0].mlp.experts) == 4
    attn, mlp = 4 * 64 * 64, 2 * 64 * 256  # dense projections; one expert MLP
    assert model.macs_breakdown()["projections"] == 2 * (attn + 2 * mlp + 64 * 4)
    assert model.num_params() == 2 * (attn + 4 * mlp + 64 * 4) + 5 * 2 * 64 + 64 * 256


@pytest.mark.parametrize("structure", ["btt_moe:e=4,k=2", "moe:e=4,k=1"])
def test_sparse_forward_flops_are_the_active_macs(structure: str) -> None:
    """FlopCounterMode sees k of E experts and the router when only the selected experts run
    (the BTT-MoE layers on the per-expert loop; the standard MoE always gathers)."""
    from einspace.nn import BTTMoE

    model = _moe_tiny(structure)
    for m in model.modules():
        if isinstance(m, BTTMoE):
            m.dispatch = "sparse"
    with torch.no_grad():  # a random router so the tokens spread over the experts
        for m in model.moe_layers().values():
            m.gate.weight.normal_()
    idx = torch.randint(256, (2, 16), generator=torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(idx)
    assert counter.get_total_flops() == 2 * model.executed_macs_per_token() * idx.numel()


@pytest.mark.parametrize("structure", ["btt_moe:e=4,k=1", "moe:e=4,k=1"])
def test_aux_loss_load_and_router_mup(structure: str) -> None:
    model = _moe_tiny(structure, base_width=32)
    idx = torch.randint(256, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    # zero routers: uniform probabilities, so each layer's loss is 1 + 0.1 (log 4)²
    per_layer = 1 + 0.1 * math.log(4) ** 2
    assert float(model.aux_loss().detach()) == pytest.approx(0.01 * per_layer)
    loads = model.expert_load()
    assert len(loads) == len(model.moe_layers()) > 0
    assert all(sum(x) == pytest.approx(1.0) for x in loads.values())
    stats = model.moe_stats()
    assert set(stats) == {"aux_loss", "load_entropy", "load_entropy_min", "load_max", "collapsed"}
    # tied zero logits pick the same expert for every token: collapsed at init, k = 1
    assert stats["load_max"] == 1.0 and stats["collapsed"] == 1.0
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), idx.reshape(-1))
    (loss + model.aux_loss()).backward()
    gates = [m.gate.weight for m in model.moe_layers().values()]
    assert all(g.grad is not None and torch.any(g.grad != 0) for g in gates)
    lrs = {n: g["lr"] for g in model.optimizer_groups(1.0) for n in g["names"]}
    gate_name = next(iter(model.moe_layers())) + ".gate.weight"
    assert lrs[gate_name] == pytest.approx(32 / 64)  # a readout: lr · base_width / fan_in
    assert float(_tiny("dense").aux_loss()) == 0.0 and _tiny("dense").moe_stats() == {}


def test_sparse_specs_build_from_the_factory_and_bad_ones_are_named() -> None:
    model = build_gpt("btt_moe:e=4,k=1", 32, TextLM(n_ctx=8), n_layer=1)
    assert model.config.sparse is not None and model.config.sparse.experts == 4
    with pytest.raises(EinspaceError, match="k=3 exceeds e=2"):
        GPTConfig("moe:e=2,k=3", d_model=32)
    with pytest.raises(EinspaceError, match="aux_weight = -1"):
        GPTConfig("moe:e=2,k=1", d_model=32, aux_weight=-1)
