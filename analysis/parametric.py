"""The compute multiplier from Chinchilla fits of finished runs, with a run-level bootstrap.

docs/fits.md. Per structure, :func:`finished_runs` collects the finished schedules (``N``,
``D``, loss, MACs per token, width and the bootstrap unit: a trunk with its cooldown
branches); :func:`fit_structure` fits :func:`analysis.chinchilla.fit_chinchilla` and builds
its compute-optimal frontier. :func:`reading_loss` picks the loss a multiplier is read at:
the lowest loss both structures measured at which each one's compute-optimal ``(N, D)``
lies inside the ``N`` and ``D`` it measured, so nothing is extrapolated.
:func:`bootstrap_multipliers` resamples whole runs within each width and refits both
structures per replicate (warm-started from the full fits).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.chinchilla import ChinchillaFit, ComputeOptimal, MacsPerToken, fit_chinchilla
from einspace.errors import EinspaceError

__all__ = [
    "PARAMETRIC_COLUMNS",
    "READING_GRID",
    "FinishedRuns",
    "StructureFit",
    "bootstrap_multipliers",
    "finished_runs",
    "fit_structure",
    "frontier_band",
    "interval_scale",
    "parametric_table",
    "percentile_interval",
    "reading_loss",
]

FloatArray = npt.NDArray[np.float64]

READING_GRID = 400
"""Losses tried (log-spaced over the common measured range) when picking the reading loss."""

_RTOL = 1e-6


@dataclass(frozen=True)
class FinishedRuns:
    """One structure's finished schedules.

    Attributes:
        params: ``N`` per point.
        tokens: ``D`` per point.
        loss: the loss per point.
        macs: forward MACs per token per point.
        widths: the width per point (a running index when unknown).
        units: the bootstrap unit per point (the trunk's run id for a branch, else the run id).
        flops: training FLOPs of the structure's runs (a trunk once, a branch for its own
            logged span).
        strata: point indices of each unit, grouped by width; widths with one unit are
            pooled into one stratum so that they are resampled too.
        pooled: whether some widths were pooled so.
    """

    params: FloatArray
    tokens: FloatArray
    loss: FloatArray
    macs: FloatArray
    widths: npt.NDArray[np.object_]
    units: npt.NDArray[np.object_]
    flops: float
    strata: list[list[npt.NDArray[np.intp]]] = field(default_factory=list)
    pooled: bool = False

    @property
    def seeds(self) -> int:
        """The fewest units at any width."""
        per_width = pd.Series(self.units).groupby(pd.Series(self.widths)).nunique()
        return int(per_width.min()) if len(per_width) else 0

    @property
    def variance_factor(self) -> float:
        """How much the bootstrap underestimates the variance: resampling ``n`` units of a
        stratum gives ``(n − 1)/n`` of the true variance of their mean, so the factor is
        ``n/(n − 1)`` averaged over the units (Rao & Wu 1988's rescaling); inf when no
        stratum can be resampled."""
        sizes = [len(s) for s in self.strata]
        total = sum(sizes)
        if total == 0 or max(sizes) < 2:
            return math.inf
        return sum(n * n / (n - 1) for n in sizes if n > 1) / sum(n for n in sizes if n > 1)

    @property
    def degrees_of_freedom(self) -> int:
        """``Σ (n − 1)`` over the strata: how many independent run-to-run differences the
        bootstrap's spread rests on."""
        return sum(len(s) - 1 for s in self.strata)

    def draw(self, rng: np.random.Generator) -> npt.NDArray[np.intp]:
        """Point indices of one bootstrap replicate: units drawn with replacement per stratum."""
        parts = [
            stratum[int(k)]
            for stratum in self.strata
            for k in rng.integers(0, len(stratum), len(stratum))
        ]
        return np.concatenate(parts)


def finished_runs(
    frame: pd.DataFrame,
    all_points: pd.DataFrame,
    columns: Mapping[str, str],
) -> FinishedRuns:
    """Collect one structure's finished points (``frame``) for the parametric fit.

    ``columns`` names the frame's ``loss``, ``params``, ``tokens``, ``compute``, ``width``,
    ``run`` and ``parent`` columns; MACs per token come from ``macs_per_token`` where it is
    logged, else ``compute / (6 · tokens)``. ``all_points`` (every point of the structure, finished
    or not) gives the FLOPs spent.
    """
    n = len(frame)
    c = columns
    with np.errstate(divide="ignore", invalid="ignore"):
        macs = frame[c["compute"]].to_numpy(float) / (6.0 * frame[c["tokens"]].to_numpy(float))
    if "macs_per_token" in frame:  # the logged value where there is one
        logged = frame["macs_per_token"].to_numpy(float)
        macs = np.where(np.isfinite(logged) & (logged > 0), logged, macs)
    widths = (frame[c["width"]] if c["width"] in frame else pd.Series(np.arange(n))).to_numpy(
        object
    )
    units = _units(frame, c).to_numpy(object)
    by_width: dict[object, dict[object, list[int]]] = {}
    for i, (w, u) in enumerate(zip(widths.tolist(), units.tolist(), strict=True)):
        by_width.setdefault(w, {}).setdefault(u, []).append(i)
    strata: list[list[npt.NDArray[np.intp]]] = []
    lonely: list[npt.NDArray[np.intp]] = []
    for groups in by_width.values():
        arrays = [np.asarray(v, dtype=np.intp) for v in groups.values()]
        if len(arrays) > 1:
            strata.append(arrays)
        else:
            lonely += arrays
    if len(lonely) == 1 and strata:  # one run alone cannot be resampled: join the smallest
        min(strata, key=len).append(lonely[0])
    elif lonely:
        strata.append(lonely)
    return FinishedRuns(
        params=frame[c["params"]].to_numpy(float),
        tokens=frame[c["tokens"]].to_numpy(float),
        loss=frame[c["loss"]].to_numpy(float),
        macs=macs,
        widths=widths,
        units=units,
        flops=_flops(all_points, c),
        strata=strata,
        pooled=bool(lonely),
    )


def _units(frame: pd.DataFrame, c: Mapping[str, str]) -> pd.Series:
    """The bootstrap unit of each point: the parent run for a branch, else the run."""
    if c["run"] not in frame:
        return pd.Series(np.arange(len(frame)), index=frame.index)
    runs = frame[c["run"]].astype(object)
    if c["parent"] not in frame:
        return runs
    parent = frame[c["parent"]].astype(object)
    return parent.where(parent.notna(), runs)


def _flops(points: pd.DataFrame, c: Mapping[str, str]) -> float:
    """FLOPs spent: each run's logged compute span, a run without parent from 0."""
    if c["run"] not in points or c["compute"] not in points:
        return float(points[c["compute"]].max()) if c["compute"] in points else math.nan
    spans = points.groupby(c["run"])[c["compute"]].agg(["min", "max"])
    if c["parent"] in points:
        has_parent = points[c["parent"]].notna().groupby(points[c["run"]]).any()
        spans.loc[~has_parent.reindex(spans.index).to_numpy(bool), "min"] = 0.0
    else:
        spans["min"] = 0.0
    return float((spans["max"] - spans["min"]).sum())


@dataclass(frozen=True)
class StructureFit:
    """A structure's fitted law, its frontier and the ``N``, ``D`` and losses it measured."""

    law: ChinchillaFit
    optimal: ComputeOptimal
    n_range: tuple[float, float]
    d_range: tuple[float, float]
    loss_range: tuple[float, float]

    def inside(self, loss: float) -> bool:
        """Whether the compute-optimal ``(N, D)`` at ``loss`` lies inside the measured ones."""
        c, n, d = self.optimal.optimum(loss)
        if not math.isfinite(c):
            return False
        (n_lo, n_hi), (d_lo, d_hi) = self.n_range, self.d_range
        return bool(
            n_lo * (1 - _RTOL) <= n <= n_hi * (1 + _RTOL)
            and d_lo * (1 - _RTOL) <= d <= d_hi * (1 + _RTOL)
        )


def fit_structure(
    runs: FinishedRuns,
    idx: npt.NDArray[np.intp] | None = None,
    start: ChinchillaFit | None = None,
) -> StructureFit:
    """Fit the law to ``runs`` (or to the points ``idx`` of it, a bootstrap replicate)."""
    sel = slice(None) if idx is None else idx
    n, d, ell = runs.params[sel], runs.tokens[sel], runs.loss[sel]
    law = fit_chinchilla(n, d, ell, start=start)
    n_range = (float(runs.params.min()), float(runs.params.max()))
    macs = MacsPerToken(runs.params, runs.macs)
    return StructureFit(
        law=law,
        optimal=ComputeOptimal(law, macs),
        n_range=n_range,
        d_range=(float(runs.tokens.min()), float(runs.tokens.max())),
        loss_range=(float(runs.loss.min()), float(runs.loss.max())),
    )


def reading_loss(s: StructureFit, d: StructureFit) -> tuple[float, str]:
    """The lowest loss both structures measured at which both compute-optimal runs lie
    inside what they measured; NaN and the reason when there is none."""
    lo = max(s.loss_range[0], d.loss_range[0])
    hi = min(s.loss_range[1], d.loss_range[1])
    if not lo < hi:
        return math.nan, (
            f"no overlap: the structure's finished runs measured losses "
            f"{s.loss_range[0]:.4g}–{s.loss_range[1]:.4g} and dense's "
            f"{d.loss_range[0]:.4g}–{d.loss_range[1]:.4g}; a multiplier would be extrapolated"
        )
    for loss in np.geomspace(lo, hi, READING_GRID):
        if s.inside(float(loss)) and d.inside(float(loss)):
            return float(loss), ""
    return math.nan, (
        f"no loss in {lo:.4g}–{hi:.4g} (measured by both) has both compute-optimal runs "
        f"inside the sizes and token counts measured: the frontiers would be extrapolated; "
        f"wider widths or longer and shorter horizons are needed"
    )


def bootstrap_multipliers(
    structures: Mapping[str, tuple[FinishedRuns, StructureFit, float]],
    dense: tuple[FinishedRuns, StructureFit],
    samples: int,
    seed: int,
) -> dict[str, FloatArray]:
    """Bootstrap replicates of each structure's multiplier at its reading loss.

    ``structures`` maps a name to its runs, full fit and reading loss. Each replicate
    resamples dense's runs and every structure's within widths, refits them from the full
    fits and reads ``C_dense(L) / C_structure(L)`` at each structure's reading loss (0 or
    inf where a refit never reaches that loss).
    """
    rng = np.random.default_rng([seed, zlib.crc32(b"parametric")])
    d_runs, d_fit = dense
    out: dict[str, list[float]] = {name: [] for name in structures}
    for _ in range(samples):
        try:
            d_rep = fit_structure(d_runs, d_runs.draw(rng), d_fit.law)
        except EinspaceError:
            continue
        for name, (runs, fit, target) in structures.items():
            rep = fit_structure(runs, runs.draw(rng), fit.law)
            c_d, c_s = d_rep.optimal.compute_at(target), rep.optimal.compute_at(target)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[name].append(float(np.divide(c_d, c_s)))
    return {name: np.asarray(v, dtype=float) for name, v in out.items()}


def interval_scale(s: FinishedRuns, d: FinishedRuns, level: float = 0.9) -> float:
    """How far to stretch the bootstrap replicates around the estimate (in log space).

    Two small-sample corrections multiply: ``√(n/(n − 1))`` (:attr:`FinishedRuns.
    variance_factor`, averaged over both structures) restores the variance that resampling
    ``n`` runs per width misses, and ``t_df / z`` (the Student-t over the normal quantile at
    ``level``, with ``df`` the run-to-run differences of both structures) widens the interval
    for a spread estimated from few runs, as a t interval does for an estimated standard error.

    Examples:
        >>> runs = FinishedRuns(*(np.zeros(8),) * 4, np.zeros(8, object), np.zeros(8, object),
        ...                     0.0, strata=[[np.arange(2), np.arange(2, 4)]] * 4)
        >>> round(interval_scale(runs, runs), 3)   # 2 runs per width, df = 8: √2 · 1.860/1.645
        1.599
    """
    from scipy.stats import norm, t

    factor = 0.5 * (s.variance_factor + d.variance_factor)
    df = s.degrees_of_freedom + d.degrees_of_freedom
    if not math.isfinite(factor) or df < 1:
        return math.inf
    q = 0.5 + level / 2
    return math.sqrt(factor) * float(t.ppf(q, df) / norm.ppf(q))


def percentile_interval(
    values: FloatArray, estimate: float = math.nan, scale: float = 1.0, level: float = 0.9
) -> tuple[float, float]:
    """The equal-tailed ``level`` percentile interval of positive bootstrap replicates.

    With a finite ``estimate``, each replicate's distance from it in log space is first
    multiplied by ``scale`` (the rescaled bootstrap: ``scale = √(n/(n−1))`` undoes the
    variance a bootstrap of ``n`` units per stratum misses). NaN replicates are dropped;
    0 and inf stay (a refit that never reaches the loss); NaN when fewer than 10 remain.

    Examples:
        >>> percentile_interval(np.exp(np.linspace(-1.0, 1.0, 101)))
        (0.4065696597405991, 2.45960311115695)
        >>> lo, hi = percentile_interval(np.exp(np.linspace(-1.0, 1.0, 101)), 1.0, 2.0)
        >>> round(math.log(lo), 6), round(math.log(hi), 6)
        (-1.8, 1.8)
    """
    ok = values[~np.isnan(values)]
    if ok.size < 10:
        return math.nan, math.nan
    with np.errstate(divide="ignore"):
        logs = np.clip(np.log(ok), -700.0, 700.0)
    if not math.isfinite(scale):
        return 0.0, math.inf
    if math.isfinite(estimate) and estimate > 0 and scale != 1.0:
        logs = math.log(estimate) + scale * (logs - math.log(estimate))
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(logs, [tail, 100.0 - tail])
    return float(np.exp(lo)), float(np.exp(hi))


PARAMETRIC_COLUMNS: tuple[str, ...] = (
    "law",
    "E",
    "A",
    "alpha",
    "B",
    "beta",
    "n_finished",
    "multiplier",
    "multiplier_loss",
    "multiplier_lo",
    "multiplier_hi",
    "compute_at_loss",
    "n_opt_exponent",
    "tokens_per_param",
    "seeds",
    "flops",
    "wider_flops",
    "bootstrap_unit",
    "multiplier_status",
    "note",
)
"""The columns of :func:`parametric_table` after the group column."""


def parametric_table(
    finished: pd.DataFrame,
    every: pd.DataFrame,
    group: str,
    dense: str,
    columns: Mapping[str, str],
    bootstrap: int,
    seed: int,
) -> pd.DataFrame:
    """One parametric row per group: the law, the multiplier, its interval and the optimum.

    ``finished`` holds the finished schedules, ``every`` every point (for the FLOPs spent);
    ``columns`` is as for :func:`finished_runs`.
    """
    runs: dict[str, FinishedRuns] = {}
    fits: dict[str, StructureFit | str] = {}
    for key, frame in finished.groupby(group, sort=True):
        name = str(key)
        runs[name] = finished_runs(frame, every[every[group] == key], columns)
        try:
            fits[name] = fit_structure(runs[name])
        except EinspaceError as err:
            fits[name] = f"fit failed: {err}"
    for key in every[group].dropna().unique():
        fits.setdefault(str(key), "fit failed: no finished run")
    rows = {name: _law_row(name, fits[name], runs.get(name)) for name in fits}
    dense_fit = fits.get(dense)
    todo: dict[str, tuple[FinishedRuns, StructureFit, float]] = {}
    for name, row in rows.items():
        fit = fits[name]
        if not isinstance(fit, StructureFit):
            continue
        if not isinstance(dense_fit, StructureFit):
            row["multiplier_status"] = "no dense"
            row["note"] = (
                f"no dense group {dense!r} in column {group!r}"
                if dense_fit is None
                else f"dense {dense_fit}"
            )
            continue
        target, why = reading_loss(fit, dense_fit)
        if not math.isfinite(target):
            row.update(multiplier_status="no overlap", note=why)
            continue
        _read(row, fit, dense_fit, target)
        if name != dense:
            todo[name] = (runs[name], fit, target)
    if todo and bootstrap > 0 and isinstance(dense_fit, StructureFit):
        reps = bootstrap_multipliers(todo, (runs[dense], dense_fit), bootstrap, seed)
        for name, values in reps.items():
            estimate = float(rows[name]["multiplier"])
            scale = interval_scale(runs[name], runs[dense])
            lo, hi = percentile_interval(values, estimate, scale)
            rows[name].update(multiplier_lo=lo, multiplier_hi=hi)
            rows[name]["flops"] += runs[dense].flops
            rows[name]["seeds"] = min(rows[name]["seeds"], runs[dense].seeds)
            rows[name]["wider_flops"] += _wider_flops(runs[dense])
    if dense in rows and isinstance(dense_fit, StructureFit):
        rows[dense].update(multiplier_lo=1.0, multiplier_hi=1.0)
    table = pd.DataFrame(
        [{group: name, **rows[name]} for name in sorted(rows)],
        columns=[group, *PARAMETRIC_COLUMNS],
    )
    return table


def _law_row(name: str, fit: StructureFit | str, runs: FinishedRuns | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(PARAMETRIC_COLUMNS, math.nan)
    row.update(law="parametric", note="", multiplier_status="", bootstrap_unit="")
    row["n_finished"] = 0 if runs is None else len(runs.loss)
    if runs is not None:
        row.update(seeds=runs.seeds, flops=runs.flops, wider_flops=_wider_flops(runs))
        row["bootstrap_unit"] = (
            "runs within widths (widths with one run pooled)"
            if runs.pooled
            else "runs within widths"
        )
    if isinstance(fit, str):
        row.update(multiplier_status="fit failed", note=fit)
        return row
    law = fit.law
    row.update(E=law.E, A=law.A, alpha=law.alpha, B=law.B, beta=law.beta, multiplier_status="ok")
    return row


def _read(row: dict[str, Any], fit: StructureFit, dense: StructureFit, target: float) -> None:
    """The multiplier, the optimum's exponent and tokens per parameter at ``target``."""
    c, n, d = fit.optimal.optimum(target)
    row.update(
        multiplier=dense.optimal.compute_at(target) / c,
        multiplier_loss=target,
        compute_at_loss=c,
        n_opt_exponent=fit.optimal.exponent_at(target),
        tokens_per_param=d / n,
    )


def _wider_flops(runs: FinishedRuns) -> float:
    """FLOPs of the widest width's runs again at twice that width (same tokens per parameter):
    the current ones scaled by the growth of ``N`` and of ``M`` (log-log in width)."""
    try:
        widths = runs.widths.astype(float)
    except (TypeError, ValueError):
        return math.nan
    levels = np.unique(widths)
    if levels.size < 2 or not ((runs.params > 0) & (runs.macs > 0)).all():
        return math.nan
    top = widths == levels[-1]
    n_by_w = [float(np.mean(runs.params[widths == w])) for w in levels]
    slope = np.polyfit(np.log(levels), np.log(n_by_w), 1)[0]
    n_top = n_by_w[-1]
    n_new = n_top * 2.0**slope
    macs = MacsPerToken(runs.params, runs.macs)
    growth = (n_new / n_top) * float(macs(n_new) / macs(n_top))
    share = float(np.sum(runs.tokens[top] * runs.macs[top]) / np.sum(runs.tokens * runs.macs))
    return runs.flops * share * growth


def frontier_band(
    runs: FinishedRuns,
    fit: StructureFit,
    compute: FloatArray,
    samples: int = 100,
    seed: int = 0,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The fitted frontier ``L*(C)`` at ``compute`` with a 90 % bootstrap band.

    Each replicate resamples whole runs within widths (as :func:`bootstrap_multipliers`),
    refits, and reads its frontier at the same compute values; the band is the 5th and 95th
    percentile per value (NaN without replicates).

    Returns:
        ``(loss, lo, hi)``, each the length of ``compute``.
    """
    rng = np.random.default_rng([seed, zlib.crc32(b"frontier")])
    curves = [_frontier_at(fit, compute)]
    for _ in range(samples):
        try:
            rep = fit_structure(runs, runs.draw(rng), fit.law)
        except EinspaceError:
            continue
        curves.append(_frontier_at(rep, compute))
    stack = np.vstack(curves)
    if len(curves) < 11:
        nan = np.full(compute.shape, math.nan)
        return stack[0], nan, nan
    lo, hi = np.nanpercentile(stack[1:], [5.0, 95.0], axis=0)
    return stack[0], lo, hi


def _frontier_at(fit: StructureFit, compute: FloatArray) -> FloatArray:
    """``L*(C)`` at ``compute``: the frontier ``C*(L)`` on a grid of losses, inverted by
    log-log interpolation."""
    law = fit.law
    hi = float(fit.loss_range[1]) * 1.5
    losses = law.E + (hi - law.E) * np.geomspace(1e-3, 1.0, 120)
    c = np.array([fit.optimal.compute_at(float(v)) for v in losses])
    ok = np.isfinite(c)
    if not ok.any():  # a degenerate replicate (e.g. a flat law): no frontier to draw
        return np.full(np.shape(compute), math.nan)
    order = np.argsort(c[ok])
    x, y = np.log(c[ok][order]), np.log(losses[ok][order])
    out = np.exp(np.interp(np.log(compute), x, y, left=np.nan, right=np.nan))
    return np.asarray(out, dtype=float)
