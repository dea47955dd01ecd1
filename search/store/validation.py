"""Checks of what workers log into a run store: steps, losses and curve points.

Examples:
    >>> check_point({"step": 10, "compute": 6e6, "train_loss": 1.5}, 0)
    {'step': 10, 'compute': 6000000.0, 'train_loss': 1.5, 'eval_loss': None}
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

from einspace.errors import EinspaceError, suggest
from search.store.schema import POINT_FIELDS

__all__ = ["check_loss", "check_point", "check_step"]


def check_step(step: object, what: str) -> int:
    try:
        if isinstance(step, bool):
            raise TypeError
        value = operator.index(step)  # type: ignore[arg-type]
    except TypeError:
        raise EinspaceError(f"{what} must be an integer >= 0; got {step!r}") from None
    if value < 0:
        raise EinspaceError(f"{what} must be an integer >= 0; got {value!r}")
    return value


def check_loss(value: object, name: str, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EinspaceError(f"{name} must be a number or None; got {value!r} ({where})") from None
    if not math.isfinite(number):
        raise EinspaceError(
            f"{name} = {number!r} is not finite ({where}); expected a finite loss. Use "
            f"RunStore.mark_diverged(run_id, step, reason) for a run whose loss blew up"
        )
    return number


def check_point(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise EinspaceError(
            f"point {index} must be a mapping with keys {list(POINT_FIELDS)}; got {row!r}"
        )
    unknown = [key for key in row if key not in POINT_FIELDS]
    if unknown:
        raise EinspaceError(
            f"point {index} has unknown key {unknown[0]!r}; "
            f"{suggest(str(unknown[0]), POINT_FIELDS)}"
        )
    for key in ("step", "compute"):
        if key not in row:
            raise EinspaceError(f"point {index} needs {key!r}; got keys {sorted(row)}")
    where = f"point {index}, step {row['step']!r}"
    compute = check_loss(row["compute"], "compute", where)
    if compute < 0:
        raise EinspaceError(f"compute must be >= 0; got {compute!r} ({where})")
    point: dict[str, Any] = {"step": check_step(row["step"], f"step of point {index}")}
    point["compute"] = compute
    for key in ("train_loss", "eval_loss"):
        value = row.get(key)
        point[key] = None if value is None else check_loss(value, key, where)
    return point
