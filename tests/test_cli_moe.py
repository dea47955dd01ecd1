"""``einspace show`` and ``score`` describe a sparse spec: total and active params, active
MACs with the gate, equal to a hand count and to FlopCounterMode on the layer."""

from __future__ import annotations

import io
import json

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from einspace.cli import app
from einspace.nn import BTTMoE

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_show_btt_moe_counts() -> None:
    info = json.loads(run("show", "btt_moe:e=8,k=2", "--d-in", "1024", "--format", "json"))
    # by hand: each expert is a Monarch 32·32·32 per factor = 65,536 MACs; 2 of 8 run; gate 1024·8
    assert info["active_macs"] == 2 * 65_536 + 8_192 == 139_264
    assert info["total_params"] == 8 * 65_536 + 8_192
    assert info["active_params"] == 2 * 65_536 + 8_192
    assert info["dense_macs"] == 1024 * 1024
    # what the selected-experts layer runs, counted by torch
    moe = BTTMoE(1024, 1024, experts=8, top_k=2, dispatch="sparse")
    with torch.no_grad():
        moe.gate.weight.normal_()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        moe(torch.randn(32, 1024))
    assert counter.get_total_flops() / 2 / 32 == info["active_macs"]
    table = run("show", "btt_moe:e=8,k=2", "--d-in", "1024", "--format", "table")
    assert "139264" in table and "532480" in table


def test_score_lists_active_counts() -> None:
    out = run("score", "--d-in", "1024", "-c", "btt_moe:e=8,k=2", "-c", "dense", "--format", "csv")
    frame = pd.read_csv(io.StringIO(out)).set_index("candidate")
    row = frame.loc["btt_moe(e=8, k=2)"]
    assert (row["params"], row["active_params"], row["macs"]) == (532_480, 139_264, 139_264)
    assert frame.loc["dense", "active_params"] == frame.loc["dense", "params"] == 1024**2
    args = ("score", "--d-in", "1024", "-c", "btt_moe:e=8,k=2", "--format", "table")
    table = runner.invoke(app, list(args), env={"COLUMNS": "80"}).stdout
    header = table.split("left out")[0]
    assert "active_params" in header and "139264" in header and "532480" in header


def test_bad_sparse_spec_exits_2() -> None:
    result = runner.invoke(app, ["show", "btt_moe:e=8,k=9", "--d-in", "1024"])
    assert result.exit_code == 2 and "k=9 exceeds e=8" in result.output
    result = runner.invoke(app, ["show", "moe:e=8,k=2", "--d-in", "64"])
    assert result.exit_code == 2 and "not a linear layer" in result.output
