"""Run identity: the canonical JSON of a run config and the run id hashed from it.

Examples:
    >>> run_id({"width": 64, "structure": "btt"})
    '74cb99c0e5b9dbf7'
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Mapping
from typing import Any

from einspace.errors import EinspaceError

__all__ = ["canonical_config", "config_hash", "label_columns", "run_id"]


def canonical_config(config: Mapping[str, Any]) -> str:
    """Return the canonical JSON text of a run config (sorted keys, no spaces).

    NumPy scalars are turned into Python numbers. ``1`` and ``1.0`` are different
    configs. NaN and infinity are refused, as is anything JSON cannot hold.

    Raises:
        EinspaceError: ``config`` is not a mapping or is not JSON-serializable.

    Examples:
        >>> canonical_config({"width": 64, "structure": "btt", "lr": 1e-3})
        '{"lr":0.001,"structure":"btt","width":64}'
    """
    if not isinstance(config, Mapping):
        raise EinspaceError(
            f"a run config must be a mapping such as {{'structure': 'btt', 'width': 64}}; "
            f"got {type(config).__name__} {config!r}"
        )
    return _canonical_json(config, "a run config")


def _canonical_json(value: object, what: str) -> str:
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_json_default,
        )
    except (TypeError, ValueError) as err:
        raise EinspaceError(
            f"{what} must be JSON-serializable (str keys; str, int, finite float, bool, "
            f"None, lists and dicts); {err}. Given: {value!r}"
        ) from None


def _json_default(value: object) -> object:
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:  # a NumPy/torch scalar
        return item()
    raise TypeError(f"value {value!r} of type {type(value).__name__} is not JSON-serializable")


def run_id(config: Mapping[str, Any]) -> str:
    """Return the stable id of a run: 16 hex digits of SHA-256 of its canonical config.

    The id does not depend on key order, and not on the sweep the run belongs to, so
    the same config in two sweeps is one run.

    Examples:
        >>> run_id({"structure": "btt", "width": 64}) == run_id({"width": 64, "structure": "btt"})
        True
        >>> run_id({"structure": "btt", "width": 64})
        '74cb99c0e5b9dbf7'
    """
    return config_hash(canonical_config(config))


def config_hash(canonical: str) -> str:
    """The run id of a canonical config text (16 hex digits of its SHA-256).

    Examples:
        >>> config_hash(canonical_config({"width": 64, "structure": "btt"}))
        '74cb99c0e5b9dbf7'
    """
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def label_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``runs`` label columns taken from ``config`` (see :data:`LABEL_KEYS`).

    Examples:
        >>> label_columns({"structure": "btt", "width": 64, "lr": 0.1})
        {'structure': 'btt', 'task': None, 'width': 64, 'seed': None}
    """
    out: dict[str, Any] = {}
    for key in ("structure", "task"):
        value = config.get(key)
        if value is None or isinstance(value, str):
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(value.get("name"), str):
            out[key] = value["name"]
        else:  # e.g. a list of exponents: its canonical JSON text
            out[key] = _canonical_json(value, f"config[{key!r}]")
    for key in ("width", "seed"):
        value = config.get(key)
        if value is None:
            out[key] = None
            continue
        try:
            if isinstance(value, bool):
                raise TypeError
            out[key] = operator.index(value)
        except TypeError:
            raise EinspaceError(
                f"config[{key!r}] must be an integer (or absent); got {value!r} of type "
                f"{type(value).__name__}"
            ) from None
    return out
