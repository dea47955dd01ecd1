"""Budgets as people write them, the 'fill' objective, named structures tuned to a budget,
and score's --budget, --mode, --pad-tol and bad candidates on the command line."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from einspace import EinspaceError, Structure
from einspace.cli import app
from search import score
from search.budget import parse_budget, parse_compute_flops, tune_to_budget

runner = CliRunner()
DENSE = 4096 * 11008  # 45,088,768 MACs


@pytest.mark.parametrize(
    ("text", "macs"),
    [
        ("5636096", 5636096),
        (5636096, 5636096),
        ("5.6e6", 5_600_000),
        ("5.6M", 5_600_000),
        ("5.6 M MACs", 5_600_000),
        ("3k", 3000),
        ("2e9 flops", 1_000_000_000),  # 1 MAC = 2 FLOPs
        ("1.2 GFLOPs", 600_000_000),
        ("1/8", DENSE // 8),
        ("1/8x", DENSE // 8),
        ("0.125x", DENSE // 8),
        ("0.125×", DENSE // 8),
        ("12.5%", DENSE // 8),
        ("3/4", DENSE * 3 // 4),
    ],
)
def test_parse_budget(text: str | float, macs: int) -> None:
    assert parse_budget(text, 4096, 11008) == pytest.approx(macs, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lots", "'lots' is not a number of MACs or a fraction"),
        ("0.125", "for a fraction of dense write 0.125x"),
        ("1/0", "divides by zero"),
        ("-5", "is not a number"),
        ("0x", "must be positive"),
        ("5 parsecs", "e.g. 5.6e6, 5.6M"),
    ],
)
def test_bad_budget_names_the_value_and_examples(text: str, message: str) -> None:
    with pytest.raises(EinspaceError, match=message.replace(".", r"\.")) as err:
        parse_budget(text, 4096, 11008)
    assert repr(text) in str(err.value)


def test_fill_spends_the_budget_where_the_prior_saves() -> None:
    """4096 → 11008 at 1/8 of dense: the prior's top row spends ~1/51 of dense, fill's the
    budget itself (every row within budget and full rank ranks before any other)."""
    prior = score("all", 4096, 11008, budget_macs="1/8")
    fill = score("all", 4096, 11008, budget_macs="1/8", objective="fill")
    budget = DENSE / 8
    assert prior.iloc[0]["macs"] < budget / 4
    best = fill[fill["within_budget"] & fill["full_rank"]]["macs"].max()
    assert fill.iloc[0]["macs"] == best and fill.iloc[0]["full_rank"]
    assert fill.iloc[0]["budget_used"] == best / budget > 0.95
    assert "of the budget" in fill.iloc[0]["why"]
    gaps = (1 - fill["budget_used"]).abs()
    head = fill["within_budget"] & fill["full_rank"]
    assert head.iloc[: head.sum()].all()  # within budget and full rank first
    assert gaps[head].is_monotonic_increasing or (gaps[head].diff().dropna() >= -1e-9).all()
    with pytest.raises(EinspaceError, match="give one"):
        score(["dense"], 64, objective="fill")


@pytest.mark.parametrize("name", ["btt", "tt", "low_rank"])
def test_tuned_r_is_the_largest_that_fits(name: str) -> None:
    d_in, d_out, budget = 1024, 4096, 1_500_000
    tuned = tune_to_budget(name, d_in, d_out, budget)
    assert tuned.fits and tuned.realization.macs() <= budget
    # brute force over every rank size n = round(1024^r), independent of the bisection
    fits = []
    for n in range(1, 1025):
        r = max(math.log(n) / math.log(1024), 1e-9)
        real = Structure.named(name, r=r).realize(d_in, d_out)
        if real.macs() <= budget:
            fits.append(n)
    ranks = dict(zip(tuned.structure.family.names, tuned.realization.class_sizes, strict=True))
    assert ranks.get("ρ", 1) == max(fits)
    frame = score([name, "monarch"], d_in, d_out, budget_macs=budget)
    label = frame.loc[frame["candidate"].str.startswith(name), "candidate"].iloc[0]
    assert label == f"{tuned.structure} (tuned to budget)"
    fixed = score([f"{name}:r=0.25"], d_in, d_out, budget_macs=budget)["candidate"].iloc[0]
    assert "tuned" not in fixed


def test_tuning_says_when_nothing_fits() -> None:
    frame = score(["btt"], 1024, 1024, budget_macs=10)
    assert frame.iloc[0]["candidate"] == "btt(r=0) (smallest r; over budget)"
    assert not frame.iloc[0]["within_budget"]


def test_score_cli_budget_mode_pad_tol_and_bad_candidates() -> None:
    args = ["score", "--d-in", "4096", "--d-out", "11008", "--budget", "1/8", "--format", "csv"]
    result = runner.invoke(app, [*args, "-c", "btt", "-c", "nosuch", "-c", "bt", "-c", "dense"])
    assert result.exit_code == 0, result.output
    assert "skipped nosuch: unknown structure name" in result.stderr
    assert "skipped bt: unknown structure name 'bt'; did you mean 'btt'" in result.stderr
    frame = pd.read_csv(io.StringIO(result.stdout))
    tuned = tune_to_budget("btt", 4096, 11008, DENSE / 8)
    assert list(frame["candidate"]) == [f"{tuned.structure} (tuned to budget)", "dense"]
    assert list(frame["within_budget"]) == [True, False]
    none = runner.invoke(app, ["score", "--d-in", "64", "-c", "nosuch", "-c", "bt"])
    assert none.exit_code == 2 and "none of the 2 candidates" in none.output
    # --mode and --pad-tol reach the realization; the errors name the flags
    result = runner.invoke(app, ["score", "--d-in", "12", "-c", "kronecker"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "--mode exact" in text and "--pad-tol ≥" in text and "mode='exact'" not in text
    ok = runner.invoke(app, ["score", "--d-in", "12", "-c", "kronecker", "--mode", "exact"])
    assert ok.exit_code == 0 and "kronecker" in ok.stdout
    exact = Structure.named("kronecker").realize(12, 12, mode="exact")
    assert int(pd.read_csv(io.StringIO(ok.stdout))["params"].iloc[0]) == exact.params
    loose = runner.invoke(app, ["score", "--d-in", "12", "-c", "kronecker", "--pad-tol", "0.3"])
    assert loose.exit_code == 0, loose.output
    bad = runner.invoke(app, ["score", "--d-in", "64", "--budget", "1/zero"])
    assert bad.exit_code == 2 and "budget '1/zero'" in bad.output


@pytest.mark.parametrize(
    ("text", "flops"),
    [("2e9 flops", 2e9), ("5.6M macs", 11.2e6), ("1.5T FLOPs", 1.5e12), ("500G MAC", 1e12)],
)
def test_trial_budget_units_are_explicit(text: str, flops: float) -> None:
    assert parse_compute_flops(text) == pytest.approx(flops)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5.6M", "has no unit"),
        ("1e12", "has no unit"),
        ("1/8", "is not a compute with a unit"),
        ("0 flops", "must be positive"),
    ],
)
def test_trial_budget_refusals_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(EinspaceError, match=message) as err:
        parse_compute_flops(text)
    assert str(err.value).startswith(f"--trial-budget {text!r}")


def test_search_takes_trial_budget_and_refuses_a_bare_number() -> None:
    result = CliRunner().invoke(app, ["search", "--trial-budget", "5.6M", "--trials", "1"])
    assert result.exit_code != 0 and "has no unit (FLOPs or MACs?)" in result.output
