"""Sparse candidates (``btt_moe``, ``moe``) through the search: parsing, run identity, the
auxiliary loss in training, the routers' health per point, active compute in the store, the
collapse flag, and resume after ``kill -9`` (docs/moe.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from einspace.errors import EinspaceError
from einspace.moe import MoESpec
from einspace.nn import BTTMoE
from search.driver import run_search
from search.grid import collapsed_by_run
from search.models import ProxyMLP, build_model
from search.proxy import run_config
from search.proxy_config import ProxyConfig, make_config
from search.run_result import CurvePoint
from search.settings import RunSettings, parse_candidate, parse_structures, width_structure
from search.store import RunStore, run_id
from search.training import TrainingState, build_optimizer, seeded_model, train

pytestmark = pytest.mark.usefixtures("one_thread")

LM = RunSettings(
    task="lm",
    task_kwargs={"n_ctx": 8, "n_eval": 8},
    n_layer=1,
    d_head=16,
    batch_size=4,
    steps=8,
    eval_every=2,
)


# --------------------------------------------------------------------------- parsing


def test_sparse_specs_parse_as_candidates_with_labels_that_parse_back() -> None:
    found = parse_structures(["dense", "btt_moe:e=4,k=1", "moe(e=4, k=1)", "moe:e=4,k=1"])
    assert list(found) == ["dense", "btt_moe(e=4, k=1)", "moe(e=4, k=1)"]
    for label, candidate in found.items():
        assert parse_candidate(label) == candidate
    assert found["btt_moe(e=4, k=1)"] == MoESpec("btt_moe", 4, 1)
    assert str(width_structure(found["moe(e=4, k=1)"])) == "dense"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("btt_moe:e=4,k=5", r"k ?= ?5 exceeds e ?= ?4(?!.*or the sparse spec)"),
        ("low_rank_moe:e=4", "BTT-MoE only"),
        ("btt_moee:e=4", "did you mean .btt.*sparse spec .btt_moe:e=4,k=1."),
    ],
)
def test_a_bad_sparse_spec_is_named_in_the_error(spec: str, message: str) -> None:
    with pytest.raises(EinspaceError, match=message) as err:
        parse_structures(["dense", spec])
    assert spec.split(":")[0] in str(err.value)


def test_a_sparse_width_that_monarch_cannot_realize_names_the_candidate() -> None:
    with pytest.raises(EinspaceError, match=r"btt_moe\(e=4, k=1\).*width 13"):
        run_search(["btt_moe:e=4,k=1"], [13], settings=RunSettings(steps=2), dry_run=True)


# --------------------------------------------------------------------------- identity


def test_aux_weight_is_validated_with_its_flag_and_is_in_the_identity_of_sparse_runs() -> None:
    with pytest.raises(EinspaceError, match=r"--aux-weight -1\.0 must be .*nearest valid value"):
        ProxyConfig("btt_moe:e=4,k=1", 16, aux_weight=-1.0)
    with pytest.raises(EinspaceError, match="--aux-weight"):
        ProxyConfig("btt_moe:e=4,k=1", 16, aux_weight=math.nan)
    sparse = ProxyConfig("btt_moe:e=4,k=1", 16)
    assert sparse.structure == "btt_moe(e=4, k=1)"
    assert sparse.to_dict()["aux_weight"] == 0.01
    assert ProxyConfig.from_dict(sparse.to_dict()) == sparse
    heavier = replace(sparse, aux_weight=0.1)
    assert run_id(heavier.to_dict()) != run_id(sparse.to_dict())
    # a structure without routers: the weight cannot act, so it is not in the identity
    dense = ProxyConfig("dense", 16)
    assert "aux_weight" not in dense.to_dict()
    assert run_id(replace(dense, aux_weight=0.1).to_dict()) == run_id(dense.to_dict())


def test_the_mlp_proxy_refuses_the_standard_moe_naming_task() -> None:
    with pytest.raises(EinspaceError, match=r"--task 'mlp_regression'.*--task lm"):
        ProxyConfig("moe:e=4,k=1", 16)
    with pytest.raises(EinspaceError, match="--task lm"):
        ProxyMLP(8, 1, 16, 1, "moe:e=4,k=1")
    net = build_model(ProxyConfig("btt_moe:e=4,k=1", 16, depth=1))
    assert isinstance(net, ProxyMLP) and isinstance(net.hidden[0], BTTMoE)


# --------------------------------------------------------------------------- training


def _one_step(aux_weight: float) -> tuple[list[CurvePoint], torch.Tensor]:
    config = make_config(replace(LM, aux_weight=aux_weight, steps=1), "moe:e=4,k=1", 16)
    task = config.make_task()
    model = seeded_model(config, task)
    state = TrainingState()
    train(config, task, model, build_optimizer(model, config), state, per_step=1.0)
    return list(state.points.values()), model.h[0].mlp.gate.weight.detach()


def test_training_adds_the_aux_loss_but_logs_the_task_loss() -> None:
    """The readout starts at zero, so before the first update the logits are all 0 and the
    task loss is exactly ln 256, and only the auxiliary loss has a gradient on the routers:
    without it (weight 0) Adam leaves them at zero, with it they move."""
    points0, gate0 = _one_step(0.0)
    points1, gate1 = _one_step(0.01)
    # step 1's train_loss is the loss of the update of step 0: the task loss only
    for points in (points0, points1):
        assert [p.step for p in points] == [0, 1]
        assert points[1].train_loss == pytest.approx(math.log(256), abs=1e-6)
    extra0, extra1 = points0[0].extra, points1[0].extra
    assert extra0 is not None and extra1 is not None
    assert extra0["aux_loss"] == 0.0
    # 0.01 × (E · ⟨P, f⟩ + 0.1 · logsumexp(0)²) with P uniform: 0.01 × (1 + 0.1 (ln 4)²)
    assert extra1["aux_loss"] == pytest.approx(0.01 * (1 + 0.1 * math.log(4) ** 2), rel=1e-6)
    assert torch.count_nonzero(gate0) == 0
    assert torch.count_nonzero(gate1) > 0


def test_points_log_the_routers_health_and_dense_points_log_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    for spec in ("dense", "btt_moe:e=4,k=1"):
        assert run_config(make_config(LM, spec, 16), store=store).status == "finished"
    points = store.points()
    by_structure = dict(tuple(points.groupby("structure")))
    assert by_structure["dense"]["extra"].isna().all()
    extras = by_structure["btt_moe(e=4, k=1)"]["extra"].tolist()
    for extra in extras:
        assert {"aux_loss", "load_entropy", "load_max", "collapsed"} <= set(extra)
        assert 0.0 <= extra["load_entropy"] <= 1.0 and 0.25 <= extra["load_max"] <= 1.0
    # the zero-initialized gate ties every logit: the first point looks collapsed in every
    # layer, by construction (6 routed projections in the block)
    assert extras[0]["collapsed"] == 1.0 and extras[0]["load_max"] == 1.0


def test_collapsed_by_run_skips_step_zero_and_reads_the_last_point() -> None:
    import pandas as pd

    points = pd.DataFrame(
        {
            "run_id": ["b", "a", "a", "a", "c"],
            "step": [0, 10, 0, 5, 4],
            "extra": [{"collapsed": 1.0}, {"collapsed": 0.0}, {"collapsed": 1.0}, None, None],
        }
    )
    assert collapsed_by_run(points) == {"a": 0.0}


# --------------------------------------------------------------------------- compute


def test_the_store_counts_active_macs_and_all_params_of_a_standard_moe(tmp_path: Path) -> None:
    """By hand, d = 16, one block, n_ctx = 8, 256 bytes, E = 4 experts, k = 1:
    MACs/token: attention projections 4·16·16, one expert MLP 16·64 + 64·16, the router
    16·4, the readout 16·256, the causal attention scores 1·8·16;
    params: embeddings 256·16 + 8·16, three LayerNorms 3·2·16, attention 4·16·16, the router,
    4 experts and the readout."""
    store = RunStore(tmp_path / "runs.sqlite")
    run_config(make_config(replace(LM, steps=2), "moe:e=4,k=1", 16), store=store)
    points = store.points()
    macs = 4 * 256 + (16 * 64 + 64 * 16) + 16 * 4 + 16 * 256 + 8 * 16
    params = 256 * 16 + 8 * 16 + 3 * 32 + 4 * 256 + 16 * 4 + 4 * 2048 + 16 * 256
    assert (points["macs_per_token"] == macs).all() and macs == 7360
    assert (points["params"] == params).all() and params == 17696
    assert points["compute"].iloc[-1] == 6 * macs * 8 * 4 * 2  # 6 · MACs · tokens · steps


def test_the_store_counts_a_btt_moe_lm_as_flop_counter_measures_it(tmp_path: Path) -> None:
    """Active MACs from the store against ``FlopCounterMode`` on the model with every
    BTT-MoE forced to run only its selected experts (matmul FLOPs = 2 × MACs); params
    against ``sum(p.numel())``. The counter sees the full masked score matrix: the store
    counts half of it (causal)."""
    store = RunStore(tmp_path / "runs.sqlite")
    config = make_config(replace(LM, steps=2), "btt_moe:e=4,k=2", 32)
    run_config(config, store=store)
    points = store.points()
    model = seeded_model(config, config.make_task())
    for layer in model.modules():
        if isinstance(layer, BTTMoE):
            layer.dispatch = "sparse"
    tokens = torch.randint(0, 256, (3, 8))
    with FlopCounterMode(display=False) as counter:
        model(tokens)
    attention_half = 1 * 8 * 32
    measured = counter.get_total_flops() / 2 / tokens.numel() - attention_half
    assert points["macs_per_token"].iloc[0] == measured
    assert points["params"].iloc[0] == sum(p.numel() for p in model.parameters())
    dense = make_config(replace(LM, steps=2), "dense", 32)
    run_config(dense, store=store)
    by = store.points().groupby("structure")[["macs_per_token", "params"]].first()
    # fewer active MACs than dense (k = 2 Monarch experts + routers), more parameters
    assert by.loc["btt_moe(e=4, k=2)", "macs_per_token"] < by.loc["dense", "macs_per_token"]
    assert by.loc["btt_moe(e=4, k=2)", "params"] < by.loc["dense", "params"] * 2


# --------------------------------------------------------------------------- search


def test_a_search_of_sparse_candidates_trains_and_flags_collapse(tmp_path: Path) -> None:
    result = run_search(
        ["dense", "btt_moe:e=4,k=1", "moe:e=4,k=1"],
        [16],
        settings=replace(LM, steps=4),
        store=str(tmp_path / "runs.sqlite"),
    )
    runs = result.runs.set_index("structure")
    assert set(runs["status"]) == {"finished"}
    assert math.isnan(runs.loc["dense", "collapsed"])
    for label in ("btt_moe(e=4, k=1)", "moe(e=4, k=1)"):
        assert 0.0 <= runs.loc[label, "collapsed"] <= 1.0


# --------------------------------------------------------------------------- kill -9


def test_a_btt_moe_lm_run_killed_with_sigkill_resumes_bit_identically(
    tmp_path: Path, kill_after_checkpoint: Callable[[dict[str, object], str, int], None]
) -> None:
    path = tmp_path / "runs.sqlite"
    config = make_config(replace(LM, steps=10), "btt_moe:e=4,k=1", 16, seed=3)
    kill_after_checkpoint(config.to_dict(), str(path), 4)  # kill -9 mid-run
    rid = run_id(config.to_dict())
    assert RunStore(path).runs().set_index("run_id").loc[rid, "status"] == "running"
    resumed = run_config(config, store=RunStore(path, lease_s=0))
    assert resumed.resumed_from == 4 and resumed.status == "finished"
    alone = run_config(config)
    assert resumed.points == alone.points  # losses, lr and the routers' stats, bit for bit
    assert all(p.extra is not None for p in alone.points)
    stored = RunStore(path).points(run_ids=[rid])
    assert stored["eval_loss"].tolist() == [p.eval_loss for p in alone.points]
    assert stored["extra"].tolist() == [p.extra for p in alone.points]


def test_the_search_prints_the_runs_whose_routers_collapsed() -> None:
    import io

    import pandas as pd
    from rich.console import Console

    from search.progress import print_collapsed

    runs = pd.DataFrame(
        {
            "structure": ["dense", "moe(e=4, k=1)", "moe(e=4, k=1)"],
            "width": [16, 16, 32],
            "seed": [0, 0, 0],
            "steps": [10, 10, 20],
            "collapsed": [math.nan, 0.5, 0.0],
        }
    )
    out = io.StringIO()
    print_collapsed(Console(file=out, width=200), runs)
    text = out.getvalue()
    assert "experts collapsed in 1 of 3 runs" in text
    assert "moe(e=4, k=1) @16 s0 10 steps (50% of layers)" in text and "@32" not in text
    quiet = io.StringIO()
    print_collapsed(Console(file=quiet), runs.assign(collapsed=0.0))
    assert quiet.getvalue() == ""
