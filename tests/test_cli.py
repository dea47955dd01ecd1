"""The einspace CLI: outputs agree with the API; bad input exits 2 with a clear message."""

from __future__ import annotations

import io
import json

import pandas as pd
from typer.testing import CliRunner

from einspace import Structure, enumerate_families, enumerate_realizations
from einspace.cli import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_help_lists_commands() -> None:
    out = run("--help")
    for command in ("enumerate", "show", "score", "report"):
        assert command in out
    assert "--factors" in run("enumerate", "--help")


def test_enumerate_families_csv_matches_api() -> None:
    frame = pd.read_csv(io.StringIO(run("enumerate", "--factors", "2", "--format", "csv")))
    fams = enumerate_families(2)
    assert len(frame) == 39
    assert list(frame["family"]) == [str(f) for f in fams]
    btt = frame[frame["name"] == "btt"].iloc[0]
    s = Structure.balanced(btt["family"])
    assert (btt["nu"], btt["omega"], btt["psi"]) == (s.nu, s.omega, s.psi)
    assert btt["nu_symbolic"] == "Max(-α + ρ + 2, -ε + ρ + 2) - 1"  # 1 + ρ − min(α, ε)


def test_enumerate_counts_for_all_spaces() -> None:
    out = run("enumerate", "-k", "1", "--diagonal", "--format", "json")
    assert [r["family"] for r in json.loads(out)] == [
        str(f) for f in enumerate_families(1, diagonal=True)
    ]
    n = len(enumerate_families(2, True, True))
    out = run("enumerate", "-k", "2", "--diagonal", "--modulo-transpose", "--format", "table")
    assert f"{n} valid families" in out
    assert f"first 20 of {n} rows" in out
    out = run("enumerate", "-k", "2", "--diagonal", "--modulo-transpose")  # not a terminal: CSV
    assert len(pd.read_csv(io.StringIO(out))) == n


def test_enumerate_realizations_sorted_top() -> None:
    out = run("enumerate", "--d-in", "64", "--sort", "params:desc", "--top", "3", "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    table = enumerate_realizations(64, 64)
    assert list(frame["params"]) == sorted(table["params"], reverse=True)[:3]


def test_show_prints_every_metric() -> None:
    out = run("show", "btt:r=0.25", "--d-in", "1024", "--format", "json")
    info = json.loads(out)
    r = Structure.named("btt", r=0.25).realize(1024, 1024)
    assert info["params"] == r.params == 393216
    assert info["macs_sequential"] == r.macs()
    assert info["rank_bound"] == info["rank"] == 1024 and info["rank_method"] == "proof"
    assert "numeric_rank" not in info
    assert info["macs_optimal"] == r.macs("optimal")
    assert info["nu_eff"] == round(r.nu_eff, 6) and info["psi_eff"] == 1.0  # 6 digits
    assert info["fans (in, out)"] == [[32, 192], [192, 32]]  # n_α → n_φ·n_ρ; n_γ·n_ρ → n_ε
    assert info["ν"] == 0.75 and info["ω"] == 0.0 and info["ψ"] == 1.0
    table = run("show", "(0.5|0|0.5|0|0.5|0.5|0)", "--format", "table")
    assert "monarch" in table
    table = run("show", "btt:r=0.25", "--d-in", "1024", "--format", "table")
    assert "1024 (proof: a lower bound meets the min-cut)" in table
    low = run("show", "low_rank:r=0.25", "--d-in", "4096", "--d-out", "4100", "--format", "json")
    assert (
        json.loads(low)["rank_method"]
        == Structure.parse("low_rank:r=0.25").realize(4096, 4100).rank_method
    )


def test_score_ranks_and_reports_prior() -> None:
    out = run(
        "score",
        "--d-in",
        "1024",
        "-c",
        "dense",
        "-c",
        "monarch",
        "-c",
        "low_rank",
        "--format",
        "csv",
    )
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame["candidate"]) == ["monarch", "dense", "low_rank(r=0.5)"]
    assert frame["why"].str.contains("full rank").sum() == 2


def test_bad_input_exits_2_with_message() -> None:
    cases = [
        (["show", "bt"], "did you mean 'btt'"),
        (["show", "(0.5|0.5|0|0.5|0.5|0)"], "has 6 entries; expected 7"),
        (
            ["show", "btt", "--d-in", "0"],
            "--d-in = 0 must be a width ≥ 1; the nearest valid value is --d-in 1",
        ),
        (["score", "--d-in", "64", "--d-out", "-2"], "--d-out = -2 must be a width ≥ 1"),
        (["score", "--factors", "3", "--d-in", "64"], "use smaller --d-in/--d-out or --factors"),
        (
            ["enumerate", "--factors", "4", "--sample", "3", "--seed", "-1"],
            "--seed = -1 must be an integer ≥ 0",
        ),
        (["enumerate", "--factors", "4"], "sample_families(4"),
        (["enumerate", "--sort", "nope"], "--sort 'nope' is not a column"),
        (["score", "--d-in", "1024", "-c", "dense", "--objective", "bset"], "unknown objective"),
        (["show", "monarch", "--d-in", "1021", "--mode", "exact"], "1020, 1022"),
        (["show", "xA=0.5,xQ=0.5,Ay=1"], "names factor 'Q', but the classes name 2 factor(s)"),
        (["show", "xA=0.5,xQ=0.5,Ay=1"], "lettered A, B in order"),
        (["show", "xA=1,Ay=0.5,ACy=0.5"], "names factor 'C'"),
        (
            ["search", "dense", "--trials", "1", "--max-compute-ratio", "0"],
            "0.0 must be a positive",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output


def test_file_system_errors_are_one_line_naming_the_path() -> None:
    """Issue 17: these ended in raw tracebacks."""
    for args, flag in (
        (["coord-check", "dense", "--widths", "8,16", "--out", "/proc/einspace-x"], "--out"),
        (["search", "--store", "/proc/einspace-x/runs.sqlite", "--widths", "16"], "--store"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        text = " ".join(result.output.split())
        assert f"{flag} '/proc/einspace-x': cannot create the folder" in text
    assert "raise max_rows" not in " ".join(
        runner.invoke(app, ["score", "--factors", "3", "--d-in", "64"]).output.split()
    )
