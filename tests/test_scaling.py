"""Tests of analysis.scaling: frontier, power-law fits, compute multiplier, fit table."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import ScalingFit, compute_multiplier, fit_power_law, fit_table, frontier
from einspace.errors import EinspaceError


def _power_law_data(
    m: float, a: float, n: int, sigma: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points of ``log L = a − m log C`` with seeded log-normal (multiplicative) noise."""
    rng = np.random.default_rng(seed)
    compute = np.logspace(6, 14, n)
    loss = np.exp(a - m * np.log(compute)) * np.exp(rng.normal(0.0, sigma, n))
    return compute, loss


# --------------------------------------------------------------------------- frontier


def test_frontier_removes_points_above_hull_duplicates_and_rising_tail() -> None:
    # log10 C:  0    1    2    3    3    4     5    5.5
    # log10 L:  2    1.2  1.5  0.6  1.0  0.35  0.4  0.6
    # x=2 lies above the chord from x=1 to x=3; the second x=3 point has a higher loss;
    # x=5 and x=5.5 are on the hull but the loss rises there, so the clean-up drops them.
    log_c = [0, 1, 2, 3, 3, 4, 5, 5.5]
    log_l = [2, 1.2, 1.5, 0.6, 1.0, 0.35, 0.4, 0.6]
    compute = [10.0**k for k in log_c]
    loss = [10.0**k for k in log_l]
    c, ell = frontier(compute, loss)
    np.testing.assert_array_equal(c, [10.0**0, 10.0**1, 10.0**3, 10.0**4])
    np.testing.assert_array_equal(ell, [10.0**2, 10.0**1.2, 10.0**0.6, 10.0**0.35])


def test_frontier_is_independent_of_input_order() -> None:
    compute = np.array([1.0, 10.0, 100.0, 1000.0, 50.0, 5.0])
    loss = np.array([9.0, 5.0, 2.0, 1.5, 4.0, 8.5])
    perm = np.random.default_rng(0).permutation(compute.size)
    c1, l1 = frontier(compute, loss)
    c2, l2 = frontier(compute[perm], loss[perm])
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)
    assert np.all(np.diff(c1) > 0)
    assert np.all(np.diff(l1) < 0)


def test_frontier_flat_tail_is_dropped() -> None:
    c, ell = frontier([1.0, 10.0, 100.0, 1000.0], [4.0, 2.0, 1.0, 1.0])
    np.testing.assert_array_equal(c, [1.0, 10.0, 100.0])
    np.testing.assert_array_equal(ell, [4.0, 2.0, 1.0])


def test_frontier_keeps_every_point_of_an_exact_power_law() -> None:
    compute = np.logspace(3, 15, 13)
    loss = 7.0 * compute**-0.37
    c, ell = frontier(compute, loss)
    np.testing.assert_array_equal(c, compute)
    np.testing.assert_array_equal(ell, loss)


def test_frontier_point_below_a_line_removes_its_neighbours() -> None:
    # (1, 8), (10, 4), (100, 2) are collinear in log-log; a point at C=10 with L=1
    # is far below, which puts C=100 above the chord from C=10 to C=1000.
    c, ell = frontier([1.0, 10.0, 10.0, 100.0, 1000.0], [8.0, 4.0, 1.0, 2.0, 0.5])
    np.testing.assert_array_equal(c, [1.0, 10.0, 1000.0])
    np.testing.assert_array_equal(ell, [8.0, 1.0, 0.5])


# --------------------------------------------------------------------------- power fit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_fit_recovers_exponent_and_intercept(seed: int) -> None:
    m_true, a_true = 0.28, math.log(40.0)
    compute, loss = _power_law_data(m_true, a_true, n=60, sigma=0.05, seed=seed)
    fit = fit_power_law(compute, loss, use_frontier=False)
    assert fit.form == "power"
    assert fit.n_points == 60
    assert 0 < fit.m_se < 0.01
    assert abs(fit.m - m_true) < 4 * fit.m_se
    assert abs(fit.a - a_true) < 4 * fit.a_se
    assert fit.b == pytest.approx(math.exp(fit.a))
    assert fit.compute_min == compute.min()
    assert fit.compute_max == compute.max()


def test_power_fit_standard_errors_match_scipy_linregress() -> None:
    compute, loss = _power_law_data(0.4, 2.0, n=25, sigma=0.1, seed=7)
    fit = fit_power_law(compute, loss, use_frontier=False)
    ref = stats.linregress(np.log(compute), np.log(loss))
    assert fit.m == pytest.approx(-ref.slope, rel=1e-10)
    assert fit.a == pytest.approx(ref.intercept, rel=1e-10)
    assert fit.m_se == pytest.approx(ref.stderr, rel=1e-8)
    assert fit.a_se == pytest.approx(ref.intercept_stderr, rel=1e-8)


def test_power_fit_with_two_points_is_exact_with_nan_errors() -> None:
    fit = fit_power_law([10.0, 1000.0], [3.0, 0.3])
    assert fit.m == pytest.approx(0.5)
    assert fit.a == pytest.approx(math.log(3.0) + 0.5 * math.log(10.0))
    assert math.isnan(fit.m_se)
    assert math.isnan(fit.a_se)


def test_power_fit_uses_frontier_by_default() -> None:
    compute = [1.0, 10.0, 30.0, 100.0]
    loss = [100.0, 10.0, 50.0, 1.0]  # (30, 50) is above the hull
    on_frontier = fit_power_law(compute, loss)
    every_point = fit_power_law(compute, loss, use_frontier=False)
    assert on_frontier.n_points == 3
    assert on_frontier.m == pytest.approx(1.0)
    assert every_point.n_points == 4
    assert every_point.m != pytest.approx(1.0, abs=0.05)


def test_loss_at_and_compute_at_are_inverse() -> None:
    compute, loss = _power_law_data(0.3, 3.0, n=20, sigma=0.05, seed=3)
    fit = fit_power_law(compute, loss, use_frontier=False)
    grid = np.logspace(5, 16, 9)
    np.testing.assert_allclose(fit.compute_at(fit.loss_at(grid)), grid, rtol=1e-10)
    assert isinstance(fit.loss_at(1e9), float)
    d = fit.to_dict()
    assert d["m"] == fit.m
    assert ScalingFit(**d) == fit


# --------------------------------------------------------------------------- offset fit


def test_offset_fit_recovers_irreducible_loss_coefficient_and_exponent() -> None:
    l_inf, b, m = 1.7, 300.0, 0.33
    rng = np.random.default_rng(11)
    compute = np.logspace(4, 14, 50)
    loss = (l_inf + b * compute**-m) * np.exp(rng.normal(0.0, 0.005, compute.size))
    fit = fit_power_law(compute, loss, form="offset", use_frontier=False)
    assert fit.form == "offset"
    for est, se, true in [(fit.l_inf, fit.l_inf_se, l_inf), (fit.m, fit.m_se, m)]:
        assert 0 < se < 0.1 * true
        assert abs(est - true) < 4 * se
    assert abs(fit.a - math.log(b)) < 4 * fit.a_se
    assert fit.b == pytest.approx(b, rel=0.1)
    assert fit.loss_at(1e20) == pytest.approx(l_inf, rel=0.01)


def test_offset_fit_on_exact_data_is_exact_and_inverts() -> None:
    compute = np.logspace(2, 12, 12)
    loss = 0.9 + 12.0 * compute**-0.2
    fit = fit_power_law(compute, loss, form="offset")
    assert fit.l_inf == pytest.approx(0.9, rel=1e-5)
    assert fit.b == pytest.approx(12.0, rel=1e-5)
    assert fit.m == pytest.approx(0.2, rel=1e-5)
    assert fit.compute_at(1.0) == pytest.approx((12.0 / 0.1) ** (1 / 0.2), rel=1e-4)
    with pytest.raises(EinspaceError, match="never reached"):
        fit.compute_at(0.5)


# --------------------------------------------------------------------------- multiplier


def _exact_power(b: float, m: float) -> ScalingFit:
    """The power-form fit of two points of ``L = b C^-m``."""
    compute = np.array([1.0, 1e6])
    return fit_power_law(compute, b * compute**-m)


def test_compute_multiplier_on_known_laws() -> None:
    dense = _exact_power(10.0, 0.5)  # C_dense(L) = (10 / L)^2
    worse = _exact_power(4.0, 0.25)  # C(L) = (4 / L)^4
    better = _exact_power(2.0, 0.5)  # C(L) = (2 / L)^2
    # at C = 1e4 dense reaches L = 0.1; the worse law needs 40^4 = 2_560_000.
    assert compute_multiplier(worse, dense, at_compute=1e4, extrapolate=True) == pytest.approx(
        1e4 / 2_560_000
    )
    # at L = 0.5: dense needs 400, the worse law 8^4 = 4096.
    assert compute_multiplier(worse, dense, at_loss=0.5, extrapolate=True) == pytest.approx(
        400 / 4096
    )
    # same exponent, 5x lower coefficient: (10/2)^2 = 25 times less compute anywhere.
    assert compute_multiplier(better, dense, at_loss=0.1, extrapolate=True) == pytest.approx(25.0)
    assert compute_multiplier(better, dense, at_compute=3e7, extrapolate=True) == pytest.approx(
        25.0
    )
    assert compute_multiplier(dense, dense, at_compute=123.0, extrapolate=True) == pytest.approx(
        1.0
    )


def test_compute_multiplier_with_offset_law() -> None:
    dense = ScalingFit("offset", 0.5, 0.0, math.log(10.0), 0.0, 10.0, 0.0, 1.0, 0.0, 5, 1, 1e6)
    struct = _exact_power(10.0, 0.5)
    # dense reaches L = 1 + 10/100 = 1.1 at C = 1e4; the power law needs (10/1.1)^2.
    expected = 1e4 / (10.0 / 1.1) ** 2
    assert compute_multiplier(struct, dense, at_compute=1e4, extrapolate=True) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"at_loss": 1.0, "at_compute": 10.0}, "exactly one"),
        ({"at_compute": -5.0}, "-5.0"),
        ({"at_loss": math.nan}, "nan"),
    ],
)
def test_compute_multiplier_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    fit = _exact_power(10.0, 0.5)
    with pytest.raises(EinspaceError, match=match):
        compute_multiplier(fit, fit, **kwargs)


# --------------------------------------------------------------------------- fit table


def test_fit_table_rows_and_multiplier_against_dense() -> None:
    compute = np.logspace(6, 12, 7)
    laws = {"dense": (10.0, 0.2), "btt": (6.0, 0.22), "lowrank": (12.0, 0.18)}
    frames = [
        pd.DataFrame({"structure": name, "compute": compute, "loss": b * compute**-m})
        for name, (b, m) in laws.items()
    ]
    table = fit_table(pd.concat(frames, ignore_index=True))
    assert table["structure"].tolist() == ["btt", "dense", "lowrank"]
    assert table["n_points"].tolist() == [7, 7, 7]
    assert set(table.columns) >= {"m", "m_se", "a", "a_se", "n_points", "multiplier", "note"}
    by_name = table.set_index("structure")
    for name, (b, m) in laws.items():
        assert by_name.loc[name, "m"] == pytest.approx(m)
        assert by_name.loc[name, "a"] == pytest.approx(math.log(b))
    # by hand: read at the lowest loss both frontiers reach, L* = max of the two losses at
    # C = 1e12; then multiplier = C_dense(L*) / C_s(L*) with C(L) = (b / L)^(1 / m).
    for name in ("btt", "lowrank"):
        b, m = laws[name]
        target = max(10.0 * 1e12**-0.2, b * 1e12**-m)
        expected = (10.0 / target) ** (1 / 0.2) / (b / target) ** (1 / m)
        assert by_name.loc[name, "multiplier"] == pytest.approx(expected, rel=1e-8)
        assert by_name.loc[name, "multiplier_loss"] == pytest.approx(target)
    # btt reaches lower losses: read at dense's end; low rank stops higher: read at its end
    assert by_name.loc["btt", "multiplier_loss"] == pytest.approx(10.0 * 1e12**-0.2)
    assert by_name.loc["lowrank", "multiplier_loss"] == pytest.approx(12.0 * 1e12**-0.18)
    multiplier = dict(zip(table["structure"], table["multiplier"], strict=True))
    assert multiplier["btt"] > 1 > multiplier["lowrank"]
    assert by_name.loc["dense", "multiplier"] == pytest.approx(1.0)


def test_fit_table_without_dense_group_has_nan_and_note() -> None:
    df = pd.DataFrame({"arch": ["btt"] * 3, "c": [1.0, 10.0, 100.0], "l": [4.0, 2.0, 1.0]})
    table = fit_table(df, group="arch", compute="c", loss="l")
    assert math.isnan(table["multiplier"].iloc[0])
    assert "no dense group" in table["note"].iloc[0]
    assert table.loc[0, "m"] == pytest.approx(math.log10(4.0) / 2)


def test_fit_table_reports_failed_group_in_note() -> None:
    df = pd.DataFrame(
        {
            "structure": ["dense", "dense", "dense", "flat", "flat"],
            "compute": [1.0, 10.0, 100.0, 1.0, 10.0],
            "loss": [4.0, 2.0, 1.0, 3.0, 3.0],  # "flat" has a single frontier point
        }
    )
    table = fit_table(df, law="envelope").set_index("structure")
    assert math.isnan(table["m"]["flat"])
    assert "fit failed" in str(table.loc["flat", "note"])
    assert table.loc["dense", "note"] == "rests on too little: 3 frontier points (fewer than 4)"


def test_fit_table_skips_zero_compute_but_not_negative() -> None:
    df = pd.DataFrame(
        {
            "structure": ["dense"] * 4 + ["bad"] * 3,
            "compute": [0.0, 1.0, 10.0, 100.0, 1.0, -10.0, 100.0],
            "loss": [9.0, 4.0, 2.0, 1.0, 4.0, 2.0, 1.0],
        }
    )
    table = fit_table(df, law="envelope").set_index("structure")
    assert table["n_points"]["dense"] == 3
    assert table["m"]["dense"] == pytest.approx(math.log10(2.0))
    assert math.isnan(table["m"]["bad"])
    assert "-10.0" in table["note"]["bad"]


def test_fit_table_missing_column() -> None:
    df = pd.DataFrame({"structure": ["a"], "compute": [1.0], "eval_loss": [1.0]})
    with pytest.raises(EinspaceError, match="missing \\['loss'\\]"):
        fit_table(df, law="envelope")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("compute", "loss", "match"),
    [
        ([1.0, 2.0, math.nan], [3.0, 2.0, 1.0], "nan at index 2"),
        ([1.0, 2.0, 3.0], [3.0, math.inf, 1.0], "inf at index 1"),
        ([0.0, 2.0, 3.0], [3.0, 2.0, 1.0], "0.0 at index 0"),
        ([1.0, 2.0, 3.0], [3.0, -2.0, 1.0], "-2.0 at index 1"),
        ([1.0], [3.0], "at least 2"),
        ([1.0, 2.0], [3.0], "same length"),
        ([[1.0, 2.0]], [[3.0, 2.0]], "1-dimensional"),
        (["a", "b"], [1.0, 2.0], "positive finite numbers"),
    ],
)
def test_bad_points_raise(compute: list[Any], loss: list[Any], match: str) -> None:
    with pytest.raises(EinspaceError, match=match):
        frontier(compute, loss)
    with pytest.raises(EinspaceError, match=match):
        fit_power_law(compute, loss, use_frontier=False)


def test_unknown_form_suggests_nearest() -> None:
    with pytest.raises(EinspaceError, match=r"'powr'.*did you mean 'power'"):
        fit_power_law([1.0, 10.0], [2.0, 1.0], form="powr")


def test_too_few_points_for_fits() -> None:
    with pytest.raises(EinspaceError, match="2 or more distinct compute"):
        fit_power_law([5.0, 5.0], [2.0, 1.0], use_frontier=False)
    with pytest.raises(EinspaceError, match="2 or more distinct compute"):
        fit_power_law([1.0, 10.0], [1.0, 2.0])  # frontier keeps one point
    with pytest.raises(EinspaceError, match="at least 3"):
        fit_power_law([1.0, 10.0], [2.0, 1.0], form="offset")


def test_compute_at_needs_falling_loss() -> None:
    rising = fit_power_law([1.0, 10.0], [1.0, 2.0], use_frontier=False)
    assert rising.m < 0
    with pytest.raises(EinspaceError, match="m > 0"):
        rising.compute_at(1.5)


def test_importing_analysis_does_not_import_torch_or_matplotlib() -> None:
    code = (
        "import sys, analysis; "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
