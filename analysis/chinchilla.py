"""Chinchilla's parametric law ``L(N, D) = E + A/N^α + B/D^β`` and its compute-optimal frontier.

docs/fits.md. :func:`fit_chinchilla` fits the law to finished runs (``N`` every trained
parameter, ``D`` training tokens) as Hoffmann et al. (2022) and Besiroglu et al. (2024) do:
a Huber loss (δ = 1e-3) on ``log L`` with ``log L̂ = LSE(a − α log N, b − β log D, e)``
(``A = eᵃ``, ``B = eᵇ``, ``E = eᵉ``), minimised by L-BFGS-B. Starts come from variable
projection: on a grid of ``(α, β)`` the law is linear in ``(E, A, B)``, solved by
non-negative least squares; the best few are polished. A bootstrap replicate passes the full
fit as ``start`` and is polished from there only.

:class:`MacsPerToken` maps ``N`` to forward MACs per token from a structure's measured
widths; :class:`ComputeOptimal` puts the two together: the least training compute
``C = 6·M(N)·D`` that reaches a loss, and the ``(N, D)`` that spend it.

Examples:
    >>> law = ChinchillaFit(E=1.0, A=100.0, alpha=0.5, B=100.0, beta=0.5)
    >>> round(law.loss_at(1e4, 1e4), 12)
    3.0
    >>> opt = ComputeOptimal(law, MacsPerToken([1e4], [1e4]))
    >>> c, n, d = opt.optimum(3.0)  # M = N and α = β: N = D at the optimum
    >>> round(n), round(d), round(c / (6 * n * d), 9)
    (10000, 10000, 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from einspace.errors import EinspaceError

__all__ = [
    "HUBER_DELTA",
    "ChinchillaFit",
    "ComputeOptimal",
    "MacsPerToken",
    "fit_chinchilla",
]

FloatArray = npt.NDArray[np.float64]

HUBER_DELTA = 1e-3
"""δ of the Huber loss on ``log L`` (Hoffmann et al. 2022)."""

_EXPONENT_GRID = np.linspace(0.05, 1.5, 18)
_EXPONENT_BOUNDS = (0.01, 3.0)
_STARTS = 4
_SEARCH_DECADES = 10.0  # the optimum over N is searched over this many decades


@dataclass(frozen=True)
class ChinchillaFit:
    """A fitted ``L(N, D) = E + A/N^α + B/D^β``.

    Attributes:
        E: the irreducible loss.
        A: the coefficient of the parameter term.
        alpha: the exponent of ``N``.
        B: the coefficient of the data term.
        beta: the exponent of ``D``.
        n_points: number of points fitted (0 for a law given by hand).
        objective: the mean Huber loss at the optimum, divided by δ.
    """

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    n_points: int = 0
    objective: float = math.nan

    def loss_at(self, n: npt.ArrayLike, d: npt.ArrayLike) -> FloatArray | float:
        """The law's loss at ``N`` parameters and ``D`` tokens.

        Examples:
            >>> ChinchillaFit(1.0, 4.0, 0.5, 9.0, 0.5).loss_at([4.0, 16.0], [9.0, 81.0]).tolist()
            [6.0, 3.0]
        """
        out = self.E + self.A * np.power(n, -self.alpha) + self.B * np.power(d, -self.beta)
        return float(out) if np.ndim(out) == 0 else np.asarray(out, dtype=float)

    @property
    def theta(self) -> FloatArray:
        """``(e, a, b, α, β)``: the parameters the optimiser works on."""
        return np.array(
            [math.log(self.E), math.log(self.A), math.log(self.B), self.alpha, self.beta]
        )


def _objective(
    theta: FloatArray, log_n: FloatArray, log_d: FloatArray, log_l: FloatArray, delta: float
) -> tuple[float, FloatArray]:
    """Mean Huber loss / δ of the log-residuals and its gradient in ``(e, a, b, α, β)``."""
    e, a, b, alpha, beta = theta
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    top = np.maximum(np.maximum(t1, t2), e)
    w0, w1, w2 = np.exp(e - top), np.exp(t1 - top), np.exp(t2 - top)
    total = w0 + w1 + w2
    r = top + np.log(total) - log_l
    size = r.size
    big = np.abs(r) > delta
    clipped = np.where(big, delta * np.sign(r), r)
    value = np.where(big, delta * (np.abs(r) - 0.5 * delta), 0.5 * r * r).sum()
    dr = clipped / (total * delta * size)
    g1, g2 = dr @ w1, dr @ w2
    grad = np.array([dr @ w0, g1, g2, -(dr * w1) @ log_n, -(dr * w2) @ log_d])
    return float(value / (delta * size)), grad


def _projected_starts(n: FloatArray, d: FloatArray, ell: FloatArray) -> list[FloatArray]:
    """Starts by variable projection: NNLS of ``(E, A, B)`` (relative residuals) per
    ``(α, β)`` of a grid; the ``_STARTS`` best by the relative sum of squares."""
    from scipy.optimize import nnls

    scored: list[tuple[float, FloatArray]] = []
    for alpha in _EXPONENT_GRID:
        xn = n**-alpha
        for beta in _EXPONENT_GRID:
            xd = d**-beta
            design = np.column_stack([np.ones_like(n), xn, xd]) / ell[:, None]
            scale = np.linalg.norm(design, axis=0)
            coef, rss = nnls(design / scale, np.ones_like(ell))
            coef = np.maximum(coef / scale, 1e-12 * np.array([ell.min(), 1.0, 1.0]))
            theta = np.array([*np.log(coef), alpha, beta])
            scored.append((float(rss), theta))
    scored.sort(key=lambda item: item[0])
    return [theta for _, theta in scored[:_STARTS]]


def fit_chinchilla(
    params: npt.ArrayLike,
    tokens: npt.ArrayLike,
    loss: npt.ArrayLike,
    *,
    delta: float = HUBER_DELTA,
    start: ChinchillaFit | None = None,
) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A/N^α + B/D^β`` to finished runs (Huber on ``log L``, L-BFGS-B).

    Args:
        params: ``N`` of each point (every trained parameter).
        tokens: ``D`` of each point (training tokens).
        loss: the loss of each point.
        delta: δ of the Huber loss.
        start: polish from this fit only (a bootstrap replicate's warm start) instead of the
            variable-projection starts.

    Raises:
        EinspaceError: lengths differ, a value is not positive and finite, or fewer than 5
            points (the law has 5 parameters).

    Examples:
        >>> import numpy as np
        >>> law = ChinchillaFit(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)
        >>> n, d = np.meshgrid([1e5, 3e5, 1e6, 3e6], [1e6, 1e7, 1e8, 1e9])
        >>> fit = fit_chinchilla(n.ravel(), d.ravel(), law.loss_at(n.ravel(), d.ravel()))
        >>> round(fit.E, 3), round(fit.alpha, 3), round(fit.beta, 3)
        (1.7, 0.34, 0.28)
    """
    n, d, ell = (np.asarray(v, dtype=float).ravel() for v in (params, tokens, loss))
    if not n.size == d.size == ell.size:
        raise EinspaceError(
            f"params, tokens and loss must have the same length; got {n.size}, {d.size} and "
            f"{ell.size}"
        )
    for what, arr in (("params", n), ("tokens", d), ("loss", ell)):
        if not (np.isfinite(arr) & (arr > 0)).all():
            raise EinspaceError(f"{what} must be positive and finite for every point fitted")
    if n.size < 5:
        raise EinspaceError(
            f"the law E + A/N^α + B/D^β has 5 parameters and needs at least 5 finished runs; "
            f"got {n.size}"
        )
    # centred logs decouple each coefficient from its exponent: a' = a − α·mean(log N)
    c_n, c_d = float(np.log(n).mean()), float(np.log(d).mean())
    log_n, log_d, log_l = np.log(n) - c_n, np.log(d) - c_d, np.log(ell)
    starts = [start.theta] if start is not None else _projected_starts(n, d, ell)
    starts = [t - np.array([0.0, t[3] * c_n, t[4] * c_d, 0.0, 0.0]) for t in starts]
    # each term at the data's centre lies between 1e-6 of the lowest loss and the highest
    # loss: a compact box, so that an unidentified term stops at its bound instead of
    # drifting towards 0 for hundreds of iterations
    floor, top = math.log(1e-6 * float(ell.min())), math.log(float(ell.max()))
    bounds: list[tuple[float, float]] = [(floor, math.log(float(ell.min())))]
    bounds += [(floor, top), (floor, top), _EXPONENT_BOUNDS, _EXPONENT_BOUNDS]
    if start is None:  # one BLAS thread: L-BFGS-B's small solves slow down with more
        import scipy.optimize  # noqa: F401  (its BLAS must be loaded to be limited)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            best = _polish(starts, (log_n, log_d, log_l, delta), bounds)
    else:
        best = _polish(starts, (log_n, log_d, log_l, delta), bounds)
    e, a, b, alpha, beta = (float(v) for v in best.x)
    a, b = a + alpha * c_n, b + beta * c_d
    return ChinchillaFit(
        math.exp(e), math.exp(a), alpha, math.exp(b), beta, n.size, float(best.fun)
    )


def _polish(
    starts: list[FloatArray],
    args: tuple[FloatArray, FloatArray, FloatArray, float],
    bounds: list[tuple[float, float]],
) -> Any:
    """The best L-BFGS-B result over ``starts``."""
    from scipy.optimize import minimize

    best = None
    lower = [b[0] for b in bounds]
    upper = [b[1] for b in bounds]
    for theta0 in starts:
        theta0 = np.clip(theta0, lower, upper)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = minimize(
                _objective,
                theta0,
                args=args,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 300, "ftol": 1e-12, "gtol": 1e-9},
            )
        if best is None or res.fun < best.fun:
            best = res
    return best


class MacsPerToken:
    """Forward MACs per token as a function of ``N``, from a structure's measured widths.

    Log-log interpolation between the measured ``(N, M)`` pairs, extended beyond them along
    the end segments (with one pair, ``M ∝ N``): exact for a family whose MACs are a power
    of its parameters.

    Examples:
        >>> m = MacsPerToken([100.0, 400.0], [1000.0, 8000.0])  # M = 0.1 N^1.5
        >>> round(float(m(1600.0)), 6), round(float(m(200.0)), 6)
        (64000.0, 2828.427125)
    """

    def __init__(self, params: Sequence[float] | FloatArray, macs: Sequence[float] | FloatArray):
        n, m = np.asarray(params, dtype=float), np.asarray(macs, dtype=float)
        if n.size == 0 or n.size != m.size or not ((n > 0) & (m > 0)).all():
            raise EinspaceError(
                "MacsPerToken needs one positive (params, macs_per_token) pair per width"
            )
        x = np.unique(np.log(n))
        self.log_n = x
        self.log_m = np.array([np.log(m[np.log(n) == v]).mean() for v in x])

    def _slope(self, lo: int, hi: int) -> float:
        if self.log_n.size < 2:
            return 1.0
        return float((self.log_m[hi] - self.log_m[lo]) / (self.log_n[hi] - self.log_n[lo]))

    def __call__(self, params: npt.ArrayLike) -> FloatArray:
        """MACs per token at ``params``."""
        x = np.log(np.asarray(params, dtype=float))
        y = np.interp(x, self.log_n, self.log_m)
        left, right = self._slope(0, 1), self._slope(-2, -1)
        y = np.where(x < self.log_n[0], self.log_m[0] + left * (x - self.log_n[0]), y)
        y = np.where(x > self.log_n[-1], self.log_m[-1] + right * (x - self.log_n[-1]), y)
        return np.asarray(np.exp(y), dtype=float)


@dataclass(frozen=True)
class ComputeOptimal:
    """A law and its MACs per token: the least compute ``6·M(N)·D`` that reaches a loss.

    For a loss ``L`` and a size ``N`` the tokens needed are
    ``D(N) = (B / (L − E − A/N^α))^{1/β}``; :meth:`optimum` minimises ``6·M(N)·D(N)`` over
    ``N`` (a log-spaced grid refined by a parabola through the best three points).
    """

    law: ChinchillaFit
    macs: MacsPerToken

    def optimum(self, loss: float) -> tuple[float, float, float]:
        """``(C, N, D)`` of the cheapest run reaching ``loss``; ``(inf, nan, nan)`` when the
        law never reaches it (``loss <= E``).

        ``N`` is searched from the smallest size that can reach the loss at all
        (``A/N^α < L − E``) up to :data:`_SEARCH_DECADES` decades above it, further while the
        cheapest point is the grid's last.
        """
        law = self.law
        if not loss > law.E:
            return math.inf, math.nan, math.nan
        start = math.log(law.A / (loss - law.E)) / law.alpha
        span = _SEARCH_DECADES * math.log(10.0)
        for _ in range(4):
            x = np.linspace(start, start + span, 2000)[1:]
            result = self._cheapest(loss, x)
            if not math.isfinite(result[0]) or result[1] < math.exp(x[-2]):
                break
            start += span * 0.9
        return result

    def _cheapest(self, loss: float, x: FloatArray) -> tuple[float, float, float]:
        """The cheapest point of the log-``N`` grid ``x``, refined by a parabola."""
        law = self.law
        gap = loss - law.E - law.A * np.exp(-law.alpha * x)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_d = np.where(gap > 0, (math.log(law.B) - np.log(gap)) / law.beta, np.inf)
        log_c = math.log(6.0) + np.log(self.macs(np.exp(x))) + log_d
        i = int(np.argmin(log_c))
        if not np.isfinite(log_c[i]):
            return math.inf, math.nan, math.nan
        xi = x[i]
        if 0 < i < x.size - 1 and np.isfinite(log_c[i - 1 : i + 2]).all():
            y0, y1, y2 = log_c[i - 1 : i + 2]
            curv = y0 - 2 * y1 + y2
            if curv > 0:
                xi = x[i] + 0.5 * (y0 - y2) / curv * (x[1] - x[0])
        n_opt = math.exp(xi)
        gap_opt = loss - law.E - law.A * n_opt**-law.alpha
        if gap_opt <= 0:
            n_opt, gap_opt = math.exp(x[i]), float(gap[i])
        d_opt = (law.B / gap_opt) ** (1.0 / law.beta)
        return 6.0 * float(self.macs(n_opt)) * d_opt, n_opt, d_opt

    def compute_at(self, loss: float) -> float:
        """The least training compute that reaches ``loss`` (inf if never)."""
        return self.optimum(loss)[0]

    def exponent_at(self, loss: float, step: float = 0.05) -> float:
        """``a`` of ``N_opt ∝ C^a`` at ``loss``: ``d log N_opt / d log C``, a central
        difference of ``step`` in the log of the reducible loss ``L − E``."""
        gap = loss - self.law.E
        if not gap > 0:
            return math.nan
        lo = self.optimum(self.law.E + gap * math.exp(step))
        hi = self.optimum(self.law.E + gap * math.exp(-step))
        if not (math.isfinite(lo[0]) and math.isfinite(hi[0])):
            return math.nan
        return math.log(hi[1] / lo[1]) / math.log(hi[0] / lo[0])
