"""What a proxy run produces: its logged points (:class:`CurvePoint`) and its result
(:class:`RunResult`), and the points of a run read back from a run store.

Examples:
    >>> p = CurvePoint(step=2, compute=1200.0, train_loss=0.5, eval_loss=0.4)
    >>> p.step, p.compute
    (2, 1200.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

    from search.proxy_config import ProxyConfig
    from search.store import RunStore

__all__ = ["CurvePoint", "RunResult", "stored_points"]


class CurvePoint(NamedTuple):
    """One logged point of a run (see :mod:`search.proxy` for what each field means).

    ``tokens`` is ``step × batch × tokens per example``; ``lr`` the global learning rate of
    the update that led to the point (the config's ``lr`` times the schedule's factor; μP
    groups train at their own multiples of it); ``extra`` any other per-point numbers by
    name (e.g. an auxiliary loss), stored as JSON.
    """

    step: int
    compute: float
    train_loss: float | None
    eval_loss: float | None
    tokens: int | None = None
    lr: float | None = None
    extra: dict[str, float] | None = None


@dataclass(frozen=True)
class RunResult:
    """What a proxy run produced.

    Attributes:
        config: the run's config.
        status: ``finished``, ``diverged``, ``failed``, ``pruned`` (stopped by the
            ``on_point`` callback; stored as finished with a shorter curve) or ``busy``
            (another live worker holds the run, or took it over from this one after
            this one missed its lease: then ``error`` says so, and this call wrote no
            more of it) or ``waiting`` (a cooldown branch whose trunk has not reached its
            branch step yet: nothing was claimed; run it again later).
        points: the logged curve, by step (for a diverged run: its good points).
        run_id: the run's id in the store (also computed without a store).
        params: parameters of the whole model.
        macs_per_token: forward MACs per token of the whole model (one example is
            ``tokens_per_example`` tokens: 1 for the MLP tasks, ``n_ctx`` for ``lm``).
        tokens_per_example: tokens per example of the task.
        padding: mode, class sizes and padding of every structured layer.
        resumed_from: the checkpoint step this call resumed from, if any.
        trained_steps: optimizer steps this call took (0 when the store had the run); a
            branch's own FLOPs are ``trained_steps`` times the compute per step, while each
            point's ``compute`` counts its whole schedule, trunk part included.
        cached: whether the run came from the store instead of being trained here.
        wall_s: seconds this call spent.
        error: the divergence or failure message.
    """

    config: ProxyConfig
    status: str
    points: tuple[CurvePoint, ...]
    run_id: str
    params: int
    macs_per_token: int
    tokens_per_example: int = 1
    padding: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    resumed_from: int | None = None
    trained_steps: int = 0
    cached: bool = False
    wall_s: float = 0.0
    error: str | None = None

    @property
    def final_eval_loss(self) -> float | None:
        """The eval loss of the last point that has one."""
        return next((p.eval_loss for p in reversed(self.points) if p.eval_loss is not None), None)

    @property
    def compute(self) -> float:
        """The compute of the last logged point."""
        return self.points[-1].compute if self.points else 0.0

    def frame(self) -> pd.DataFrame:
        """The curve as a DataFrame with a column per :class:`CurvePoint` field."""
        import pandas as pd

        return pd.DataFrame(self.points, columns=list(CurvePoint._fields))


def stored_points(store: RunStore, run_id: str) -> tuple[CurvePoint, ...]:
    """The points the store holds of run ``run_id``, by step."""
    frame = store.points(run_ids=[run_id])
    columns = [frame[c].tolist() for c in CurvePoint._fields]
    return tuple(
        CurvePoint(
            int(step),
            float(compute),
            _optional(train),
            _optional(ev),
            None if _optional(tokens) is None else int(tokens),
            _optional(lr),
            extra if isinstance(extra, dict) else None,
        )
        for step, compute, train, ev, tokens, lr, extra in zip(*columns, strict=True)
    )


def _optional(value: object) -> float | None:
    import pandas as pd

    if value is None or value is pd.NA:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number
