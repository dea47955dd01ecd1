"""Checks of what workers log into a run store: steps, losses and curve points.

Examples:
    >>> point = check_point({"step": 10, "compute": 6e6, "train_loss": 1.5}, 0)
    >>> point["compute"], point["eval_loss"], point["tokens"]
    (6000000.0, None, None)
    >>> check_point({"step": 1, "compute": 0, "lr": 1e-3, "extra": {"aux": 0.5}}, 0)["extra"]
    '{"aux": 0.5}'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from einspace.errors import EinspaceError, suggest
from einspace.validation import check_int
from search.store.schema import POINT_FIELDS

__all__ = ["check_loss", "check_point"]


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
    point: dict[str, Any] = {"step": check_int(row["step"], f"step of point {index}", low=0)}
    point["compute"] = compute
    for key in ("train_loss", "eval_loss"):
        value = row.get(key)
        point[key] = None if value is None else check_loss(value, key, where)
    tokens = row.get("tokens")
    point["tokens"] = (
        None if tokens is None else check_int(tokens, f"tokens of point {index}", low=0)
    )
    lr = row.get("lr")
    point["lr"] = None if lr is None else check_loss(lr, "lr", where)
    point["extra"] = _extra_json(row.get("extra"), where)
    return point


def _extra_json(extra: object, where: str) -> str | None:
    """A point's ``extra`` numbers as canonical JSON text (keys sorted), or None."""
    if extra is None:
        return None
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
        raise EinspaceError(
            f"extra must be a mapping of names to numbers or None; got {extra!r} ({where})"
        )
    values = {key: check_loss(extra[key], f"extra[{key!r}]", where) for key in sorted(extra)}
    return json.dumps(values)
