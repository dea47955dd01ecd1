"""Scaling laws: the compute-optimal frontier, power-law fits and the compute multiplier.

This module implements THEORY §6. A proxy run logs ``(compute, loss)`` pairs; for one
structure all pairs of all widths are pooled, the lower convex hull in
``(log C, log L)`` is the compute-optimal :func:`frontier`, and
:func:`fit_power_law` fits

- the *power* form ``log L = a − m log C`` (natural logarithms), or
- the *offset* form ``L = L∞ + b C^{−m}``.

:func:`compute_multiplier` reads two fitted frontiers at the same loss and reports how
many times less compute one structure needs than dense; :func:`fit_table` does all of it
for a long-format table of points.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

from einspace.errors import EinspaceError, suggest

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "FORMS",
    "MIN_FRONTIER_POINTS",
    "WARMUP_FRACTION",
    "ScalingFit",
    "compute_multiplier",
    "fit_power_law",
    "fit_table",
    "format_multiplier",
    "frontier",
    "interpolated_multiplier",
    "power_law_points",
]

FORMS: tuple[str, ...] = ("power", "offset")
"""The functional forms :func:`fit_power_law` knows."""

Form = Literal["power", "offset"]
FloatArray = npt.NDArray[np.float64]

# A hull point is dropped only when it lies above the chord of its neighbours by more
# than this relative amount, so points on a straight line in log-log space (an exact
# power law) all stay on the frontier despite rounding.
_COLLINEAR_RTOL = 1e-9


# --------------------------------------------------------------------------- checks


def _as_positive_array(values: npt.ArrayLike, what: str) -> FloatArray:
    """Return ``values`` as a 1-d float array, or raise naming the first bad entry."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise EinspaceError(
            f"{what} must be an array of positive finite numbers; got {values!r}"
        ) from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise EinspaceError(f"{what} must be 1-dimensional; got an array of shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise EinspaceError(
            f"{what} must be positive and finite; {int(bad.sum())} of {arr.size} values are "
            f"not, the first is {float(arr[first])!r} at index {first}. Drop those points (for "
            f"example compute = 0 at step 0) before fitting"
        )
    return arr


def _pair(compute: npt.ArrayLike, loss: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    c = _as_positive_array(compute, "compute")
    ell = _as_positive_array(loss, "loss")
    if c.size != ell.size:
        raise EinspaceError(
            f"compute and loss must have the same length; got {c.size} and {ell.size}"
        )
    if c.size < 2:
        raise EinspaceError(f"a scaling fit needs at least 2 (compute, loss) points; got {c.size}")
    return c, ell


def _check_form(form: str) -> Form:
    if form == "power":
        return "power"
    if form == "offset":
        return "offset"
    raise EinspaceError(f"unknown scaling-law form {form!r}; {suggest(str(form), FORMS)}")


# --------------------------------------------------------------------------- frontier


def frontier(compute: npt.ArrayLike, loss: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return the compute-optimal frontier of a set of ``(compute, loss)`` points.

    The frontier is the lower convex hull of the points in ``(log C, log L)``, sorted by
    compute, with the monotone clean-up of THEORY §6: a hull point is kept only if its
    loss is lower than that of every kept point with less compute (so the rising tail
    of the hull, where more compute does not lower the loss, is dropped). Of several
    points with the same compute only the lowest loss can be on the hull. Points exactly
    on a hull edge (up to a relative tolerance of 1e-9) are kept, so noiseless
    power-law data is its own frontier.

    Args:
        compute: positive, finite compute values (e.g. training FLOPs).
        loss: positive, finite losses, one per compute value.

    Returns:
        ``(compute, loss)`` of the frontier points as float arrays, by increasing compute.

    Raises:
        EinspaceError: lengths differ, fewer than 2 points, or a value is NaN, infinite or
            not positive.

    Examples:
        >>> c, ell = frontier([1, 10, 10, 100, 1000], [8.0, 4.0, 9.0, 3.5, 3.6])
        >>> c.tolist(), ell.tolist()
        ([1.0, 10.0, 100.0], [8.0, 4.0, 3.5])
    """
    c, ell = _pair(compute, loss)
    x, y = np.log(c), np.log(ell)
    order = np.lexsort((y, x))  # by log C, then by log L
    hull: list[int] = []
    last_x = math.nan
    for i in order:
        if x[i] == last_x:  # same compute, higher loss: cannot be on the lower hull
            continue
        last_x = x[i]
        while len(hull) >= 2 and _above_chord(x, y, hull[-2], hull[-1], i):
            hull.pop()
        hull.append(int(i))
    kept: list[int] = []
    for i in hull:
        if not kept or y[i] < y[kept[-1]]:
            kept.append(i)
    idx = np.asarray(kept, dtype=np.intp)
    return c[idx].copy(), ell[idx].copy()


def _above_chord(x: FloatArray, y: FloatArray, o: int, a: int, b: int) -> bool:
    """Whether point ``a`` lies strictly above the segment from ``o`` to ``b``."""
    ax, ay = x[a] - x[o], y[a] - y[o]
    bx, by = x[b] - x[o], y[b] - y[o]
    cross = ax * by - ay * bx  # > 0: counter-clockwise turn, a is below the chord
    scale = math.hypot(ax, ay) * math.hypot(bx, by)
    return bool(cross < -_COLLINEAR_RTOL * scale)


# --------------------------------------------------------------------------- fits


@dataclass(frozen=True)
class ScalingFit:
    """A fitted scaling law ``L(C) = l_inf + b · C^{−m}``, with standard errors.

    The power form has ``l_inf = 0`` and is fitted as ``log L = a − m log C`` with natural
    logarithms, so ``b = exp(a)``. The offset form fits ``l_inf``, ``b`` and ``m``
    directly and reports ``a = log b``. A standard error that could not be estimated
    (exactly as many points as parameters, or a parameter the form does not fit, like
    ``l_inf`` of the power form) is ``nan``; ``b_se`` and ``a_se`` are converted into
    each other with the delta method.

    Attributes:
        form: ``"power"`` or ``"offset"``.
        m: the scaling exponent; a larger ``m`` means loss falls faster with compute.
        m_se: standard error of ``m``.
        a: log-space intercept, ``log b``.
        a_se: standard error of ``a``.
        b: the coefficient ``b = exp(a)``.
        b_se: standard error of ``b``.
        l_inf: the irreducible loss (``0.0`` for the power form).
        l_inf_se: standard error of ``l_inf`` (``nan`` for the power form).
        n_points: number of points fitted.
        compute_min: smallest compute among the fitted points.
        compute_max: largest compute among the fitted points.

    Examples:
        >>> fit = ScalingFit("power", m=0.5, m_se=0.0, a=math.log(100.0), a_se=0.0,
        ...                  b=100.0, b_se=0.0, l_inf=0.0, l_inf_se=math.nan,
        ...                  n_points=3, compute_min=1.0, compute_max=1e4)
        >>> round(fit.loss_at(1e4), 12), round(fit.compute_at(1.0), 6)
        (1.0, 10000.0)
    """

    form: str
    m: float
    m_se: float
    a: float
    a_se: float
    b: float
    b_se: float
    l_inf: float
    l_inf_se: float
    n_points: int
    compute_min: float
    compute_max: float

    @overload
    def loss_at(self, compute: float) -> float: ...

    @overload
    def loss_at(self, compute: FloatArray | Sequence[float]) -> FloatArray: ...

    def loss_at(self, compute: float | FloatArray | Sequence[float]) -> float | FloatArray:
        """Return the fitted loss at ``compute`` (a number or an array).

        Examples:
            >>> fit = fit_power_law([1.0, 100.0], [10.0, 1.0])
            >>> round(fit.loss_at(10.0), 12)
            3.162277660168
            >>> fit.loss_at([1.0, 100.0]).round(12).tolist()
            [10.0, 1.0]
        """
        c = _as_positive_array(compute, "compute")
        out = self.l_inf + np.exp(self.a - self.m * np.log(c))
        if np.ndim(compute) == 0:
            return float(out[0])
        return out

    @overload
    def compute_at(self, loss: float) -> float: ...

    @overload
    def compute_at(self, loss: FloatArray | Sequence[float]) -> FloatArray: ...

    def compute_at(self, loss: float | FloatArray | Sequence[float]) -> float | FloatArray:
        """Return the compute at which the fitted law reaches ``loss`` (inverse of loss_at).

        Raises:
            EinspaceError: the law never reaches ``loss`` (``loss <= l_inf``), or
                ``m <= 0`` so that the loss does not fall with compute.

        Examples:
            >>> fit = fit_power_law([1.0, 100.0], [10.0, 1.0])
            >>> round(fit.compute_at(1.0), 9)
            100.0
        """
        ell = _as_positive_array(loss, "loss")
        if not self.m > 0:
            raise EinspaceError(
                f"this {self.form} fit has m = {self.m!r}: the loss does not fall with "
                f"compute, so no compute reaches a given loss; expected m > 0"
            )
        gap = ell - self.l_inf
        if (gap <= 0).any():
            worst = float(ell[gap <= 0][0])
            raise EinspaceError(
                f"loss {worst!r} is never reached: the fitted irreducible loss is "
                f"l_inf = {self.l_inf!r}; expected a loss above it"
            )
        out = np.exp((self.a - np.log(gap)) / self.m)
        if np.ndim(loss) == 0:
            return float(out[0])
        return out

    @property
    def loss_range(self) -> tuple[float, float]:
        """(lowest, highest) fitted loss on the measured compute range.

        Examples:
            >>> [round(v, 9) for v in fit_power_law([1.0, 100.0], [10.0, 1.0]).loss_range]
            [1.0, 10.0]
        """
        return self.loss_at(self.compute_max), self.loss_at(self.compute_min)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain ``dict`` (JSON-friendly: str, int and float).

        Examples:
            >>> fit = fit_power_law([1.0, 100.0], [10.0, 1.0])
            >>> d = fit.to_dict()
            >>> d["form"], round(d["m"], 12), d["n_points"]
            ('power', 0.5, 2)
        """
        return asdict(self)


def fit_power_law(
    compute: npt.ArrayLike,
    loss: npt.ArrayLike,
    form: str = "power",
    use_frontier: bool = True,
) -> ScalingFit:
    """Fit a scaling law to ``(compute, loss)`` points.

    With ``use_frontier=True`` (the default) the points are first reduced to their
    compute-optimal :func:`frontier`; pass ``False`` to fit every point.

    - ``form="power"``: ordinary least squares of ``log L = a − m log C``. Standard
      errors come from the residual variance ``s² = RSS / (n − 2)`` times the diagonal
      of ``(XᵀX)⁻¹``. With exactly 2 points the line is exact and the standard errors
      are ``nan`` (there is no residual degree of freedom).
    - ``form="offset"``: ``L = L∞ + b C^{−m}`` by :func:`scipy.optimize.curve_fit` on
      ``log L`` (multiplicative noise), parametrised by ``(L∞, log b, m)`` with
      ``0 ≤ L∞ < min L``. The initial guess is the best power-law fit of ``L − L∞``
      over a grid of ``L∞``. Needs at least 3 points; with exactly 3 the standard
      errors are ``nan``.

    Args:
        compute: positive, finite compute values.
        loss: positive, finite losses.
        form: ``"power"`` or ``"offset"``.
        use_frontier: fit the frontier points only.

    Raises:
        EinspaceError: bad values (see :func:`frontier`), an unknown form, too few
            (distinct) points, or an offset fit that does not converge.

    Examples:
        >>> c = [1e6, 1e7, 1e8, 1e9]
        >>> fit = fit_power_law(c, [5.0 * x ** -0.25 for x in c])
        >>> round(fit.m, 9), round(math.exp(fit.a), 9), fit.n_points
        (0.25, 5.0, 4)
        >>> off = fit_power_law(c, [1.0 + 50.0 * x ** -0.3 for x in c], form="offset")
        >>> round(off.l_inf, 4), round(off.b, 2), round(off.m, 4)
        (1.0, 50.0, 0.3)
    """
    chosen = _check_form(form)
    if use_frontier:
        c, ell = frontier(compute, loss)
    else:
        c, ell = _pair(compute, loss)
    if np.unique(c).size < 2:
        raise EinspaceError(
            f"a scaling fit needs points at 2 or more distinct compute values; got "
            f"{c.size} point(s) all at compute {c[0]!r}"
            + (" after taking the frontier" if use_frontier else "")
        )
    if chosen == "power":
        return _fit_power(c, ell)
    return _fit_offset(c, ell, use_frontier)


def _fit_power(c: FloatArray, ell: FloatArray) -> ScalingFit:
    x, y = np.log(c), np.log(ell)
    design = np.column_stack([np.ones_like(x), -x])  # columns for (a, m)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    a, m = float(coef[0]), float(coef[1])
    n = c.size
    if n > 2:
        resid = y - design @ coef
        s2 = float(resid @ resid) / (n - 2)
        cov = s2 * np.linalg.inv(design.T @ design)
        a_se, m_se = math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1])
    else:
        a_se = m_se = math.nan
    b = math.exp(a)
    return ScalingFit(
        form="power",
        m=m,
        m_se=m_se,
        a=a,
        a_se=a_se,
        b=b,
        b_se=b * a_se,
        l_inf=0.0,
        l_inf_se=math.nan,
        n_points=n,
        compute_min=float(c.min()),
        compute_max=float(c.max()),
    )


def _offset_model(x: FloatArray, l_inf: float, log_b: float, m: float) -> FloatArray:
    """``log(L∞ + exp(log b − m x))`` with ``x = log C``, evaluated stably."""
    reducible = log_b - m * x
    return np.logaddexp(np.log(max(l_inf, 1e-300)), reducible)


def _offset_guess(x: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """Best ``(L∞, log b, m)`` from power-law fits of ``L − L∞`` over a grid of ``L∞``."""
    ell = np.exp(y)
    best: tuple[float, tuple[float, float, float]] | None = None
    for frac in np.linspace(0.0, 0.95, 39):
        l_inf = frac * float(ell.min())
        z = np.log(ell - l_inf)
        slope, intercept = np.polyfit(x, z, 1)
        guess = (l_inf, float(intercept), float(-slope))
        rss = float(np.sum((y - _offset_model(x, *guess)) ** 2))
        if best is None or rss < best[0]:
            best = (rss, guess)
    assert best is not None
    return best[1]


def _fit_offset(c: FloatArray, ell: FloatArray, use_frontier: bool) -> ScalingFit:
    from scipy.optimize import curve_fit

    n = c.size
    if n < 3:
        raise EinspaceError(
            f"the offset form L = L∞ + b C^(-m) has 3 parameters and needs at least 3 "
            f"points; got {n}"
            + (" on the frontier" if use_frontier else "")
            + ". Use form='power' instead"
        )
    x, y = np.log(c), np.log(ell)
    l0, log_b0, m0 = _offset_guess(x, y)
    upper_l = float(ell.min()) * (1 - 1e-9)
    p0 = [min(l0, upper_l * 0.999), log_b0, max(m0, 1e-6)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = curve_fit(
                _offset_model,
                x,
                y,
                p0=p0,
                bounds=([0.0, -np.inf, 0.0], [upper_l, np.inf, np.inf]),
                method="trf",
                maxfev=20_000,
            )
    except (RuntimeError, ValueError) as err:
        raise EinspaceError(
            f"the offset fit L = L∞ + b C^(-m) did not converge on {n} points "
            f"(compute {c.min():.3g} to {c.max():.3g}, initial guess L∞={p0[0]:.4g}, "
            f"b={math.exp(p0[1]):.4g}, m={p0[2]:.4g}): {err}. Use form='power' instead"
        ) from None
    l_inf, log_b, m = (float(v) for v in popt)
    if n > 3 and np.all(np.isfinite(pcov)):
        l_inf_se, a_se, m_se = (math.sqrt(max(float(v), 0.0)) for v in np.diag(pcov))
    else:
        l_inf_se = a_se = m_se = math.nan
    b = math.exp(log_b)
    return ScalingFit(
        form="offset",
        m=m,
        m_se=m_se,
        a=log_b,
        a_se=a_se,
        b=b,
        b_se=b * a_se,
        l_inf=l_inf,
        l_inf_se=l_inf_se,
        n_points=n,
        compute_min=float(c.min()),
        compute_max=float(c.max()),
    )


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
        dense_c = float(_as_positive_array(at_compute, "at_compute")[0])
        target = dense_fit.loss_at(dense_c)
    else:
        assert at_loss is not None
        target = float(_as_positive_array(at_loss, "at_loss")[0])
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


def _read_loss(fit: ScalingFit, dense_fit: ScalingFit) -> tuple[float, str]:
    """The loss a multiplier is read at: the lowest loss both fits reach inside their
    measured compute ranges; NaN and the reason when the two loss ranges do not overlap."""
    s_lo, s_hi = fit.loss_range
    d_lo, d_hi = dense_fit.loss_range
    lo, hi = max(s_lo, d_lo), min(s_hi, d_hi)
    if lo <= hi * (1 + 1e-12):
        return lo, ""
    return math.nan, (
        f"no overlap: on their measured compute the structure's fit spans losses "
        f"{s_lo:.4g}–{s_hi:.4g} and dense's {d_lo:.4g}–{d_hi:.4g}; a multiplier there would "
        f"be extrapolated"
    )


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


def fit_table(
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
    warmup_fraction: float = WARMUP_FRACTION,
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit a scaling law per group of a long-format table of points, with multipliers.

    **Points.** Only the power-law part of each curve is fitted (:func:`power_law_points`:
    no untrained start, no warmup); ``n_used`` and ``n_left_out`` count the points kept and
    dropped. Each group is then fitted with :func:`fit_power_law`.

    **Multiplier.** ``multiplier`` is :func:`compute_multiplier` against the group named
    ``dense``, read at ``multiplier_loss``: the lowest loss that *both* fits reach inside
    their measured compute ranges. When those loss ranges do not overlap, the multiplier
    would be an extrapolation: it is NaN and ``note`` says so. ``multiplier_lo`` and
    ``multiplier_hi`` are a seeded 90 % percentile bootstrap interval at that loss
    (``bootstrap`` refits of both groups; runs are resampled when some width has several
    runs, else frontier points; ``bootstrap_unit`` says which). ``multiplier_interp`` is
    the multiplier read at the same loss directly off the two measured frontiers (log-log
    interpolation, no fit; NaN, with a note, where a measured frontier does not reach that
    loss);
    ``multiplier_flag`` is True when it lies outside the interval. ``note`` also
    says, in words, when a multiplier rests on fewer than 4 frontier points or on one
    width. ``multiplier_status`` is a short label: ``ok``, ``too little data``,
    ``disagrees``, ``no overlap``, ``no dense`` or ``fit failed``;
    :func:`format_multiplier` prints a row.

    Args:
        points: a DataFrame with columns ``group``, ``compute`` and ``loss`` (and
            optionally ``run``, ``width``, ``step``, ``lr``).
        group: name of the column that identifies a group.
        dense: the value of ``group`` that is the dense baseline.
        compute: name of the compute column.
        loss: name of the loss column.
        form: ``"power"`` or ``"offset"``.
        use_frontier: fit frontier points only (see :func:`fit_power_law`).
        run, width, step, lr: names of the optional run id, width, step and
            learning-rate columns.
        warmup_fraction: see :func:`power_law_points`.
        bootstrap: replicates for the interval (0: no interval).
        seed: seed of the bootstrap.

    Returns:
        One row per group, sorted by group: ``group, form, m, m_se, a, a_se, l_inf,
        n_points, compute_min, compute_max, multiplier, multiplier_loss, multiplier_lo,
        multiplier_hi, multiplier_interp, multiplier_flag, multiplier_status, n_used,
        n_left_out, n_runs, n_widths, bootstrap_unit, note``.

    Raises:
        EinspaceError: a column is missing or ``form`` is unknown.

    Examples:
        >>> c = [1e6, 1e7, 1e8, 1e9]
        >>> df = pd.DataFrame({"structure": ["dense"] * 4 + ["btt"] * 4,
        ...                    "compute": c + c,
        ...                    "loss": [10 * x ** -0.2 for x in c] + [8 * x ** -0.2 for x in c]})
        >>> t = fit_table(df)
        >>> t["structure"].tolist(), t["m"].round(6).tolist()
        (['btt', 'dense'], [0.2, 0.2])
        >>> btt = t[t.structure == "btt"].iloc[0]
        >>> round(float(btt["multiplier"]), 4), round(float(btt["multiplier_interp"]), 4)
        (3.0518, 3.0518)
        >>> format_multiplier(btt)
        '3.05× [3.05, 3.05]'
    """
    chosen = _check_form(form)
    missing = [col for col in (group, compute, loss) if col not in points.columns]
    if missing:
        have = [str(col) for col in points.columns]
        raise EinspaceError(
            f"fit_table needs columns {[group, compute, loss]}; missing {missing}. "
            f"Columns given: {have}" + (f"; {suggest(missing[0], have)}" if have else "")
        )
    used = power_law_points(
        points, compute=compute, run=run, step=step, lr=lr, warmup_fraction=warmup_fraction
    )
    trained = points[used]
    left_out = (~used).groupby(points[group]).sum()
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
            fits[key] = fit_power_law(frame[compute], frame[loss], chosen, use_frontier)
        except EinspaceError as err:
            fits[key] = f"fit failed: {err}"
    for key in left_out.index:  # every point of the group was warmup or untrained
        if key not in fits:
            fits[key] = "fit failed: no point after warmup and the untrained start"
    dense_fit = fits.get(dense)
    has_width = width in points.columns
    rows: list[dict[str, Any]] = []
    for key in sorted(fits, key=str):
        fit = fits[key]
        g = groups.get(key)
        row: dict[str, Any] = {group: key, "form": chosen}
        row.update(dict.fromkeys(_NUMERIC_COLUMNS, math.nan))
        row.update(
            multiplier_flag=False,
            n_used=0 if g is None else len(g.compute),
            n_left_out=int(left_out.get(key, 0)),
            n_runs=0 if g is None else g.n_runs,
            n_widths=0 if g is None or not has_width else g.n_widths,
            bootstrap_unit="",
        )
        if isinstance(fit, str):
            row.update(n_points=0, note=fit, multiplier_status="fit failed")
            rows.append(row)
            continue
        row.update(
            m=fit.m,
            m_se=fit.m_se,
            a=fit.a,
            a_se=fit.a_se,
            l_inf=fit.l_inf,
            n_points=fit.n_points,
            compute_min=fit.compute_min,
            compute_max=fit.compute_max,
        )
        notes: list[str] = []
        if dense_fit is None:
            row["multiplier_status"] = "no dense"
            notes.append(f"no dense group {dense!r} in column {group!r}")
        elif isinstance(dense_fit, str):
            row["multiplier_status"] = "no dense"
            notes.append(f"dense {dense_fit}")
        else:
            assert g is not None
            _multiplier(row, key, fit, g, dense_fit, groups[dense], chosen, use_frontier,
                        bootstrap, seed, has_width, notes)  # fmt: skip
        row["note"] = "; ".join(notes)
        rows.append(row)
    columns = [group, "form", *_NUMERIC_COLUMNS, *_MULTIPLIER_COLUMNS, "note"]
    table = pd.DataFrame(rows, columns=columns)
    table["n_points"] = table["n_points"].astype(int)
    return table


def _multiplier(
    row: dict[str, Any],
    key: object,
    fit: ScalingFit,
    g: _Group,
    dense_fit: ScalingFit,
    d: _Group,
    form: Form,
    use_frontier: bool,
    bootstrap: int,
    seed: int,
    has_width: bool,
    notes: list[str],
) -> None:
    """Fill the multiplier columns of ``row`` (fit_table's reading rule) and its notes."""
    target, why = _read_loss(fit, dense_fit)
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
    sc, sl = frontier(g.compute, g.loss)
    dc, dl = frontier(d.compute, d.loss)
    row["multiplier_interp"] = _interp_compute(dc, dl, target) / _interp_compute(sc, sl, target)
    if not math.isfinite(row["multiplier_interp"]):
        notes.append(
            f"no interpolated cross-check: the measured frontiers do not both reach loss "
            f"{target:.4g} (measured losses: structure {sl.min():.4g}–{sl.max():.4g}, dense "
            f"{dl.min():.4g}–{dl.max():.4g})"
        )
    if bootstrap > 0:
        lo, hi, ok = _bootstrap(g, d, target, form, use_frontier, bootstrap, seed, key)
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


def format_multiplier(row: Mapping[str, Any] | pd.Series) -> str:
    """One multiplier of a :func:`fit_table` row as text, with its interval and caveat.

    Examples:
        >>> format_multiplier({"multiplier": 2.2, "multiplier_lo": 1.41, "multiplier_hi": 3.1,
        ...                    "multiplier_status": "ok"})
        '2.2× [1.41, 3.1]'
        >>> format_multiplier({"multiplier": float("nan"), "multiplier_status": "no overlap"})
        'n/a (no overlap)'
        >>> format_multiplier({"multiplier": 7.06, "multiplier_lo": 2.0, "multiplier_hi": 9.9,
        ...                    "multiplier_status": "too little data"})
        '7.06× [2, 9.9] (rests on too little data)'
    """
    value = float(row.get("multiplier", math.nan))
    status = str(row.get("multiplier_status", "") or "")
    if not math.isfinite(value):
        return f"n/a ({status or 'not computed'})"
    lo, hi = float(row.get("multiplier_lo", math.nan)), float(row.get("multiplier_hi", math.nan))
    text = f"{value:.3g}×" + (f" [{lo:.3g}, {hi:.3g}]" if math.isfinite(lo) else " [no interval]")
    if status == "too little data":
        text += " (rests on too little data)"
    elif status == "disagrees":
        interp = float(row.get("multiplier_interp", math.nan))
        text += f" (interpolated {interp:.3g}× lies outside)"
    return text


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
