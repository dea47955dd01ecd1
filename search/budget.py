"""Compute budgets of one layer as people write them, and named structures tuned to fill one.

A budget is MACs per input vector (one multiply-accumulate; 1 MAC = 2 FLOPs). It can be
written as

* a number of MACs: ``5636096``, ``5.6e6``;
* a number with a unit: ``5.6M``, ``5.6M MACs``, ``2e9 flops`` (= 1e9 MACs), ``1.2 GFLOPs``
  (prefixes K, M, G, T: 10³ … 10¹²);
* a fraction of the dense layer's d_in · d_out MACs: ``1/8``, ``0.125x``, ``12.5%``.

Examples:
    >>> parse_budget("1/8", 4096, 11008)
    5636096.0
    >>> parse_budget("0.125x", 4096, 11008) == parse_budget("12.5%", 4096, 11008)
    True
    >>> parse_budget("5.6M", 64, 64), parse_budget("2e9 flops", 64, 64)
    (5600000.0, 1000000000.0)
    >>> tuned = tune_to_budget("btt", 1024, 1024, 200_000)  # rank 3: 3 · 65536 MACs
    >>> str(tuned.structure), tuned.realization.macs(), tuned.fits
    ('btt(r=0.14)', 196608, True)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from einspace.errors import EinspaceError
from einspace.named import lookup
from einspace.realization import Realization
from einspace.sizing import SizingMode, reference_dim
from einspace.structure import Structure

__all__ = ["TUNABLE", "Tuned", "parse_budget", "parse_compute_flops", "tune_to_budget"]

TUNABLE: Final = ("btt", "tt", "low_rank")
"""Named structures whose rank exponent ``r`` is tuned to a budget when ``r`` is not given."""

_PREFIX: Final = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_NUMBER = r"[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?"
_COUNT = re.compile(rf"({_NUMBER})\s*([kmgt]?)\s*(macs?|flops?)?")
_EXAMPLES = "e.g. 5.6e6, 5.6M, '2e9 flops', 1/8 or 0.125x (a fraction of dense d_in·d_out)"


def parse_budget(text: str | float, d_in: int, d_out: int) -> float:
    """The MACs per input vector that ``text`` means for a ``d_in → d_out`` layer (see the
    module docstring); a bad value raises :class:`~einspace.errors.EinspaceError`."""
    dense = float(d_in) * float(d_out)
    if isinstance(text, int | float) and not isinstance(text, bool):
        return _check(float(text), repr(text))
    if not isinstance(text, str):
        raise EinspaceError(f"budget {text!r} is not a number or text; {_EXAMPLES}")
    t = text.strip().lower().replace("×", "x").replace(" ", "")
    if m := re.fullmatch(rf"({_NUMBER})/({_NUMBER})x?", t):
        num, den = float(m.group(1)), float(m.group(2))
        if den == 0:
            raise EinspaceError(f"budget {text!r} divides by zero; {_EXAMPLES}")
        return _check(num / den * dense, text, fraction=True)
    if m := re.fullmatch(rf"({_NUMBER})(x|%)", t):
        share = float(m.group(1)) / (100.0 if m.group(2) == "%" else 1.0)
        return _check(share * dense, text, fraction=True)
    if m := _COUNT.fullmatch(t):
        value = float(m.group(1)) * _PREFIX[m.group(2)]
        if (m.group(3) or "").startswith("flop"):
            value /= 2.0
        if value < 1 and not m.group(2) and not m.group(3):
            raise EinspaceError(
                f"budget {text!r} is less than one MAC; for a fraction of dense write "
                f"{m.group(1)}x or a ratio such as 1/8"
            )
        return _check(value, text)
    raise EinspaceError(f"budget {text!r} is not a number of MACs or a fraction; {_EXAMPLES}")


def parse_compute_flops(text: str | float, flag: str = "--trial-budget") -> float:
    """A total compute in FLOPs written with the units of :func:`parse_budget` (``2e12 flops``,
    ``1.5T FLOPs``, ``5e11 MACs``, ``500G macs``; 1 MAC = 2 FLOPs). The unit is required: a
    bare number could mean either. ``flag`` names the option in messages.

    Examples:
        >>> parse_compute_flops("5.6M macs"), parse_compute_flops("2e9 flops")
        (11200000.0, 2000000000.0)
    """
    hint = f"write the unit, e.g. {flag} '2e12 flops' or {flag} '1T macs' (1 MAC = 2 FLOPs)"
    t = str(text).strip().lower().replace(" ", "")
    m = _COUNT.fullmatch(t)
    if m is None:
        raise EinspaceError(f"{flag} {text!r} is not a compute with a unit; {hint}")
    if not m.group(3):
        raise EinspaceError(f"{flag} {text!r} has no unit (FLOPs or MACs?); {hint}")
    value = float(m.group(1)) * _PREFIX[m.group(2)]
    flops = value if m.group(3).startswith("flop") else 2.0 * value
    if not math.isfinite(flops) or flops <= 0:
        raise EinspaceError(f"{flag} {text!r} must be positive and finite; {hint}")
    return flops


def _check(value: float, text: str, fraction: bool = False) -> float:
    if not math.isfinite(value) or value <= 0:
        raise EinspaceError(f"budget {text!r} must be positive and finite; {_EXAMPLES}")
    if fraction and value < 1:
        raise EinspaceError(f"budget {text!r} is {value:.3g} MACs, less than one; {_EXAMPLES}")
    return value


@dataclass(frozen=True)
class Tuned:
    """A named structure with the largest ``r`` whose layer fits a budget.

    Attributes:
        structure: the structure at the chosen ``r``.
        realization: its realization at the layer's widths.
        r: the chosen rank exponent.
        fits: False when even the smallest rank exceeds the budget (then ``r`` is the
            smallest).
    """

    structure: Structure
    realization: Realization
    r: float
    fits: bool


def tune_to_budget(
    name: str,
    d_in: int,
    d_out: int,
    budget_macs: float,
    mode: SizingMode = "round",
    pad_tol: float = 0.15,
) -> Tuned:
    """The named structure (one of :data:`TUNABLE`) at the largest ``r`` whose sequential
    MACs fit ``budget_macs``.

    ``r`` sets the rank class's size n = round(d^r) with d = min(d_in, d_out), so only the
    sizes n = 1 … d are distinct layers; MACs grow with n, and a bisection over n finds the
    largest that fits. Each n is written with the shortest decimal ``r`` that rounds to it.
    """
    entry = lookup(name)
    if entry.name not in TUNABLE:
        raise EinspaceError(f"{name!r} has no rank exponent to tune; tunable: {', '.join(TUNABLE)}")
    low, high = entry.bounds["r"]
    d = reference_dim(0, d_in, d_out)  # rank classes touch neither x nor y

    def at(n: int) -> tuple[float, Structure, Realization]:
        r = _shortest_r(n, d, low, high)
        s = Structure.named(entry.name, r=r)
        return r, s, s.realize(d_in, d_out, mode=mode, pad_tol=pad_tol)

    lo, hi = 1, d
    best = at(lo)
    if best[2].macs() > budget_macs:
        return Tuned(best[1], best[2], best[0], fits=False)
    while lo < hi:  # invariant: n = lo fits
        mid = (lo + hi + 1) // 2
        candidate = at(mid)
        if candidate[2].macs() <= budget_macs:
            lo, best = mid, candidate
        else:
            hi = mid - 1
    return Tuned(best[1], best[2], best[0], fits=True)


def _shortest_r(n: int, d: int, low: float, high: float) -> float:
    """The shortest decimal r in [low, high] with round(d ** r) = n (d ≥ 2)."""
    if d < 2:
        return max(low, 0.0)
    log_d = math.log(d)
    lo = max(low, math.log(n - 0.5) / log_d if n > 1 else 0.0)
    hi = min(high, math.log(n + 0.5) / log_d)
    for digits in range(1, 13):
        scale = 10.0**digits
        r = math.ceil(lo * scale) / scale
        if r <= hi and max(1, round(d**r)) == n:
            return r
    return lo
