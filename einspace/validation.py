"""Validation of user-given integers, with one message style.

Every check names the value as the user typed it: pass the CLI flag (``"--d-in"``) when the
value came from the command line and the Python name (``"d_in"``) when it came from a call.

Examples:
    >>> check_int(3, "--seed", low=0)
    3
    >>> try:
    ...     check_int(-1, "--seed", low=0)
    ... except EinspaceError as err:
    ...     print(err)
    --seed = -1 must be an integer ≥ 0; the nearest valid value is --seed 0
    >>> check_int("64", "d_in", example=1024)
    Traceback (most recent call last):
    ...
    einspace.errors.EinspaceError: d_in = '64' must be an integer ≥ 1; e.g. d_in = 1024
"""

from __future__ import annotations

import numpy as np

from einspace.errors import EinspaceError

__all__ = ["check_int", "example_text"]


def example_text(name: str, value: object) -> str:
    """``"--flag 3"`` for a CLI flag, ``"name = 3"`` for a Python name."""
    return f"{name} {value}" if name.startswith("-") else f"{name} = {value}"


def check_int(
    value: object,
    name: str,
    low: int = 1,
    high: int | None = None,
    example: int | None = None,
    what: str = "an integer",
) -> int:
    """``value`` as an ``int`` when it is an integer in ``[low, high]``, else an
    :class:`~einspace.errors.EinspaceError` naming ``name`` and the nearest valid value (or,
    for a value that is not an integer at all, ``example``).

    Integral floats (``3.0``) and NumPy integers are accepted; ``bool`` is not.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        shown = low if example is None else example
        raise EinspaceError(
            f"{name} = {value!r} must be {what} ≥ {low}; e.g. {example_text(name, shown)}"
        )
    if value < low or (high is not None and value > high):
        nearest = low if value < low else high
        bounds = f"≥ {low}" if high is None else f"in {low} … {high}"
        raise EinspaceError(
            f"{name} = {value!r} must be {what} {bounds}; the nearest valid value is "
            f"{example_text(name, nearest)}"
        )
    return int(value)
