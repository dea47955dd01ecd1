"""Compute multipliers: read only where both fits measured, with a bootstrap interval, an
interpolated cross-check and words for fits that rest on too little."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.scaling import (
    compute_multiplier,
    fit_power_law,
    fit_table,
    format_multiplier,
    interpolated_multiplier,
    power_law_points,
)
from einspace import EinspaceError


def envelope(points: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """The envelope law of :func:`fit_table` (these frames carry no params or tokens)."""
    return fit_table(points, law="envelope", **kwargs)


def law_frame(name: str, b: float, m: float, compute: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"structure": name, "compute": compute, "loss": b * compute**-m})


def test_disjoint_loss_ranges_give_nan_and_a_note() -> None:
    """The issue's example: read at the higher end-of-frontier loss this was 1e5, three
    decades below the structure's smallest measured compute."""
    c = np.logspace(6, 8, 5)
    table = envelope(pd.concat([law_frame("dense", 10.0, 0.2, c), law_frame("s", 1.0, 0.2, c)]))
    row = table.set_index("structure").loc["s"]
    assert math.isnan(row["multiplier"]) and math.isnan(row["multiplier_lo"])
    assert row["multiplier_status"] == "no overlap"
    assert "no overlap" in row["note"] and "extrapolated" in row["note"]
    assert format_multiplier(row) == "n/a (no overlap)"
    dense, s = fit_power_law(c, 10 * c**-0.2), fit_power_law(c, c**-0.2)
    with pytest.raises(EinspaceError, match="outside its measured range"):
        compute_multiplier(s, dense, at_loss=float(dense.loss_at(1e8)))
    assert compute_multiplier(s, dense, at_loss=0.3, extrapolate=True) == pytest.approx(1e5)


def test_known_exponents_read_inside_both_ranges() -> None:
    """Dense L = 10 C^-0.2 and S = 8 C^-0.25 on [1e6, 1e10]: by hand, the lowest loss both
    reach is dense's end loss 10·1e10^-0.2 = 0.1 (S reaches 8·1e10^-0.25 = 0.08)."""
    c = np.logspace(6, 10, 9)
    pts = pd.concat([law_frame("dense", 10.0, 0.2, c), law_frame("s", 8.0, 0.25, c)])
    row = envelope(pts).set_index("structure").loc["s"]
    assert row["multiplier_loss"] == pytest.approx(0.1)
    c_dense, c_s = 1e10, (8.0 / 0.1) ** 4  # C(L) = (b / L)^(1/m)
    assert row["multiplier"] == pytest.approx(c_dense / c_s)
    assert row["multiplier_interp"] == pytest.approx(c_dense / c_s)  # exact power laws
    assert row["multiplier_lo"] == pytest.approx(row["multiplier_hi"])  # no noise
    assert row["multiplier_status"] == "ok" and row["note"] == ""
    assert row["bootstrap_unit"] == "frontier points"
    text = format_multiplier(row)
    assert text.startswith(f"{c_dense / c_s:.3g}× [")


def test_interpolated_multiplier_by_hand() -> None:
    # two-point frontiers: dense (1, 10) → (100, 1); structure (1, 5) → (100, 0.5).
    # at L = 1: dense needs 100, the structure log-log interpolates to 10^(log(5)/log(10))…
    dense = ([1.0, 100.0], [10.0, 1.0])
    struct = ([1.0, 100.0], [5.0, 0.5])
    assert interpolated_multiplier(struct, dense, at_loss=1.0) == pytest.approx(100 / 25)
    assert math.isnan(interpolated_multiplier(struct, dense, at_loss=0.1))


def curve_runs(
    name: str, b: float, m: float, widths: list[int], seeds: int, sigma: float, rng_seed: int
) -> pd.DataFrame:
    """Runs on L = b C^-m: width w covers compute [10^(5+w), 10^(6.5+w)], 8 steps, with
    multiplicative noise exp(σ ε); step 0 (compute 0) and a warmup plateau in the first
    10 % of steps lie above the law."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for w in widths:
        for seed in range(seeds):
            steps = np.arange(0, 101, 10)
            compute = np.where(steps == 0, 0.0, 10 ** (5 + w + 1.5 * steps / 100))
            clean = np.where(compute > 0, b * np.maximum(compute, 1) ** -m, 50.0)
            loss = clean * np.exp(sigma * rng.standard_normal(len(steps)))
            loss[steps < 10] = 50.0  # untrained start
            for st, cmp_, lo in zip(steps, compute, loss, strict=True):
                rows.append(
                    {
                        "structure": name,
                        "run_id": f"{name}-{w}-{seed}",
                        "width": w,
                        "step": int(st),
                        "compute": cmp_,
                        "loss": lo,
                    }
                )
    return pd.DataFrame(rows)


def test_warmup_points_are_left_out_and_counted() -> None:
    pts = curve_runs("dense", 10.0, 0.2, [1, 2, 3], 1, 0.0, 0)
    keep = power_law_points(pts)
    assert not keep[pts["step"] == 0].any() and keep[pts["step"] >= 10].all()
    row = envelope(pts).iloc[0]
    assert row["n_left_out"] == 3 and row["n_used"] == len(pts) - 3
    assert row["m"] == pytest.approx(0.2)
    # a learning-rate column: points before each run's peak are warmup
    pts["lr"] = np.minimum(pts["step"], 30) / 30.0
    assert power_law_points(pts).sum() == (pts["step"] >= 30).sum()
    with pytest.raises(EinspaceError, match="warmup_fraction"):
        power_law_points(pts, warmup_fraction=1.5)


def test_bootstrap_is_seeded_and_resamples_runs() -> None:
    pts = pd.concat(
        [
            curve_runs("dense", 10.0, 0.2, [1, 2, 3, 4], 3, 0.03, 1),
            curve_runs("s", 7.0, 0.2, [1, 2, 3, 4], 3, 0.03, 2),
        ]
    )
    a = envelope(pts, seed=3).set_index("structure").loc["s"]
    b = envelope(pts, seed=3).set_index("structure").loc["s"]
    c = envelope(pts, seed=4).set_index("structure").loc["s"]
    assert (a["multiplier_lo"], a["multiplier_hi"]) == (b["multiplier_lo"], b["multiplier_hi"])
    assert (a["multiplier_lo"], a["multiplier_hi"]) != (c["multiplier_lo"], c["multiplier_hi"])
    assert a["bootstrap_unit"] == "runs" and a["n_runs"] == 12 and a["n_widths"] == 4
    assert a["multiplier_lo"] < a["multiplier"] < a["multiplier_hi"]


def test_interval_covers_the_true_multiplier_on_noisy_data() -> None:
    """Same exponent, coefficients 10 and 7: the true multiplier is (10/7)^(1/0.2)
    everywhere. Over 20 independent noisy data sets the 90 % interval must cover it in at
    least 14 (a binomial(20, 0.9) falls below 15 with probability ~1 %)."""
    truth = (10.0 / 7.0) ** 5
    covered = 0
    for k in range(20):
        pts = pd.concat(
            [
                curve_runs("dense", 10.0, 0.2, [1, 2, 3, 4], 2, 0.02, 100 + k),
                curve_runs("s", 7.0, 0.2, [1, 2, 3, 4], 2, 0.02, 200 + k),
            ]
        )
        row = envelope(pts, bootstrap=200, seed=k).set_index("structure").loc["s"]
        covered += bool(row["multiplier_lo"] <= truth <= row["multiplier_hi"])
    assert covered >= 14


def test_thin_fits_are_labelled_in_words() -> None:
    c = np.logspace(6, 8, 3)
    pts = pd.concat([law_frame("dense", 10.0, 0.2, c), law_frame("s", 9.0, 0.2, c)])
    pts["width"] = 64
    row = envelope(pts).set_index("structure").loc["s"]
    assert "rests on too little: 3 frontier points (fewer than 4) and one width" in row["note"]
    assert row["multiplier_status"] == "too little data"
    assert format_multiplier(row).endswith("(rests on too little data)")


def test_fit_and_interpolation_disagreement_is_flagged() -> None:
    """A structure whose frontier bends (L = 0.02 + 3 C^-0.2): read at dense's end loss
    0.1, which the measured frontier reaches mid-range, the straight power-law fit and the
    frontier disagree by more than the interval allows."""
    c = np.logspace(4, 10, 13)
    pts = pd.concat(
        [
            law_frame("dense", 10.0, 0.2, c),
            pd.DataFrame({"structure": "s", "compute": c, "loss": 0.02 + 3.0 * c**-0.2}),
        ]
    )
    row = envelope(pts).set_index("structure").loc["s"]
    assert row["multiplier_loss"] == pytest.approx(0.1)
    # by hand: the frontier reaches 0.1 where 3 C^-0.2 = 0.08, C = 37.5^5
    exact = 1e10 / 37.5**5
    fitted, interp = row["multiplier"], row["multiplier_interp"]
    assert abs(math.log(interp / exact)) < abs(math.log(fitted / exact))
    assert not row["multiplier_lo"] <= interp <= row["multiplier_hi"]
    assert row["multiplier_flag"] and row["multiplier_status"] == "disagrees"
    assert "disagree by more than the 90 % interval" in row["note"]
    assert format_multiplier(row).startswith(f"{fitted:.3g}×")


def test_read_loss_is_inside_both_measured_frontiers_so_the_cross_check_exists() -> None:
    c = np.logspace(4, 10, 13)
    s_loss = 0.5 + 5.0 * c**-0.3
    pts = pd.concat(
        [
            law_frame("dense", 10.0, 0.2, c),
            pd.DataFrame({"structure": "s", "compute": c, "loss": s_loss}),
        ]
    )
    row = envelope(pts).set_index("structure").loc["s"]
    dense_loss = 10.0 * c**-0.2
    at = row["multiplier_loss"]
    assert max(s_loss.min(), dense_loss.min()) <= at * (1 + 1e-9)
    assert at <= min(s_loss.max(), dense_loss.max()) * (1 + 1e-9)
    assert math.isfinite(row["multiplier_interp"]) and math.isfinite(row["multiplier"])
    assert "no interpolated cross-check" not in row["note"]


def test_interpolation_undefined_outside_measured_losses() -> None:
    c = [1e6, 1e7, 1e8]
    dense = (c, [10 * x**-0.2 for x in c])
    s = (c, [8 * x**-0.2 for x in c])
    assert math.isnan(interpolated_multiplier(s, dense, at_loss=0.01))
    assert math.isfinite(interpolated_multiplier(s, dense, at_loss=0.5))


def test_format_multiplier_without_interval() -> None:
    row = {"multiplier": 1.72, "multiplier_lo": math.nan, "multiplier_hi": math.nan}
    assert format_multiplier(row) == "1.72× [no interval]"
