"""The envelope law: a power law through each structure's compute-optimal frontier.

Chinchilla's approach 1 (docs/theory.md §6, docs/fits.md), on top of :mod:`analysis.laws`:
:func:`envelope_table` fits every structure of a long-format table of points (only the
power-law part of each curve, :func:`power_law_points`, or only finished schedules where a
``final`` column says which) and reads the compute multiplier against dense where both fits
measured, with a bootstrap interval, an interpolated cross-check and notes;
:func:`compute_multiplier` reads two fitted laws at one loss.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.laws import (
    FloatArray,
    Form,
    ScalingFit,
    as_positive_array,
    check_form,
    fit_power_law,
    frontier,
)
from einspace.errors import EinspaceError

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "ENVELOPE_COLUMNS",
    "MIN_FRONTIER_POINTS",
    "WARMUP_FRACTION",
    "compute_multiplier",
    "envelope_table",
    "interpolated_multiplier",
    "power_law_points",
]


# --------------------------------------------------------------------------- comparisons


def compute_multiplier(
    structure_fit: ScalingFit,
    dense_fit: ScalingFit,
    at_loss: float | None = None,
    at_compute: float | None = None,
    *,
    extrapolate: bool = False,
) -> float:
    """How many times less compute the structure needs than dense to reach a loss.

    The loss is ``at_loss``, or the loss the dense fit predicts at ``at_compute``.
    The result is ``C_dense(L) / C_structure(L)`` read off the two fitted laws: above 1
    the structure is better, below 1 dense is. Give exactly one of ``at_loss`` and
    ``at_compute``. Both compute values must lie inside the fits' measured compute ranges
    unless ``extrapolate=True``.

    Raises:
        EinspaceError: neither or both of ``at_loss``/``at_compute`` given, a
            non-positive value, a loss one of the laws never reaches, or (without
            ``extrapolate``) a compute outside a fit's measured range.

    Examples:
        >>> dense = fit_power_law([1.0, 100.0], [10.0, 1.0])      # L = 10 C^-0.5
        >>> struct = fit_power_law([1.0, 100.0], [5.0, 0.5])      # L = 5 C^-0.5
        >>> round(compute_multiplier(struct, dense, at_compute=100.0), 9)
        4.0
    """
    if (at_loss is None) == (at_compute is None):
        raise EinspaceError(
            f"give exactly one of at_loss and at_compute; got at_loss={at_loss!r}, "
            f"at_compute={at_compute!r}. Example: compute_multiplier(s, d, "
            f"at_compute=dense_fit.compute_max)"
        )
    if at_compute is not None:
        dense_c = float(as_positive_array(at_compute, "at_compute")[0])
        target = dense_fit.loss_at(dense_c)
    else:
        assert at_loss is not None
        target = float(as_positive_array(at_loss, "at_loss")[0])
        dense_c = dense_fit.compute_at(target)
    struct_c = structure_fit.compute_at(target)
    if not extrapolate:
        for who, fit, c in (("dense", dense_fit, dense_c), ("structure", structure_fit, struct_c)):
            if not fit.compute_min * (1 - 1e-9) <= c <= fit.compute_max * (1 + 1e-9):
                raise EinspaceError(
                    f"the {who} fit reaches loss {target:.4g} at compute {c:.4g}, outside its "
                    f"measured range {fit.compute_min:.4g}–{fit.compute_max:.4g}: the multiplier "
                    f"would be extrapolated. Read it at a loss both fits reach (fit_table does), "
                    f"or pass extrapolate=True"
                )
    return dense_c / struct_c


WARMUP_FRACTION = 0.1
"""Without a learning-rate column, the first 10 % of each run's steps count as warmup."""

BOOTSTRAP_SAMPLES = 400
"""Bootstrap replicates of :func:`fit_table`'s multiplier interval."""

MIN_FRONTIER_POINTS = 4
"""Below this many frontier points a multiplier is labelled as resting on too little."""


def power_law_points(
    points: pd.DataFrame,
    *,
    compute: str = "compute",
    run: str = "run_id",
    step: str = "step",
    lr: str = "lr",
    warmup_fraction: float = WARMUP_FRACTION,
) -> pd.Series:
    """Which points belong to the power-law part of their run's curve (a boolean Series).

    Left out: the untrained start (compute exactly 0; other non-positive values stay, so the
    fit fails with a message naming them), and per run the warmup: every point
    before the step at which the ``lr`` column peaks, or, without an ``lr`` column, every
    point at a step below ``warmup_fraction`` × the run's last step. Without ``run`` and
    ``step`` columns only the compute rule applies.

    Examples:
        >>> df = pd.DataFrame({"run_id": ["a"] * 5, "step": [0, 10, 50, 100, 200],
        ...                    "compute": [0.0, 1.0, 5.0, 10.0, 20.0]})
        >>> power_law_points(df).tolist()  # step 0 untrained, step 10 < 0.1 · 200
        [False, False, True, True, True]
        >>> df["lr"] = [0.0, 0.5, 1.0, 0.9, 0.5]  # the learning rate peaks at step 50
        >>> power_law_points(df).tolist()
        [False, False, True, True, True]
    """
    if not 0 <= warmup_fraction < 1:
        raise EinspaceError(
            f"warmup_fraction = {warmup_fraction!r} must be in [0, 1), e.g. {WARMUP_FRACTION}"
        )
    keep = pd.Series(points[compute] != 0, index=points.index)
    if run not in points.columns or step not in points.columns:
        return keep
    steps = points[step].astype(float)
    if lr in points.columns:
        peak_at = points.assign(_s=steps).sort_values(
            [run, lr, "_s"], ascending=[True, False, True]
        )
        first_peak = peak_at.groupby(run)["_s"].first()
        keep &= steps >= points[run].map(first_peak)
    else:
        last = steps.groupby(points[run]).transform("max")
        keep &= steps >= warmup_fraction * last
    return keep


def _read_loss(
    fit: ScalingFit,
    dense_fit: ScalingFit,
    measured: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> tuple[float, str]:
    """The loss a multiplier is read at: the lowest loss both fits reach inside their
    measured compute ranges; NaN and the reason when the two loss ranges do not overlap.

    With ``measured`` (the two measured frontiers' loss ranges), the lowest loss inside all
    four ranges is preferred, so that the interpolated cross-check can be read at the same
    loss; where the measured frontiers leave no common loss inside the fits' ranges, the
    fits' own overlap is used.
    """
    s_lo, s_hi = fit.loss_range
    d_lo, d_hi = dense_fit.loss_range
    lo, hi = max(s_lo, d_lo), min(s_hi, d_hi)
    if not lo <= hi * (1 + 1e-12):
        return math.nan, (
            f"no overlap: on their measured compute the structure's fit spans losses "
            f"{s_lo:.4g}–{s_hi:.4g} and dense's {d_lo:.4g}–{d_hi:.4g}; a multiplier there "
            f"would be extrapolated"
        )
    if measured is not None:
        (ms_lo, ms_hi), (md_lo, md_hi) = measured
        both_lo, both_hi = max(lo, ms_lo, md_lo), min(hi, ms_hi, md_hi)
        if both_lo <= both_hi * (1 + 1e-12):
            return both_lo, ""
    return lo, ""


def _interp_compute(c: FloatArray, ell: FloatArray, target: float) -> float:
    """Compute at which a measured frontier reaches ``target``, log-log interpolation
    between its points; NaN outside the frontier's losses."""
    x, y = np.log(c[::-1]), np.log(ell[::-1])  # by increasing loss
    t = math.log(target)
    if not y[0] * (1 + 1e-12) <= t <= y[-1] * (1 - 1e-12) and not y[0] <= t <= y[-1]:
        return math.nan
    return float(np.exp(np.interp(t, y, x)))


def interpolated_multiplier(
    structure: tuple[npt.ArrayLike, npt.ArrayLike],
    dense: tuple[npt.ArrayLike, npt.ArrayLike],
    at_loss: float,
) -> float:
    """C_dense / C_structure at ``at_loss`` read off the two measured frontiers (log-log
    interpolation between frontier points, no fit); NaN where a frontier does not reach
    that loss.

    Examples:
        >>> c = [1e6, 1e7, 1e8]
        >>> d = (c, [10 * x ** -0.2 for x in c])
        >>> s = (c, [8 * x ** -0.2 for x in c])
        >>> round(interpolated_multiplier(s, d, at_loss=0.5), 4)   # (10/8)^(1/0.2)
        3.0518
    """
    sc, sl = frontier(*structure)
    dc, dl = frontier(*dense)
    return _interp_compute(dc, dl, at_loss) / _interp_compute(sc, sl, at_loss)


@dataclass(frozen=True)
class _Group:
    """One group's power-law points, with their runs and widths where known."""

    compute: FloatArray
    loss: FloatArray
    runs: npt.NDArray[np.object_]
    widths: npt.NDArray[np.object_]

    @property
    def n_runs(self) -> int:
        return len(set(self.runs.tolist()))

    @property
    def n_widths(self) -> int:
        return len(set(self.widths.tolist()))

    def resample(self, rng: np.random.Generator, form: Form, use_frontier: bool) -> ScalingFit:
        """A bootstrap refit: runs drawn with replacement when some width has several runs,
        otherwise frontier points drawn with replacement."""
        if self.n_runs > self.n_widths:
            ids = list(dict.fromkeys(self.runs.tolist()))
            idx = np.concatenate(
                [np.flatnonzero(self.runs == ids[int(r)]) for r in rng.choice(len(ids), len(ids))]
            )
            return fit_power_law(self.compute[idx], self.loss[idx], form, use_frontier)
        c, ell = frontier(self.compute, self.loss) if use_frontier else (self.compute, self.loss)
        idx = rng.choice(c.size, c.size)
        return fit_power_law(c[idx], ell[idx], form, use_frontier=False)

    @property
    def bootstrap_unit(self) -> str:
        return "runs" if self.n_runs > self.n_widths else "frontier points"


def _bootstrap(
    s: _Group,
    d: _Group,
    target: float,
    form: Form,
    use_frontier: bool,
    samples: int,
    seed: int,
    key: object,
) -> tuple[float, float, int]:
    """Seeded 90 % percentile interval of the multiplier at loss ``target`` (refits of
    both groups, each replicate read at the same loss as the estimate) and the number of
    replicates where it was defined."""
    rng = np.random.default_rng([seed, zlib.crc32(str(key).encode())])
    values = []
    for _ in range(samples):
        try:
            fs = s.resample(rng, form, use_frontier)
            fd = d.resample(rng, form, use_frontier)
            # a resample may cover a little less compute than the data: same loss anyway
            values.append(compute_multiplier(fs, fd, at_loss=target, extrapolate=True))
        except EinspaceError:
            continue  # a replicate with one distinct compute value or a flat law
    if len(values) < max(10, samples // 2):
        return math.nan, math.nan, len(values)
    lo, hi = np.percentile(values, [5.0, 95.0])
    return float(lo), float(hi), len(values)


def envelope_table(
    points: pd.DataFrame,
    group: str = "structure",
    dense: str = "dense",
    *,
    compute: str = "compute",
    loss: str = "loss",
    form: str = "power",
    use_frontier: bool = True,
    run: str = "run_id",
    width: str = "width",
    step: str = "step",
    lr: str = "lr",
    final: str = "final",
    warmup_fraction: float = WARMUP_FRACTION,
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """The envelope law per group of a long-format table of points, with multipliers.

    **Points.** Where a ``final`` column says which points end a finished schedule, only
    those are fitted; elsewhere (no such column, or ``<NA>`` for runs logged without a
    schedule) the power-law part of each curve (:func:`power_law_points`: no untrained
    start, no warmup). ``n_used`` and ``n_left_out`` count the points kept and dropped.
    Each group is then fitted with :func:`~analysis.laws.fit_power_law`.

    **Multiplier.** ``multiplier`` is :func:`compute_multiplier` against the group named
    ``dense``, read at ``multiplier_loss``: the lowest loss that *both* fits reach inside
    their measured compute ranges (and, where there is one, that both measured
    frontiers reach too, so the interpolated cross-check reads the same loss). When the
    fits' loss ranges do not overlap, the multiplier would be an extrapolation: it is NaN
    and ``note`` says so. ``multiplier_lo`` and ``multiplier_hi`` are a seeded 90 %
    percentile bootstrap interval at that loss (``bootstrap`` refits of both groups; runs
    are resampled when some width has several runs, else frontier points;
    ``bootstrap_unit`` says which). ``multiplier_interp`` is the multiplier read at the same
    loss directly off the two measured frontiers (log-log interpolation, no fit; NaN, with
    a note, where a measured frontier does not reach that loss); ``multiplier_flag`` is True
    when it lies outside the interval. ``note`` also says, in words, when a multiplier
    rests on fewer than 4 frontier points or on one width. ``multiplier_status`` is a short
    label: ``ok``, ``too little data``, ``disagrees``, ``no overlap``, ``no dense`` or
    ``fit failed``.

    Returns:
        One row per group, sorted by group, with the columns :data:`ENVELOPE_COLUMNS`.

    Raises:
        EinspaceError: a column is missing or ``form`` is unknown.

    Examples:
        >>> c = [1e6, 1e7, 1e8, 1e9]
        >>> df = pd.DataFrame({"structure": ["dense"] * 4 + ["btt"] * 4,
        ...                    "compute": c + c,
        ...                    "loss": [10 * x ** -0.2 for x in c] + [8 * x ** -0.2 for x in c]})
        >>> t = envelope_table(df)
        >>> t["structure"].tolist(), t["m"].round(6).tolist()
        (['btt', 'dense'], [0.2, 0.2])
        >>> btt = t[t.structure == "btt"].iloc[0]
        >>> round(float(btt["multiplier"]), 4), round(float(btt["multiplier_interp"]), 4)
        (3.0518, 3.0518)
    """
    chosen = check_form(form)
    used = power_law_points(
        points, compute=compute, run=run, step=step, lr=lr, warmup_fraction=warmup_fraction
    )
    if final in points.columns:  # finished schedules only, where the points say which
        known = points[final].notna()
        finished = points[final].fillna(False).astype(bool) & (points[compute] != 0)
        used = used.where(~known, finished)
    left_out = (~used).groupby(points[group]).sum()
    groups, fits = _fit_groups(points[used], group, compute, loss, run, width, chosen, use_frontier)
    for key in left_out.index:  # every point of the group was warmup or untrained
        if key not in fits:
            fits[key] = "fit failed: no point after warmup and the untrained start"
    dense_fit = fits.get(dense)
    has_width = width in points.columns
    rows = [
        _row(key, fits, groups, (group, dense, chosen), int(left_out.get(key, 0)), has_width)
        for key in sorted(fits, key=str)
    ]
    for row in rows:
        key = row[group]
        fit, g = fits[key], groups.get(key)
        if isinstance(fit, str) or isinstance(dense_fit, str) or dense_fit is None:
            continue
        assert g is not None
        notes = [row["note"]] if row["note"] else []
        pair = _Pair(fit, g, dense_fit, groups[dense], chosen, use_frontier)
        _multiplier(row, key, pair, bootstrap, seed, has_width, notes)
        row["note"] = "; ".join(notes)
    table = pd.DataFrame(rows, columns=[group, *ENVELOPE_COLUMNS])
    table["n_points"] = table["n_points"].astype(int)
    return table


def _row(
    key: Any,
    fits: dict[Any, ScalingFit | str],
    groups: dict[Any, _Group],
    names: tuple[str, str, str],
    left_out: int,
    has_width: bool,
) -> dict[str, Any]:
    """A group's row before its multiplier: the fit's columns, counts and dense's absence
    (``names``: the group column, dense's label and the form)."""
    group, dense, form = names
    fit, g = fits[key], groups.get(key)
    row: dict[str, Any] = {group: key, "form": form}
    row.update(dict.fromkeys(_NUMERIC_COLUMNS, math.nan))
    row.update(
        multiplier_flag=False,
        n_used=0 if g is None else len(g.compute),
        n_left_out=left_out,
        n_runs=0 if g is None else g.n_runs,
        n_widths=0 if g is None or not has_width else g.n_widths,
        bootstrap_unit="",
        note="",
    )
    if isinstance(fit, str):
        row.update(n_points=0, note=fit, multiplier_status="fit failed")
        return row
    row.update({k: getattr(fit, k) for k in _FIT_FIELDS})
    dense_fit = fits.get(dense)
    if not isinstance(dense_fit, ScalingFit):
        row["multiplier_status"] = "no dense"
        row["note"] = (
            f"no dense group {dense!r} in column {group!r}"
            if dense_fit is None
            else f"dense {dense_fit}"
        )
    return row


def _fit_groups(
    trained: pd.DataFrame,
    group: str,
    compute: str,
    loss: str,
    run: str,
    width: str,
    form: Form,
    use_frontier: bool,
) -> tuple[dict[Any, _Group], dict[Any, ScalingFit | str]]:
    """Each group's points and its envelope fit (or why it failed)."""
    fits: dict[Any, ScalingFit | str] = {}
    groups: dict[Any, _Group] = {}
    for key, frame in trained.groupby(group, sort=True):
        n = len(frame)
        groups[key] = _Group(
            compute=frame[compute].to_numpy(dtype=float),
            loss=frame[loss].to_numpy(dtype=float),
            runs=(frame[run] if run in frame else pd.Series(np.arange(n))).to_numpy(object),
            widths=(frame[width] if width in frame else pd.Series(np.arange(n))).to_numpy(object),
        )
        try:
            fits[key] = fit_power_law(frame[compute], frame[loss], form, use_frontier)
        except EinspaceError as err:
            fits[key] = f"fit failed: {err}"
    return groups, fits


@dataclass(frozen=True)
class _Pair:
    """A structure's envelope fit and points beside dense's."""

    fit: ScalingFit
    g: _Group
    dense_fit: ScalingFit
    d: _Group
    form: Form
    use_frontier: bool


def _multiplier(
    row: dict[str, Any],
    key: object,
    pair: _Pair,
    bootstrap: int,
    seed: int,
    has_width: bool,
    notes: list[str],
) -> None:
    """Fill the multiplier columns of ``row`` (the envelope's reading rule) and its notes."""
    fit, g, dense_fit, d = pair.fit, pair.g, pair.dense_fit, pair.d
    sc, sl = frontier(g.compute, g.loss)
    dc, dl = frontier(d.compute, d.loss)
    measured = ((float(sl.min()), float(sl.max())), (float(dl.min()), float(dl.max())))
    target, why = _read_loss(fit, dense_fit, measured)
    if not math.isfinite(target):
        row["multiplier_status"] = "no overlap"
        notes.append(why)
        return
    try:
        row["multiplier"] = compute_multiplier(fit, dense_fit, at_loss=target)
    except EinspaceError as err:
        row["multiplier_status"] = "fit failed"
        notes.append(f"no multiplier: {err}")
        return
    row["multiplier_loss"] = target
    row["multiplier_interp"] = _interp_compute(dc, dl, target) / _interp_compute(sc, sl, target)
    if not math.isfinite(row["multiplier_interp"]):
        notes.append(
            f"no interpolated cross-check: the measured frontiers do not both reach loss "
            f"{target:.4g} (measured losses: structure {sl.min():.4g}–{sl.max():.4g}, dense "
            f"{dl.min():.4g}–{dl.max():.4g})"
        )
    if bootstrap > 0:
        lo, hi, ok = _bootstrap(g, d, target, pair.form, pair.use_frontier, bootstrap, seed, key)
        row.update(multiplier_lo=lo, multiplier_hi=hi, bootstrap_unit=g.bootstrap_unit)
        if not math.isfinite(lo):
            notes.append(
                f"no interval: only {ok} of {bootstrap} bootstrap refits gave a multiplier"
            )
    thin = []
    fewest = min(fit.n_points, dense_fit.n_points)
    if fewest < MIN_FRONTIER_POINTS:
        thin.append(f"{fewest} frontier points (fewer than {MIN_FRONTIER_POINTS})")
    if has_width and min(g.n_widths, d.n_widths) == 1:
        thin.append("one width")
    if thin:
        notes.append("rests on too little: " + " and ".join(thin))
    interp, lo, hi = row["multiplier_interp"], row["multiplier_lo"], row["multiplier_hi"]
    status = "too little data" if thin else "ok"
    if math.isfinite(interp) and math.isfinite(lo) and not lo <= interp <= hi:
        row["multiplier_flag"] = True
        status = "disagrees"
        notes.append(
            f"fitted {row['multiplier']:.3g}× and interpolated {interp:.3g}× disagree by more "
            f"than the 90 % interval [{lo:.3g}, {hi:.3g}]"
        )
    row["multiplier_status"] = status


_NUMERIC_COLUMNS = (
    "m",
    "m_se",
    "a",
    "a_se",
    "l_inf",
    "n_points",
    "compute_min",
    "compute_max",
    "multiplier",
    "multiplier_loss",
    "multiplier_lo",
    "multiplier_hi",
    "multiplier_interp",
)
_MULTIPLIER_COLUMNS = (
    "multiplier_flag",
    "multiplier_status",
    "n_used",
    "n_left_out",
    "n_runs",
    "n_widths",
    "bootstrap_unit",
)
_FIT_FIELDS = ("m", "m_se", "a", "a_se", "l_inf", "n_points", "compute_min", "compute_max")
ENVELOPE_COLUMNS: tuple[str, ...] = ("form", *_NUMERIC_COLUMNS, *_MULTIPLIER_COLUMNS, "note")
"""The columns of :func:`envelope_table` after the group column."""
