"""What the CLI prints: every k = 3 family in CSV without sympy, tables that fit an
80-column terminal with whole numbers, CSV in a pipe, --top only for tables, rounded floats."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from einspace import Structure, enumerate_realizations
from einspace.cli import app
from search import score

runner = CliRunner()
NOISE = re.compile(r"\d\.\d*(?:0000\d|9999\d)")  # 0.09999999999999999, 0.30000000000000004


def run(*args: str, columns: int | None = None) -> str:
    env = {"COLUMNS": str(columns)} if columns else None
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_k3_csv_lists_every_family_without_sympy(monkeypatch: pytest.MonkeyPatch) -> None:
    import sympy

    from einspace.family import Family

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the k = 3 listing must not build sympy forms")

    monkeypatch.setattr(sympy, "simplify", forbidden)
    monkeypatch.setattr(Family, "symbolic", forbidden)
    out = run("enumerate", "--factors", "3", "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    assert len(frame) == 40378  # --top not given: every row, not the table's 20
    assert frame["nu_symbolic"].notna().all() and frame["psi_symbolic"].notna().all()
    assert not NOISE.search(out)
    # no timing assert: 7-8 s alone on this 2-core machine, 30 s under a loaded `make test`


def test_k3_table_shows_the_first_rows_and_says_so() -> None:
    out = run("enumerate", "--factors", "3", "--format", "table", columns=80)
    assert "first 20 of 40378 rows" in out and "--format csv" in out
    assert "…" not in out


def test_top_applies_to_csv_only_when_given() -> None:
    everything = score("all", 64, 64)
    out = run("score", "--d-in", "64", "--format", "csv")
    assert len(pd.read_csv(io.StringIO(out))) == len(everything) > 20
    out = run("score", "--d-in", "64", "--format", "csv", "--top", "3")
    assert list(pd.read_csv(io.StringIO(out))["candidate"]) == list(everything["candidate"][:3])
    out = run("score", "--d-in", "64", "--format", "json", "--top", "2")
    assert len(json.loads(out)) == 2


def test_not_a_terminal_prints_csv_by_default() -> None:
    out = run("score", "--d-in", "1024", "-c", "dense", "-c", "monarch")  # CliRunner: a pipe
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame["candidate"]) == ["monarch", "dense"]
    assert "┃" not in out


def test_floats_are_rounded_in_csv_and_json() -> None:
    for args in (
        ("enumerate", "--factors", "2", "--format", "csv"),
        ("enumerate", "--d-in", "96", "--format", "csv"),
        ("score", "--d-in", "96", "--format", "csv"),
        ("score", "--d-in", "96", "--format", "json"),
        ("show", "btt:r=0.3", "--d-in", "96", "--format", "json"),
    ):
        out = run(*args)
        assert not NOISE.search(out), (args, NOISE.search(out))
    frame = pd.read_csv(io.StringIO(run("score", "--d-in", "96", "--format", "csv")))
    exact = score("all", 96, 96)
    assert (frame["omega_eff"] - exact["omega_eff"]).abs().max() < 1e-6


TABLES = [
    ("show", "btt:r=0.25", "--d-in", "1024"),
    ("show", "xA=0.5,xB=0.5,Ay=0.5,By=0.5", "--d-in", "4096", "--d-out", "11008"),
    ("score", "--d-in", "1024", "-c", "dense", "-c", "btt", "-c", "monarch"),
    ("score", "--d-in", "4096", "--d-out", "11008", "--budget", "1/8", "--objective", "fill"),
    ("enumerate", "--d-in", "1024", "--d-out", "4096", "--sort", "macs_sequential"),
    ("enumerate", "--factors", "2"),
]


@pytest.mark.parametrize("args", TABLES, ids=lambda a: " ".join(a[:3]))
def test_tables_fit_80_columns_without_cutting_numbers(args: tuple[str, ...]) -> None:
    out = run(*args, "--format", "table", columns=80)
    assert "…" not in out
    assert max(cell_len(line) for line in out.splitlines()) <= 80
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert rows
    if args[0] == "score":
        d_in = int(args[2])
        d_out = int(args[args.index("--d-out") + 1]) if "--d-out" in args else d_in
        cands = [a for i, a in enumerate(args) if i and args[i - 1] == "-c"] or "all"
        budget = args[args.index("--budget") + 1] if "--budget" in args else None
        objective = args[args.index("--objective") + 1] if "--objective" in args else "prior"
        top = score(cands, d_in, d_out, budget_macs=budget, objective=objective).head(20)
        cells = [c.strip() for line in rows for c in line.strip("│").split("│")]
        for value in (*top["params"], *top["macs"]):
            assert str(int(value)) in cells  # a whole number in a cell of its own
    if args[0] == "enumerate" and "--d-in" in args:
        table = enumerate_realizations(1024, 4096).sort_values("macs_sequential", kind="mergesort")
        cells = [c.strip() for line in rows for c in line.strip("│").split("│")]
        for value in table["macs_sequential"].head(20):
            assert str(int(value)) in cells
    if args[0] == "show":
        r = Structure.parse(args[1]).realize(int(args[3]), int(args[-1]))
        assert re.search(rf"│ params\s+│ {r.params}\s", out)
        assert re.search(rf"│ macs_sequential\s+│ {r.macs()}\s", out)


def test_left_out_columns_are_named_and_can_be_picked() -> None:
    out = run("score", "--d-in", "1024", "-c", "dense", "--format", "table", columns=80)
    note = out.split("left out to fit 80 columns:")[1]
    assert "omega_eff" in note and "--columns" in note
    assert "omega_eff" not in out.split("left out")[0]
    out = run(
        "score",
        "--d-in",
        "1024",
        "-c",
        "dense",
        "--format",
        "table",
        "--columns",
        "candidate,omega_eff",
        columns=80,
    )
    assert "omega_eff" in out and "left out" not in out and "params" not in out
    out = run("score", "--d-in", "1024", "-c", "dense", "--columns", "macs,candidate")
    assert out.splitlines()[0] == "macs,candidate"
    bad = runner.invoke(app, ["score", "--d-in", "64", "--columns", "omega"])
    assert bad.exit_code == 2 and "'omega' is not a column" in bad.output


def test_search_in_a_pipe_prints_plain_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a terminal: no live display's last frame (progress rows), every status line ends
    before the next table's title, θ points are not cut."""
    monkeypatch.chdir(tmp_path)
    args = ["search", "dense", "--widths", "16", "--steps", "40", "--eval-every", "20"]
    out = run(*args, "--trials", "2", "--theta-width", "16", "--store", "runs.sqlite")
    lines = out.splitlines()
    assert not any(re.match(r"\s*(w\d|worker \d|grid\s+━)", line) for line in lines), out
    # the final grid (dense and the promoted θ points) starts on a line of its own
    [runs] = [int(m.group(1)) for line in lines if (m := re.match(r"runs: (\d+) finished", line))]
    assert runs >= 2 and f"grid: {runs} to do with 1 worker(s)" in lines
    assert sum("best so far" in line for line in lines) == 1
    for line in lines:
        if line.startswith("runs: "):
            assert "trials (" not in line and "scaling laws" not in line, line
    assert "…" not in out
