"""Learning-rate schedules of a proxy run: the factor that multiplies every parameter group's
own base learning rate at each optimizer step (imports no torch).

Three shapes, each after a linear warmup of ``warmup_steps`` steps (the update of step ``s``
gets ``(s + 1) / warmup_steps``):

* ``constant``: 1.
* ``cosine``: from 1 down to ``min_lr`` along half a cosine, reaching ``min_lr`` at ``steps``.
* ``wsd`` (warmup-stable-decay; Hägele et al. 2024, "Scaling Laws and Compute-Optimal
  Training Beyond Fixed Training Durations"): 1 until :func:`decay_start`
  ``= steps − round(cooldown × steps)``, then ``1 − sqrt((s − start) / (steps − start))``,
  which reaches 0 at ``steps``. Up to its decay start a wsd run is the same whatever its
  length, so one long run (the trunk) serves every shorter horizon: a cooldown branch resumes
  from the trunk's checkpoint at its own decay start.

Examples:
    >>> [lr_factor(s, 10, "wsd", warmup_steps=2, cooldown=0.4) for s in range(10)]
    [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.2928932188134524, 0.1339745962155614]
    >>> decay_start(10, 0.4)
    6
    >>> round(lr_factor(5, 10, "cosine", min_lr=0.1), 4)  # half way: (1 + 0.1) / 2
    0.55
"""

from __future__ import annotations

import math
from typing import Final, Literal

__all__ = ["SCHEDULES", "Schedule", "decay_start", "lr_factor", "warmup_steps_of"]

Schedule = Literal["constant", "cosine", "wsd"]
SCHEDULES: Final = ("constant", "cosine", "wsd")


def decay_start(steps: int, cooldown: float) -> int:
    """The first step of a wsd run's cooldown: ``steps − round(cooldown × steps)``.

    Examples:
        >>> decay_start(100, 0.2), decay_start(7, 0.2)
        (80, 6)
    """
    return steps - round(cooldown * steps)


def warmup_steps_of(steps: int, warmup: float) -> int:
    """Warmup steps of a run of ``steps`` steps with warmup fraction ``warmup``:
    ``round(warmup × steps)``.

    Examples:
        >>> warmup_steps_of(300, 0.05)
        15
    """
    return round(warmup * steps)


def lr_factor(
    step: int,
    steps: int,
    schedule: str,
    *,
    warmup_steps: int = 0,
    cooldown: float = 0.2,
    min_lr: float = 0.1,
) -> float:
    """The learning-rate factor of the update at ``step`` (0-based) of a run of ``steps``
    updates (see the module docs for the shapes).

    Args:
        step: the update, ``0 ≤ step < steps``.
        steps: the run's updates.
        schedule: ``constant``, ``cosine`` or ``wsd``.
        warmup_steps: steps of the linear warmup.
        cooldown: wsd: the fraction of ``steps`` spent decaying.
        min_lr: cosine: the floor, as a fraction of the peak.

    Raises:
        ValueError: an unknown schedule.

    Examples:
        >>> lr_factor(0, 100, "constant", warmup_steps=4)
        0.25
        >>> lr_factor(99, 100, "cosine", min_lr=0.0) < 0.001
        True
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = steps - warmup_steps
        progress = (step - warmup_steps) / span if span > 0 else 1.0
        return min_lr + (1.0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        start = decay_start(steps, cooldown)
        if step < start:
            return 1.0
        return 1.0 - math.sqrt((step - start) / (steps - start))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
