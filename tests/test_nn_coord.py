"""Tests of einspace.nn.coord: the coordinate check on the MLP and the LM proxy."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from einspace.errors import EinspaceError
from einspace.nn.coord import coord_check, coord_growth, plot_coord_check
from search.lm import GPT, build_gpt
from search.models import ProxyMLP
from search.tasks import get_task

# one setting for both parametrizations: 4 Adam steps at one base LR, widths 32 and 128
SETTINGS: dict[str, Any] = {"steps": 5, "lr": 2e-2, "batch_size": 64, "seeds": 2}
WIDTHS = [32, 128]


pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp(structure: str, width: int, task: Any) -> ProxyMLP:
    model = ProxyMLP(task.d_in, task.d_out, width, 2, structure)
    model.embed.mup_role = "input"  # type: ignore[assignment]
    model.readout.mup_role = "readout"  # type: ignore[assignment]
    return model


def _lm(structure: str, width: int, task: Any) -> GPT:
    return build_gpt(structure, width, task, n_layer=2)


@functools.cache
def _frame(kind: str, structure: str, parametrization: str) -> pd.DataFrame:
    if kind == "mlp":
        task, factory = get_task("mlp_regression", n_eval=64), _mlp
    else:
        task, factory = get_task("lm", n_ctx=16, n_eval=4), _lm
    return coord_check(
        structure,
        WIDTHS,
        model=factory,
        task=task,
        parametrization=parametrization,  # type: ignore[arg-type]
        **SETTINGS,
    )


@pytest.mark.parametrize("kind", ["mlp", "lm"])
@pytest.mark.parametrize("structure", ["dense", "btt", "monarch", "low_rank"])
def test_mup_does_not_grow_with_width_and_sp_does(kind: str, structure: str) -> None:
    mup = coord_growth(_frame(kind, structure, "mup"))
    sp = coord_growth(_frame(kind, structure, "sp"))
    assert len(mup) == len(sp) >= 4 * SETTINGS["steps"]  # every module, every step
    assert mup["ratio"].max() <= 2.0, mup.sort_values("ratio").tail(3)
    assert sp["ratio"].max() > 2.0, sp.sort_values("ratio").tail(3)  # so the check can fail
    if structure != "low_rank":  # flat both ways: within 2× from width 32 to 128
        # except the MLP's d → 1 readout at init: its spectral init σ = 1/d makes the output
        # RMS ∝ 1/√d before any update (by design; its updates are what μP keeps O(1))
        trained = mup[~((mup["layer"] == "readout") & (mup["step"] == 0))]
        assert trained["ratio"].min() >= 0.5, trained.sort_values("ratio").head(3)


def test_low_rank_shrinks_as_its_spectral_init_predicts() -> None:
    """A d → rank → d layer with the spectral init of docs: theory §4 passes a random input's RMS on
    scaled by √(rank / d); with rank = √d that shrinks with width (not a μP failure: the
    updates do not grow), so low rank is held to the predicted factor instead of 'flat'."""
    frame = _frame("lm", "low_rank", "mup")
    model_32, model_128 = _lm("low_rank", 32, None), _lm("low_rank", 128, None)
    rank = [m.h[0].mlp.fc.realization.sizes["ρ"] for m in (model_32, model_128)]
    assert rank == [round(32**0.5), round(128**0.5)]  # 6, 11
    predicted = math.sqrt((rank[1] / 128) / (rank[0] / 32))
    growth = coord_growth(frame).set_index(["layer", "step"])["ratio"]
    for layer in ("h.0.attn.q", "h.0.mlp.fc"):  # inputs are LayerNorm outputs (RMS 1)
        assert growth[(layer, 0)] == pytest.approx(predicted, rel=0.1)


def test_frame_layout_and_zero_initialized_layers() -> None:
    frame = _frame("lm", "btt", "mup")
    assert list(frame.columns) == ["width", "layer", "step", "rms"]
    assert sorted(frame["width"].unique()) == WIDTHS
    assert sorted(frame["step"].unique()) == list(range(SETTINGS["steps"]))
    assert frame.attrs["parametrization"] == "mup" and frame.attrs["base_width"] == 32
    at_init = frame[frame["step"] == 0].set_index(["width", "layer"])["rms"]
    for width in WIDTHS:  # μP zero-inits the readout and the residual output projections
        assert at_init[(width, "lm_head")] == 0.0
        assert at_init[(width, "h.0.attn.o")] == at_init[(width, "h.1.mlp.proj")] == 0.0
        assert at_init[(width, "h.0.attn.q")] > 0.1
    sp_init = _frame("lm", "btt", "sp")
    sp_init = sp_init[sp_init["step"] == 0].set_index(["width", "layer"])["rms"]
    assert sp_init[(32, "lm_head")] > 0.1  # standard init: nothing starts at zero
    assert (frame.groupby("width").size() == frame.groupby("width").size().iloc[0]).all()


def test_coord_check_is_reproducible_and_checks_its_input() -> None:
    task = get_task("mlp_regression", n_eval=64)
    a = coord_check("monarch", [16, 32], model=_mlp, task=task, steps=2)
    b = coord_check("monarch", [32, 16], model=_mlp, task=task, steps=2)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(EinspaceError, match="give at least two"):
        coord_check("dense", [32], model=_mlp, task=task)
    with pytest.raises(EinspaceError, match=r"parametrization = 'spp'.*did you mean 'sp'"):
        coord_check("dense", [16, 32], model=_mlp, task=task, parametrization="spp")  # type: ignore[arg-type]
    with pytest.raises(EinspaceError, match="steps = 0"):
        coord_check("dense", [16, 32], model=_mlp, task=task, steps=0)


def test_growth_ratio_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "width": [32, 64, 128, 32, 128, 32, 128],
            "layer": ["a", "a", "a", "b", "b", "c", "c"],
            "step": [0] * 7,
            "rms": [2.0, 3.0, 5.0, 0.0, 0.0, 0.0, 1.0],
        }
    )
    got = coord_growth(frame).set_index("layer")["ratio"].to_dict()
    assert got == {"a": 2.5, "b": 1.0, "c": math.inf}


def test_plot_writes_a_png(tmp_path: Path) -> None:
    frame = _frame("mlp", "btt", "mup")
    out = plot_coord_check(frame, tmp_path / "coord.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(EinspaceError, match=r"layer 'hiden\.0' is not in the frame"):
        plot_coord_check(frame, tmp_path / "x.png", layers=["hiden.0"])


def test_search_coord_check_builds_the_lm_as_the_cli_does() -> None:
    """search.coord_check(…, task="lm") equals einspace.nn.coord_check with the factory and
    task a proxy run builds by hand (RunSettings → build_model), value for value."""
    from search import coord_check as search_coord_check
    from search.models import build_model
    from search.proxy_config import make_config
    from search.settings import RunSettings

    kwargs = {"n_ctx": 16, "n_eval": 4}
    settings = RunSettings(task="lm", task_kwargs=kwargs, base_width=16)
    task = settings.make_task()
    by_hand = coord_check(
        "btt",
        [16, 32],
        model=lambda s, w, t: build_model(make_config(settings, str(s), w), task),
        task=task,
        steps=2,
        batch_size=4,
    )
    frame = search_coord_check(
        "btt", [32, 16], task="lm", task_kwargs=kwargs, steps=2, batch_size=4
    )
    assert any(name.startswith("blocks.") or "attn" in name for name in frame["layer"])
    pd.testing.assert_frame_equal(frame, by_hand)
