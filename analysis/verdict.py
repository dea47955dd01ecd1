"""A compute multiplier's verdict in words, and what it would cost to settle an open one.

docs/fits.md. :func:`verdict` reads a 90 % interval: ``ahead of dense`` when it lies above 1,
``behind dense`` below 1, ``not separable at this budget`` when it contains 1 (or there is
none). :func:`what_would_separate` says, for the last, how many seeds would narrow the
interval enough, assuming its width in log space shrinks as ``1/√seeds`` (what resampling
whole runs measures), and what those seeds and one more doubling of the widest width
would cost.
"""

from __future__ import annotations

import math

__all__ = ["AHEAD", "BEHIND", "NOT_SEPARABLE", "VERDICTS", "verdict", "what_would_separate"]

AHEAD = "ahead of dense"
BEHIND = "behind dense"
NOT_SEPARABLE = "not separable at this budget"
VERDICTS = (AHEAD, BEHIND, NOT_SEPARABLE)
"""The three verdicts a structure can get."""

_MAX_SEED_FACTOR = 100.0


def verdict(lo: float, hi: float) -> str:
    """The verdict of a 90 % interval ``[lo, hi]`` of the multiplier against dense.

    Examples:
        >>> verdict(1.2, 3.0), verdict(0.2, 0.9), verdict(0.8, 1.5)
        ('ahead of dense', 'behind dense', 'not separable at this budget')
        >>> verdict(float("nan"), float("nan"))
        'not separable at this budget'
    """
    if math.isfinite(lo) and lo > 1.0:
        return AHEAD
    if math.isfinite(hi) and 0 < hi < 1.0:
        return BEHIND
    return NOT_SEPARABLE


def what_would_separate(
    multiplier: float,
    lo: float,
    hi: float,
    seeds: int,
    flops: float,
    wider_flops: float = math.nan,
) -> str:
    """For a ``not separable`` multiplier: the seeds (and FLOPs) that would separate it.

    Args:
        multiplier: the estimate.
        lo: the lower end of its 90 % interval.
        hi: the upper end.
        seeds: runs per width now (the fewest over both structures' widths).
        flops: training FLOPs of the runs of both structures now.
        wider_flops: FLOPs of one more doubling of the widest width for both structures, at
            the same horizons (NaN: not estimated).

    Returns:
        A sentence; empty when the interval already excludes 1.

    Examples:
        >>> what_would_separate(2.0, 1.1, 4.0, 2, 1e15)   # already separated
        ''
        >>> what_would_separate(2.0, 0.5, 4.0, 2, 1e15)   # (log 4 / log 2)² = 4 times the seeds
        'about 8 seeds per width instead of 2 (≈ 3e+15 more FLOPs) would narrow the interval \
to exclude 1, if it shrinks as 1/√seeds'
    """
    if verdict(lo, hi) != NOT_SEPARABLE:
        return ""
    if not (math.isfinite(multiplier) and math.isfinite(lo) and math.isfinite(hi) and lo > 0):
        return "no interval: more widths and horizons that both structures reach are needed"
    distance = abs(math.log(multiplier))
    side = math.log(multiplier / lo) if multiplier >= 1 else math.log(hi / multiplier)
    factor = (side / distance) ** 2 if distance > 0 else math.inf
    text = ""
    if factor <= _MAX_SEED_FACTOR and factor > 1:
        need = max(seeds + 1, math.ceil(seeds * factor))
        extra = flops * (need / seeds - 1)
        text = (
            f"about {need} seeds per width instead of {seeds} (≈ {extra:.3g} more FLOPs) "
            f"would narrow the interval to exclude 1, if it shrinks as 1/√seeds"
        )
    elif factor > 1:
        text = (
            f"the estimate {multiplier:.3g}× is too close to 1 for seeds to settle it "
            f"(over {_MAX_SEED_FACTOR:.0f}× the seeds): the two may not differ at this scale"
        )
    if math.isfinite(wider_flops):
        text += (
            f"; one more doubling of the widest width (≈ {wider_flops:.3g} FLOPs) would "
            f"extend both frontiers to lower losses and read the multiplier there"
        )
    return text
