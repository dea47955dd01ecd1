"""replace_linear on an MLP, a transformer block and transformers' GPT-2, Llama and BERT
(built from small configs, no weights): forward still runs, counts as reported."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

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
    assert summary.weights_before == summary.macs_before == 2 * 262144
    assert summary.weights_after == 196608 and summary.macs_after == 196608
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 196608 + 1024 + (256 * 10 + 10)  # factors + kept biases + head
    assert summary.params_after == n_params
    assert summary.params_before == 2 * 262144 + 1024 + 2570  # layer 2 has no bias
    assert summary.skipped == [
        ("3", "not selected (select='all_but_last' keeps the last linear layer)")
    ]
    assert model(torch.randn(7, 256)).shape == (7, 10)
    assert "model params 527882→200202" in str(summary)
    assert "weights 524288→196608" in str(summary)


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
    assert summary.weights_after == 2 * 3072 and summary.macs_after == 2 * 3072
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
    with pytest.raises(EinspaceError, match=r"no linear layer \(nn\.Linear or transformers"):
        replace_linear(nn.Sequential(nn.ReLU()), "monarch")
    with pytest.raises(EinspaceError, match="select = 'some'"):
        replace_linear(mlp(), "monarch", select="some")  # type: ignore[arg-type]
    with pytest.raises(EinspaceError, match="dtype is taken from each replaced layer"):
        replace_linear(mlp(), "monarch", dtype=torch.float64)


def test_callable_select_lists_unselected() -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    summary = replace_linear(model, "monarch", select=lambda name, _: name == "0")
    assert summary.skipped == [("1", "not selected (select returned False)")]
    with pytest.raises(EinspaceError, match=r"2 linear layer\(s\) \(2 nn\.Linear\), 0 selected"):
        replace_linear(
            nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)), "monarch", select=lambda *_: False
        )


def tied_head() -> nn.ModuleDict:
    torch.manual_seed(0)
    model = nn.ModuleDict(
        {"emb": nn.Embedding(100, 64), "mid": nn.Linear(64, 64), "head": nn.Linear(64, 100)}
    )
    model["head"].weight = model["emb"].weight  # (100, 64) both
    return model


def test_tied_weights_skipped_by_default_and_untie() -> None:
    model = tied_head()
    total = sum(p.numel() for p in model.parameters())
    assert total == 100 * 64 + 64 * 64 + 64 + 100  # the shared weight once
    summary = replace_linear(model, "low_rank:r=0.5")
    assert [r.name for r in summary.replaced] == ["mid"]
    assert summary.skipped[0][0] == "head" and "emb.weight" in summary.skipped[0][1]
    assert "untie=True" in summary.skipped[0][1] and "head" in summary.notes[0]
    assert model["head"].weight is model["emb"].weight
    assert summary.params_before == total
    assert summary.params_after == sum(p.numel() for p in model.parameters())
    assert summary.params_after == total - 64 * 64 + 2 * 64 * 8  # low rank 8 = 64^0.5

    model = tied_head()
    summary = replace_linear(model, "low_rank:r=0.5", untie=True)
    assert [r.name for r in summary.replaced] == ["mid", "head"]
    assert any("untied from emb.weight" in n for n in summary.notes)
    assert isinstance(model["head"], EinsumLinear)
    # the embedding keeps its dense weight; the head's factors are new parameters: it grows
    head = model["head"].params  # 64→100 low rank: rank round(64^0.5) = 8 → 8·(64 + 100)
    assert head == 8 * (64 + 100)
    assert summary.params_after == total - 64 * 64 + 2 * 64 * 8 + head
    assert summary.params_after == sum(p.numel() for p in model.parameters())


def test_module_registered_twice_is_replaced_everywhere() -> None:
    shared = nn.Linear(32, 32)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    summary = replace_linear(model, "monarch")
    assert [r.name for r in summary.replaced] == ["0"]
    assert model[0] is model[2] and isinstance(model[0], EinsumLinear)
    assert "0, 2" in summary.notes[0]
    assert summary.params_after == sum(p.numel() for p in model.parameters())


def test_core_surgery_does_not_import_transformers() -> None:
    code = (
        "import sys, torch; from einspace.nn import replace_linear; "
        "replace_linear(torch.nn.Sequential(torch.nn.Linear(16, 16)), 'monarch'); "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------- transformers models
needs_hf = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="transformers is not installed (pip install -e '.[test]')",
)


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=256, n_head=4)).eval()


PROJECTIONS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


@needs_hf
def test_gpt2_replaces_conv1d_and_keeps_the_tied_head() -> None:
    model = gpt2()
    ids = torch.randint(0, 50257, (2, 8))
    before = sum(p.numel() for p in model.parameters())
    summary = replace_linear(model, "btt:r=0.25")
    names = [f"transformer.h.{i}.{p}" for i in range(2) for p in PROJECTIONS]
    assert [r.name for r in summary.replaced] == names
    assert {r.kind for r in summary.replaced} == {"transformers Conv1D"}
    # (d_in, d_out) read from the transposed (nx, nf) weights
    assert [(r.d_in, r.d_out) for r in summary.replaced[:4]] == [
        (256, 768),
        (256, 256),
        (256, 1024),
        (1024, 256),
    ]
    assert summary.weights_before == 2 * 256 * (768 + 256 + 1024 + 1024)
    assert [n for n, _ in summary.skipped] == ["lm_head"]
    assert "transformer.wte.weight" in summary.skipped[0][1]
    assert model.lm_head.weight is model.transformer.wte.weight  # the tie is intact
    after = sum(p.numel() for p in model.parameters())
    assert (summary.params_before, summary.params_after) == (before, after)
    assert after == before - summary.weights_before + summary.weights_after < before
    for r in summary.replaced:  # Conv1D biases kept
        assert model.get_submodule(r.name).bias is not None
    out = model(ids).logits
    assert out.shape == (2, 8, 50257) and torch.isfinite(out).all()
    model.train()
    model(ids, labels=ids).loss.backward()
    assert model.transformer.h[0].attn.c_attn.factors[0].grad is not None


@needs_hf
def test_gpt2_untie_and_all_but_last() -> None:
    model = gpt2()
    before = sum(p.numel() for p in model.parameters())
    summary = replace_linear(model, "btt:r=0.25", untie=True)
    assert summary.replaced[-1].name == "lm_head" and len(summary.replaced) == 9
    assert any("untied from transformer.wte.weight" in n for n in summary.notes)
    assert not model.config.tie_word_embeddings
    model.tie_weights()  # would try to set lm_head.weight without forget_tie
    assert isinstance(model.lm_head, EinsumLinear)
    assert summary.params_after == sum(p.numel() for p in model.parameters())
    assert summary.params_after == before - summary.weights_before + summary.weights_after + (
        summary.replaced[-1].params_before  # the head's dense weight stays, as wte
    )
    assert model(torch.randint(0, 50257, (1, 4))).logits.shape == (1, 4, 50257)

    model = gpt2()
    summary = replace_linear(model, "monarch", select="all_but_last")
    assert len(summary.replaced) == 8
    assert summary.skipped == [
        ("lm_head", "not selected (select='all_but_last' keeps the last linear layer)")
    ]
    with pytest.raises(EinspaceError, match=r"8 transformers Conv1D, 1 nn\.Linear\), 0 selected"):
        replace_linear(gpt2(), "monarch", select=lambda *_: False)


@needs_hf
def test_conv1d_projection_respects_the_transpose() -> None:
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    x = torch.randn(5, 32, dtype=torch.float64)
    conv = Conv1D(48, 32).double()  # nf = 48 outputs, nx = 32 inputs: weight (32, 48)
    model = nn.Sequential(conv)
    ref = model(x)
    summary = replace_linear(model, "dense", project=True)
    assert (summary.replaced[0].d_in, summary.replaced[0].d_out) == (32, 48)
    assert summary.projection_errors["0"] < 1e-12
    torch.testing.assert_close(model(x), ref)
    torch.testing.assert_close(model[0].materialize(), conv.weight.T)

    square = Conv1D(64, 64).double()  # a transposition error would show on a square layer too
    with torch.no_grad():
        square.weight.copy_(torch.randn(64, 8).double() @ torch.randn(8, 64).double())
    x = torch.randn(5, 64, dtype=torch.float64)
    model = nn.Sequential(square)
    ref = model(x)
    summary = replace_linear(model, "low_rank:r=0.5", project=True)  # rank 8 = 64^0.5
    assert summary.projection_errors["0"] < 1e-10
    torch.testing.assert_close(model(x), ref)


@needs_hf
def test_gpt2_dense_projection_keeps_the_outputs() -> None:
    model = gpt2().double()
    ids = torch.randint(0, 50257, (2, 6))
    ref = model(ids).logits
    summary = replace_linear(model, "dense", project=True)
    assert len(summary.replaced) == 8
    assert max(summary.projection_errors.values()) < 1e-12
    torch.testing.assert_close(model(ids).logits, ref)


@needs_hf
def test_llama_and_bert() -> None:
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=1000,
        )
    )
    before = sum(p.numel() for p in llama.parameters())
    summary = replace_linear(llama, "btt")
    # 7 projections per layer (q, k, v, o, gate, up, down) and the untied head
    assert len(summary.replaced) == 15 and summary.skipped == []
    assert summary.replaced[-1].name == "lm_head"
    assert summary.params_before == before
    assert summary.params_after == sum(p.numel() for p in llama.parameters()) < before
    assert llama(torch.randint(0, 1000, (2, 5))).logits.shape == (2, 5, 1000)

    bert = BertForMaskedLM(
        BertConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            vocab_size=1000,
        )
    )
    before = sum(p.numel() for p in bert.parameters())
    summary = replace_linear(bert, "monarch")
    # q, k, v, attention output, intermediate, output per layer, and the head's transform
    assert len(summary.replaced) == 13
    assert summary.replaced[-1].name == "cls.predictions.transform.dense"
    assert [n for n, _ in summary.skipped] == ["cls.predictions.decoder"]  # tied to embeddings
    assert "bert.embeddings.word_embeddings.weight" in summary.skipped[0][1]
    assert summary.params_before == before
    assert summary.params_after == sum(p.numel() for p in bert.parameters()) < before
    assert bert(torch.randint(0, 1000, (2, 5))).logits.shape == (2, 5, 1000)


# ---------------------------------------------------------------------- BTT-MoE
def test_btt_moe_on_an_mlp() -> None:
    from einspace.nn import BTTMoE

    model = mlp()
    summary = replace_linear(model, "btt_moe:e=4,k=2", select="all_but_last", dispatch="sparse")
    assert summary.structure == "btt_moe(e=4, k=2)"
    assert isinstance(model[0], BTTMoE) and isinstance(model[2], BTTMoE)
    # 256 → 1024: Monarch α = γ = 16, ε = φ = 32; one expert 16·16·32 + 16·32·32 = 24576
    assert summary.replaced[0].params_after == 4 * 24576 + 256 * 4  # all experts + gate
    assert summary.replaced[0].macs_after == 2 * 24576 + 256 * 4  # 2 experts + gate
    assert summary.replaced[1].macs_after == 2 * 24576 + 1024 * 4
    assert summary.params_after == sum(p.numel() for p in model.parameters())
    assert model(torch.randn(5, 256)).shape == (5, 10)
    again = replace_linear(model, "monarch")  # the gates belong to the BTT-MoE layers
    assert [r.name for r in again.replaced] == ["3"]
    with pytest.raises(EinspaceError, match="not project=True"):
        replace_linear(mlp(), "btt_moe:e=4,k=2", project=True)
    with pytest.raises(EinspaceError, match="not normalize="):
        replace_linear(mlp(), "btt_moe:e=4,k=2", normalize=True)


@needs_hf
def test_gpt2_btt_moe_from_a_config() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from einspace.nn import BTTMoE

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=16)
    model = GPT2LMHeadModel(config)
    summary = replace_linear(model, "btt_moe:e=4,k=2")
    assert len(summary.replaced) == 8 and [n for n, _ in summary.skipped] == ["lm_head"]
    moes = [m for m in model.modules() if isinstance(m, BTTMoE)]
    assert len(moes) == 8
    c_proj = model.transformer.h[0].attn.c_proj  # 64 → 64: expert 8·8·8 · 2 = 1024 MACs
    assert isinstance(c_proj, BTTMoE) and c_proj.macs() == 2 * 1024 + 64 * 4
    assert summary.params_after == sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, 128, (2, 16))
    loss = model(ids, labels=ids).loss
    aux = sum(m.aux_loss for m in moes if m.aux_loss is not None)
    (loss + 0.01 * aux).backward()
    assert all(m.gate.weight.grad is not None for m in moes)
