"""Power-law fits of scaling curves: the compute-optimal frontier and :class:`ScalingFit`.

docs: theory §6: for one structure all ``(compute, loss)`` pairs of all widths are pooled, the lower
convex hull in ``(log C, log L)`` is the compute-optimal :func:`frontier`, and
:func:`fit_power_law` fits

- the *power* form ``log L = a − m log C`` (natural logarithms), or
- the *offset* form ``L = L∞ + b C^{−m}``.

Comparisons between fits (the compute multiplier) live in :mod:`analysis.scaling`, which
re-exports everything here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from einspace.errors import EinspaceError, suggest

__all__ = [
    "FORMS",
    "FloatArray",
    "Form",
    "ScalingFit",
    "as_positive_array",
    "check_form",
    "fit_power_law",
    "frontier",
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


def as_positive_array(values: npt.ArrayLike, what: str) -> FloatArray:
    """Return ``values`` as a 1-d float array, or raise naming the first bad entry.

    Examples:
        >>> as_positive_array(2, "compute").tolist()
        [2.0]
        >>> as_positive_array([1.0, 0.0], "loss")
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: loss must be positive and finite; 1 of 2 values are \
not, the first is 0.0 at index 1. Drop those points (for example compute = 0 at step 0) before \
fitting
    """
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
    c = as_positive_array(compute, "compute")
    ell = as_positive_array(loss, "loss")
    if c.size != ell.size:
        raise EinspaceError(
            f"compute and loss must have the same length; got {c.size} and {ell.size}"
        )
    if c.size < 2:
        raise EinspaceError(f"a scaling fit needs at least 2 (compute, loss) points; got {c.size}")
    return c, ell


def check_form(form: str) -> Form:
    """``form`` as a :data:`Form`, or an error suggesting the nearest of :data:`FORMS`.

    Examples:
        >>> check_form("offset")
        'offset'
    """
    if form == "power":
        return "power"
    if form == "offset":
        return "offset"
    raise EinspaceError(f"unknown scaling-law form {form!r}; {suggest(str(form), FORMS)}")


# --------------------------------------------------------------------------- frontier


def frontier(compute: npt.ArrayLike, loss: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return the compute-optimal frontier of a set of ``(compute, loss)`` points.

    The frontier is the lower convex hull of the points in ``(log C, log L)``, sorted by
    compute, with the monotone clean-up of docs/theory.md §6: a hull point is kept only if its
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
        c = as_positive_array(compute, "compute")
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
        ell = as_positive_array(loss, "loss")
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
    chosen = check_form(form)
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
