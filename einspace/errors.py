"""The one exception type of einspace, and how its messages name alternatives."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["EinspaceError", "suggest"]


class EinspaceError(ValueError):
    """Raised for every bad input einspace detects.

    Messages say what was given, what was expected and, when one exists, the nearest
    valid alternative.

    Examples:
        >>> try:
        ...     raise EinspaceError("bad θ")
        ... except ValueError as err:
        ...     print(err)
        bad θ
    """


def suggest(value: str, valid: Iterable[str]) -> str:
    """Return a sentence naming the closest valid choices to ``value``.

    Examples:
        >>> suggest("btt2", ["btt", "dense", "monarch"])
        "did you mean 'btt'? Valid: 'btt', 'dense', 'monarch'"
    """
    choices = sorted(valid)
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
    listing = ", ".join(repr(c) for c in choices)
    if close:
        return f"did you mean {close[0]!r}? Valid: {listing}"
    return f"valid: {listing}"
