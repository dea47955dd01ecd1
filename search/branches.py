"""Cooldown branches: where a branch of a wsd trunk starts, read from the run store.

A wsd run's learning rate is the same up to its decay start whatever its length
(:mod:`search.schedules`), so a search trains one long run per (structure, width, seed), the
*trunk*, and for each shorter horizon a *branch*: a run whose config names the trunk
(``parent``) and the step it resumes from (``branch_step``, its own decay start). The trunk
pins a checkpoint at each branch step (``run_config(…, keep_steps=…)``); the branch loads it,
takes the trunk's points before that step as the start of its own curve, and trains only its
cooldown. Its curve is then the curve of a standalone wsd run of its horizon, bit for bit on
CPU, and its compute per point is that of the whole schedule (``per step × step``), while the
FLOPs it spent itself are ``per step × (steps − branch_step)``.

:func:`find_branch_start` answers, before anything is claimed, whether a branch can start:
its trunk's checkpoint (and points) when the trunk has reached the branch step, or ``None``
while it has not (the branch is then ``waiting``; a grid retries it later).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from einspace.errors import EinspaceError
from search.proxy_config import ProxyConfig
from search.run_result import CurvePoint, stored_points
from search.schedules import decay_start

if TYPE_CHECKING:
    from search.store import RunStore

__all__ = ["BranchStart", "check_parent", "find_branch_start"]


@dataclass(frozen=True)
class BranchStart:
    """What a cooldown branch starts from.

    Attributes:
        blob: the trunk's checkpoint at ``branch_step`` (``None`` when the branch has points
            of its own already: it resumes from its own checkpoint).
        points: the trunk's points before ``branch_step`` (the start of the branch's curve).
        diverged: ``(step, reason)`` when the trunk diverged before ``branch_step``: the branch,
            identical up to there, diverges at the same step.
    """

    blob: bytes | None
    points: tuple[CurvePoint, ...]
    diverged: tuple[int, str] | None = None


def find_branch_start(store: RunStore, config: ProxyConfig, own_id: str) -> BranchStart | None:
    """Where the branch ``config`` (run id ``own_id``) starts, or ``None`` while its trunk has
    not reached (and pinned) the branch step. Claims nothing.

    Raises:
        EinspaceError: ``config`` is not a branch, or does not match its trunk (another
            structure, width, seed or setting; a branch step after the trunk's decay start;
            another warmup).
    """
    if config.parent is None or config.branch_step is None:
        raise EinspaceError(f"run {own_id!r} is not a cooldown branch (it has no parent)")
    runs = store.runs()
    trunk = runs[runs["run_id"] == config.parent]
    started = len(store.points(run_ids=[own_id])) > 0
    if trunk.empty:
        return BranchStart(None, ()) if started else None
    row = trunk.iloc[0]
    check_parent(config, ProxyConfig.from_dict(row["config"]))
    saved = store.load_checkpoint(config.parent, step=config.branch_step)
    points = tuple(p for p in stored_points(store, config.parent) if p.step < config.branch_step)
    if saved is not None:
        return BranchStart(saved[1], points)
    if started:
        return BranchStart(None, ())
    last = row["last_step"]
    if row["status"] == "diverged" and not _missing(last) and int(last) <= config.branch_step:
        return BranchStart(None, points, (int(last), f"its trunk {config.parent}: {row['error']}"))
    if row["status"] in ("finished", "diverged", "failed"):
        raise EinspaceError(
            f"the trunk {config.parent} of branch {own_id} ended {row['status']} without a "
            f"checkpoint at step {config.branch_step}; rerun the trunk with that step in "
            f"keep_steps"
        )
    return None


def check_parent(config: ProxyConfig, trunk: ProxyConfig) -> None:
    """Raise unless the branch ``config`` follows ``trunk``'s schedule up to its branch step:
    the same settings but ``steps``, the same warmup in steps, a wsd trunk whose decay starts
    at or after the branch step.

    Examples:
        >>> trunk = ProxyConfig("dense", 8, steps=100, warmup_steps=5)
        >>> branch = ProxyConfig("dense", 8, steps=50, warmup_steps=5, parent="t", branch_step=40)
        >>> check_parent(branch, trunk)
        >>> check_parent(branch, replace(trunk, lr=0.1))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: branch of trunk 't' differs from it in lr; ...
    """
    if trunk.schedule != "wsd":
        raise EinspaceError(f"the trunk {config.parent!r} runs {trunk.schedule!r}, not wsd")
    step = config.branch_step if config.branch_step is not None else 0
    if decay_start(trunk.steps, trunk.cooldown) < step:
        raise EinspaceError(
            f"branch step {step} is after the trunk {config.parent!r}'s decay start "
            f"{decay_start(trunk.steps, trunk.cooldown)}: the trunk's learning rate already "
            f"decays there"
        )
    if trunk.schedule_warmup_steps() != config.schedule_warmup_steps():
        raise EinspaceError(
            f"branch warmup {config.schedule_warmup_steps()} steps differs from the trunk "
            f"{config.parent!r}'s {trunk.schedule_warmup_steps()}; give both warmup_steps"
        )
    aligned = replace(
        trunk,
        steps=config.steps,
        parent=config.parent,
        branch_step=config.branch_step,
        warmup_steps=config.warmup_steps,
    )
    own, theirs = config.to_dict(), aligned.to_dict()
    differ = sorted(k for k in own.keys() | theirs.keys() if own.get(k) != theirs.get(k))
    if differ:
        raise EinspaceError(
            f"branch of trunk {config.parent!r} differs from it in {', '.join(differ)}; a "
            f"branch has its trunk's settings but steps"
        )


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))
