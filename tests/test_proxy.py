"""Tests of search.proxy: compute accounting, reproducibility, divergence, checkpoints."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch

from einspace.errors import EinspaceError
from search.models import ProxyMLP
from search.proxy import proxy_run, run_config
from search.proxy_config import ProxyConfig
from search.run_result import CurvePoint
from search.store import RunStore, run_id

TINY = {"task_kwargs": {"n_eval": 64}, "batch_size": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def _store(tmp_path: Path, name: str = "runs.sqlite", **kwargs: float) -> RunStore:
    return RunStore(tmp_path / name, **kwargs)


# --------------------------------------------------------------------------- compute


def test_compute_is_six_macs_per_token_times_tokens_dense() -> None:
    # mlp_regression: d_in = 8, d_out = 1. Width 16, one dense hidden layer:
    # 8·16 (input) + 16·16 (hidden) + 16·1 (readout) = 400 MACs per example.
    result = proxy_run("dense", width=16, steps=3, depth=1, eval_every=1, batch_size=4, **_kw())
    assert result.macs_per_token == 400
    assert [p.compute for p in result.points] == [0.0, 9600.0, 19200.0, 28800.0]  # 6·400·4·s


def test_compute_hand_count_btt() -> None:
    # BTT(r=1/4) at 16: α = γ = ε = φ = 4, ρ = 2. A (α γ φ ρ) costs 4·4·4·2 = 128 MACs, then
    # B (γ ε φ ρ) another 128: 256 per hidden layer. Two hidden layers: 128 + 512 + 16 = 656.
    result = proxy_run("btt", width=16, steps=2, depth=2, eval_every=2, batch_size=5, **_kw())
    assert result.macs_per_token == 656
    assert result.points[-1].compute == 6 * 656 * 5 * 2
    model = ProxyMLP(8, 1, 16, 2, "btt")
    params = 8 * 16 + 16 + 2 * (128 + 128 + 16) + 16 + 1  # weights + biases
    assert result.params == params == sum(p.numel() for p in model.parameters())


def test_forward_flops_match_the_count() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    for spec in ("dense", "monarch", "btt"):
        model = ProxyMLP(8, 1, 16, 2, spec)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.randn(4, 8))
        assert counter.get_total_flops() == 2 * 4 * model.macs(4), spec


def _kw() -> dict[str, object]:
    return {"task_kwargs": {"n_eval": 64}}


# --------------------------------------------------------------------------- runs


def test_same_seed_same_curve_other_seed_other_curve() -> None:
    a = proxy_run("monarch", width=16, steps=6, eval_every=2, seed=3, **TINY)
    b = proxy_run("monarch", width=16, steps=6, eval_every=2, seed=3, **TINY)
    c = proxy_run("monarch", width=16, steps=6, eval_every=2, seed=4, **TINY)
    assert a.points == b.points
    assert a.points != c.points
    assert a.status == "finished" and len(a.points) == 4
    assert all(p.train_loss is not None and math.isfinite(p.train_loss) for p in a.points)


def test_global_rng_is_untouched() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    proxy_run("dense", width=8, steps=2, eval_every=1, **TINY)
    assert torch.equal(torch.get_rng_state(), before)


def test_diverging_run_is_recorded_with_its_last_good_point(tmp_path: Path) -> None:
    store = _store(tmp_path)
    result = proxy_run("dense", width=16, steps=20, eval_every=1, lr=1e6, store=store, **TINY)
    assert result.status == "diverged"
    assert result.error is not None and "step" in result.error
    assert result.points and result.points[0].step == 0
    runs = store.runs()
    assert runs["status"].tolist() == ["diverged"]
    stored = store.points()
    assert stored["step"].tolist() == [p.step for p in result.points]
    assert int(runs["last_step"].iloc[0]) > result.points[-1].step
    again = proxy_run("dense", width=16, steps=20, eval_every=1, lr=1e6, store=store, **TINY)
    assert again.cached and again.status == "diverged" and again.trained_steps == 0


def test_store_lifecycle_and_cached_result(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = proxy_run("btt", width=16, steps=6, eval_every=3, store=store, sweep="s", **TINY)
    assert first.status == "finished" and not first.cached and first.trained_steps == 6
    runs = store.runs()
    assert runs["status"].tolist() == ["finished"]
    assert runs["structure"].tolist() == ["btt(r=0.25)"]
    assert runs["run_id"].tolist() == [first.run_id]
    assert store.load_checkpoint(first.run_id) is None  # dropped on finish
    second = proxy_run("btt:r=0.25", width=16, steps=6, eval_every=3, store=store, **TINY)
    assert second.cached and second.trained_steps == 0
    assert second.points == first.points


def test_resume_from_checkpoint_is_bitwise_identical(tmp_path: Path) -> None:
    kwargs = {"width": 16, "steps": 24, "eval_every": 3, "checkpoint_every": 6, **TINY}
    reference = proxy_run("btt", store=_store(tmp_path, "ref.sqlite"), **kwargs)

    def interrupt_at_15(point: CurvePoint) -> None:
        if point.step == 15:
            raise KeyboardInterrupt

    path = tmp_path / "resume.sqlite"
    with pytest.raises(KeyboardInterrupt):
        proxy_run("btt", store=RunStore(path), on_point=interrupt_at_15, **kwargs)
    runs = RunStore(path).runs()
    assert runs["status"].tolist() == ["running"]  # left to be resumed
    # lease 0: this live process's own stale claim may be taken over (as by a new process)
    resumed = proxy_run("btt", store=RunStore(path, lease_s=0), **kwargs)
    assert resumed.resumed_from == 12
    assert resumed.trained_steps == 12
    assert resumed.status == "finished"
    assert resumed.points == reference.points
    stored = RunStore(path).points()
    assert stored["step"].tolist() == [p.step for p in reference.points]
    assert stored["eval_loss"].tolist() == [p.eval_loss for p in reference.points]
    assert RunStore(path).runs()["attempt"].tolist() == [2]


def test_checkpoint_blob_loads_weights_only(tmp_path: Path) -> None:
    store = _store(tmp_path)

    def stop(point: CurvePoint) -> None:
        if point.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        proxy_run(
            "dense",
            width=8,
            steps=8,
            eval_every=2,
            checkpoint_every=2,
            store=store,
            on_point=stop,
            **TINY,
        )
    rid = store.runs()["run_id"].iloc[0]
    saved = store.load_checkpoint(rid)
    assert saved is not None and saved[0] == 4
    state = torch.load(io.BytesIO(saved[1]), weights_only=True)
    assert {"step", "model", "optimizer", "window", "rng_cpu"} <= set(state)


def test_pruned_by_callback_is_stored_finished(tmp_path: Path) -> None:
    store = _store(tmp_path)
    result = proxy_run(
        "dense",
        width=8,
        steps=10,
        eval_every=2,
        store=store,
        on_point=lambda p: p.step >= 4,
        **TINY,
    )
    assert result.status == "pruned"
    assert [p.step for p in result.points] == [0, 2, 4]
    assert store.runs()["status"].tolist() == ["finished"]


def test_error_during_training_marks_failed_and_returns(tmp_path: Path) -> None:
    store = _store(tmp_path)

    def boom(point: CurvePoint) -> None:
        if point.step == 2:
            raise RuntimeError("out of memory")

    result = proxy_run("dense", width=8, steps=4, eval_every=1, store=store, on_point=boom, **TINY)
    assert result.status == "failed" and "out of memory" in (result.error or "")
    assert store.runs()["status"].tolist() == ["failed"]


# --------------------------------------------------------------------------- config


def test_config_round_trip_and_run_id() -> None:
    cfg = ProxyConfig("btt", width=16, steps=4, eval_every=2, **TINY)  # type: ignore[arg-type]
    data = cfg.to_dict()
    assert data["kind"] == "proxy" and data["structure"] == "btt(r=0.25)"
    assert ProxyConfig.from_dict(data) == cfg
    assert run_config(data).run_id == run_id(data)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "mlp_regresion"}, "did you mean 'mlp_regression'"),
        ({"width": 0}, "width"),
        ({"lr": -1.0}, "lr"),
        ({"mode": "exactly"}, "did you mean 'exact'"),
        ({"structure": "bttt"}, "unknown structure name"),
        ({"steps": 0}, "steps = 0 must be an integer ≥ 1; the nearest valid value is steps = 1"),
    ],
)
def test_bad_config_raises(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"structure": "btt", "width": 16, "steps": 4}
    with pytest.raises(EinspaceError, match=match):
        ProxyConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_unrealizable_width_raises_before_training(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(EinspaceError, match="pad_tol"):
        proxy_run(
            "(0.3|0.3|0.4|0.2|0.3|0.5|0.2)", width=16, steps=2, store=store, mode="round", **TINY
        )
    assert store.runs().empty


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(EinspaceError, match="CUDA is not available"):
        proxy_run("dense", width=8, steps=1, device="cuda", **TINY)


@pytest.mark.parametrize("kind", ["path", "url"])
def test_store_may_be_a_path_or_a_url(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "runs.sqlite"
    target: str | Path = path if kind == "path" else f"sqlite:///{path}"
    first = proxy_run("dense", width=8, steps=4, eval_every=2, store=target, **TINY)
    assert first.status == "finished" and not first.cached
    again = run_config(first.config, store=str(target))
    assert again.cached and again.points == first.points
    with RunStore(path) as store:
        assert store.runs()["status"].tolist() == ["finished"]
    with pytest.raises(EinspaceError, match="store must be a RunStore, or a path or URL"):
        proxy_run("dense", width=8, steps=4, store=3, **TINY)  # type: ignore[arg-type]


def test_search_command_refuses_zero_steps(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from einspace.cli import app

    store = tmp_path / "runs.sqlite"
    out = CliRunner().invoke(
        app,
        [
            "search",
            "dense",
            "--widths",
            "8",
            "--steps",
            "0",
            "--store",
            str(store),
            "--no-progress",
        ],
    )
    assert out.exit_code == 2
    assert "steps = 0 must be an integer ≥ 1; the nearest valid value is steps = 1" in out.output
    assert "Traceback" not in out.output
    assert not store.exists() or RunStore(store).runs().empty
