"""The parametric law against a known truth: the fit, the frontier, the multiplier, its
interval and the verdict (analysis.chinchilla, analysis.parametric, analysis.scaling)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import fit_table, format_multiplier
from analysis.chinchilla import ChinchillaFit, ComputeOptimal, MacsPerToken, fit_chinchilla
from analysis.parametric import finished_runs
from analysis.synthetic import (
    DEFAULT_STRUCTURES,
    SyntheticStructure,
    chinchilla_points,
    true_compute,
    true_multiplier,
)
from analysis.verdict import AHEAD, BEHIND, NOT_SEPARABLE, verdict, what_would_separate
from einspace import EinspaceError

BY_NAME = {s.name: s for s in DEFAULT_STRUCTURES}
CHINCHILLA = ChinchillaFit(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28)


def test_fit_recovers_the_law_from_exact_points() -> None:
    grid_n, grid_d = np.meshgrid(np.geomspace(1e5, 1e7, 5), np.geomspace(1e6, 1e9, 6))
    n, d = grid_n.ravel(), grid_d.ravel()
    fit = fit_chinchilla(n, d, CHINCHILLA.loss_at(n, d))
    assert pytest.approx(1.69, rel=1e-3) == fit.E
    assert pytest.approx(406.4, rel=1e-2) == fit.A
    assert fit.alpha == pytest.approx(0.34, abs=1e-3)
    assert pytest.approx(410.7, rel=1e-2) == fit.B
    assert fit.beta == pytest.approx(0.28, abs=1e-3)
    # a warm start from a nearby law lands on the same optimum
    near = ChinchillaFit(1.5, 300.0, 0.3, 500.0, 0.3)
    again = fit_chinchilla(n, d, CHINCHILLA.loss_at(n, d), start=near)
    assert again.alpha == pytest.approx(0.34, abs=2e-3)


def test_fit_refuses_too_few_points_and_bad_values() -> None:
    with pytest.raises(EinspaceError, match="at least 5"):
        fit_chinchilla([1e5] * 4, [1e6] * 4, [3.0] * 4)
    with pytest.raises(EinspaceError, match="loss must be positive"):
        fit_chinchilla([1e5] * 5, [1e6] * 5, [3.0, 3.0, 0.0, 3.0, 3.0])


def test_frontier_matches_chinchillas_closed_form() -> None:
    """With M = N (C = 6ND), Hoffmann et al.'s closed form: N_opt = G (C/6)^a,
    D_opt = (C/6)^b / G with a = β/(α+β), b = α/(α+β), G = (αA/(βB))^(1/(α+β))."""
    law = CHINCHILLA
    opt = ComputeOptimal(law, MacsPerToken([1e6], [1e6]))
    a = law.beta / (law.alpha + law.beta)
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    for c in (1e18, 1e21, 1e24):
        n, d = g * (c / 6) ** a, (c / 6) ** (1 - a) / g
        loss = float(law.loss_at(n, d))
        c_fit, n_fit, d_fit = opt.optimum(loss)
        assert c_fit == pytest.approx(c, rel=1e-6)
        assert n_fit == pytest.approx(n, rel=2e-3)
        assert d_fit / n_fit == pytest.approx(d / n, rel=4e-3)
        assert opt.exponent_at(loss) == pytest.approx(a, abs=1e-3)


def test_macs_per_token_is_exact_for_a_power_family_and_extends_it() -> None:
    n = np.array([1e4, 4e4, 1.6e5])
    macs = MacsPerToken(n, 3.0 * n**1.5)
    probe = np.array([2e3, 2e4, 1e6])
    assert macs(probe) == pytest.approx(3.0 * probe**1.5, rel=1e-9)


def test_true_multiplier_by_hand() -> None:
    """Same law, a third of the MACs per token: the same runs at a third of the compute."""
    dense = SyntheticStructure("d", CHINCHILLA, 8.0, 2.0)
    cheap = SyntheticStructure("c", CHINCHILLA, 8.0, 2.0, macs_coef=1 / 3)
    assert true_multiplier(cheap, dense, 3.0) == pytest.approx(3.0, rel=1e-9)
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    n = g * (1e21 / 6) ** (0.28 / 0.62)
    d = 1e21 / (6 * n)
    assert true_compute(dense, float(CHINCHILLA.loss_at(n, d))) == pytest.approx(1e21, rel=1e-6)


def test_bootstrap_draws_whole_runs_within_each_width() -> None:
    pts = chinchilla_points(widths=(64, 128), seeds=3, tokens_per_param=(2, 5, 20))
    dense = pts[pts.structure == "dense"]
    fin = dense[dense.final]
    columns = {
        "loss": "eval_loss",
        "params": "params",
        "tokens": "tokens",
        "compute": "compute",
        "width": "width",
        "run": "run_id",
        "parent": "parent",
    }
    runs = finished_runs(fin, dense, columns)
    assert runs.seeds == 3
    assert runs.variance_factor == pytest.approx(1.5)  # n/(n−1) with n = 3 runs per width
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = runs.draw(rng)
        drawn = fin.iloc[idx]
        assert drawn.groupby("width").size().tolist() == [9, 9]  # 3 runs × 3 horizons each
        units = drawn["parent"].fillna(drawn["run_id"])
        assert (drawn.groupby(units).size() % 3 == 0).all()  # a trunk with all its branches
    # FLOPs: each trunk from 0 (its last point), each branch for its logged span (0 here)
    trunks = dense[dense.parent.isna()].groupby("run_id")["compute"].max().sum()
    assert runs.flops == pytest.approx(trunks)


def test_mid_run_checkpoints_are_not_fitted() -> None:
    pts = chinchilla_points(random_state=3)
    worse = pts.copy()
    worse.loc[~worse.final, "eval_loss"] *= 5.0
    a = fit_table(pts, loss="eval_loss", bootstrap=0).set_index("structure")
    b = fit_table(worse, loss="eval_loss", bootstrap=0).set_index("structure")
    assert a["multiplier"].to_numpy() == pytest.approx(b["multiplier"].to_numpy(), rel=1e-12)
    assert (a["n_finished"] == 40).all()  # 4 widths × 2 seeds × 5 horizons


def test_multiplier_recovers_the_truth_and_the_interval_covers_it() -> None:
    """The issue's acceptance test, on :func:`chinchilla_points`' default design (4 widths,
    2 seeds, 5 horizons from 2 to 50 tokens per parameter, 0.5 % run and 0.5 % point noise)
    for BTT-like (ahead, its lead shrinks as the loss rises: 1.73× at 6, 1.36× at 9) and
    low-rank-like (behind, 0.39× at 6, 0.48× at 9) structures.

    20 independent draws, 60 bootstrap replicates each (17 to 23 s of CPU on one core).
    The median estimate must lie within 15 % of the truth (measured: within 1.3 %), each
    estimate within 25 %, and the 90 % interval must cover the truth in at least 16 of 20
    draws per structure. At the nominal 90 % a binomial(20, 0.9) falls below 16 with
    probability 4.3 %; at the 83 % measured for the BTT-like structure over 100 draws with 200
    replicates (docs/fits.md), with probability about 24 %: the seeds here are fixed, so the
    test is deterministic, and it guards against a collapse of the interval (narrow and
    wrong), not against the few points of coverage the measurement in docs/fits.md reports.
    """
    errors: dict[str, list[float]] = {"btt": [], "low_rank": []}
    covered = dict.fromkeys(errors, 0)
    for k in range(20):
        pts = chinchilla_points(random_state=100 + k)
        table = fit_table(pts, loss="eval_loss", bootstrap=60, seed=k).set_index("structure")
        for name in errors:
            row = table.loc[name]
            loss = float(row["multiplier_loss"])
            truth = true_multiplier(BY_NAME[name], BY_NAME["dense"], loss)
            errors[name].append(float(row["multiplier"]) / truth - 1)
            covered[name] += bool(row["multiplier_lo"] <= truth <= row["multiplier_hi"])
    for name, errs in errors.items():
        assert abs(float(np.median(errs))) < 0.15, (name, errs)
        assert max(abs(e) for e in errs) < 0.25, (name, errs)
        assert covered[name] >= 16, (name, covered)


def test_too_few_widths_is_not_separable_with_a_wide_interval() -> None:
    """Two widths, noisier runs, and a twin of dense (the same law, parameters and MACs: the
    true multiplier is 1 at every loss): the data cannot decide, and the verdict must say so
    with an interval that is wide, not narrow around a wrong value."""
    twin = SyntheticStructure("twin", BY_NAME["dense"].law, 8.0, 2.0)
    pts = chinchilla_points(
        (BY_NAME["dense"], twin), widths=(64, 128), noise=0.02, seed_noise=0.01, random_state=1
    )
    row = fit_table(pts, loss="eval_loss", bootstrap=100).set_index("structure").loc["twin"]
    assert row["verdict"] == NOT_SEPARABLE
    assert row["multiplier_lo"] <= 1.0 <= row["multiplier_hi"]
    assert row["multiplier_hi"] / row["multiplier_lo"] > 1.2
    assert "seeds per width" in row["to_separate"] or "too close to 1" in row["to_separate"]
    assert "FLOPs" in row["to_separate"]
    assert format_multiplier(row.to_dict()).endswith(NOT_SEPARABLE)


def test_envelope_law_runs_on_the_same_points() -> None:
    pts = chinchilla_points(random_state=2)
    table = fit_table(pts, loss="eval_loss", law="envelope", bootstrap=50).set_index("structure")
    assert (table["law"] == "envelope").all()
    assert table["n_used"].tolist() == [40, 40, 40]  # finished schedules only
    for name in ("btt", "low_rank"):
        assert math.isfinite(float(table.loc[name, "multiplier"]))
        assert table.loc[name, "verdict"] in (AHEAD, BEHIND, NOT_SEPARABLE)
    both = fit_table(pts, loss="eval_loss", bootstrap=0).set_index("structure")
    assert math.isfinite(float(both.loc["btt", "multiplier_envelope"]))  # the cross-check beside it


def test_frames_without_params_and_tokens_fall_back_to_the_envelope() -> None:
    c = np.geomspace(1e6, 1e10, 9)
    pts = pd.DataFrame(
        {
            "structure": ["dense"] * 9 + ["s"] * 9,
            "compute": np.concatenate([c, c]),
            "loss": np.concatenate([10 * c**-0.2, 8 * c**-0.25]),
        }
    )
    row = fit_table(pts).set_index("structure").loc["s"]
    assert row["law"] == "envelope"
    assert "no 'params'/'tokens' columns" in row["note"]
    assert row["multiplier"] == pytest.approx(1e10 / 80.0**4)  # as test_multiplier by hand
    assert row["verdict"] == NOT_SEPARABLE or row["verdict"] == AHEAD
    with pytest.raises(EinspaceError, match="needs the columns 'params' and 'tokens'"):
        fit_table(pts, law="parametric")
    with pytest.raises(EinspaceError, match="envelope"):
        fit_table(pts, law="envelop")


def test_verdict_and_what_would_separate_by_hand() -> None:
    assert verdict(1.01, 2.0) == AHEAD and verdict(0.1, 0.99) == BEHIND
    assert verdict(0.99, 1.01) == NOT_SEPARABLE and verdict(math.nan, 2.0) == NOT_SEPARABLE
    # 0.5× [0.25, 1.25]: the upper side spans log 2.5, the distance to 1 is log 2:
    # (log 2.5 / log 2)² = 1.75 → ceil(3 · 1.75) = 6 seeds, 1e15 · (6/3 − 1) more FLOPs
    text = what_would_separate(0.5, 0.25, 1.25, 3, 1e15)
    assert text.startswith("about 6 seeds per width instead of 3 (≈ 1e+15 more FLOPs)")
    assert "too close to 1" in what_would_separate(1.001, 0.5, 2.0, 2, 1e15)
    assert what_would_separate(2.0, 1.5, 3.0, 2, 1e15) == ""


def test_macs_from_compute_and_no_final_column_are_said() -> None:
    """Without ``macs_per_token`` M is read as compute / (6 · tokens), the same numbers the
    generator logged; without ``final`` every point counts as finished, and the note says so."""
    pts = chinchilla_points(random_state=5)
    a = fit_table(pts, loss="eval_loss", bootstrap=0).set_index("structure")
    b = fit_table(pts.drop(columns="macs_per_token"), loss="eval_loss", bootstrap=0)
    b = b.set_index("structure")
    assert b["multiplier"].to_numpy() == pytest.approx(a["multiplier"].to_numpy(), rel=1e-9)
    finished = pts[pts.final].drop(columns="final")
    c = fit_table(finished, loss="eval_loss", bootstrap=0).set_index("structure")
    assert c["multiplier"].to_numpy() == pytest.approx(a["multiplier"].to_numpy(), rel=1e-9)
    assert all("no 'final' column" in note for note in c["note"])
