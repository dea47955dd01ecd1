"""How numbers are shown: floats rounded to what they mean, for tables, CSV and JSON.

Exponents and ratios computed in floating point carry noise in their last bits
(``0.09999999999999999``, ``0.666666666667``). :func:`round_floats` rounds every float column
of a frame to a number of significant digits, so that the shortest representation Python and
pandas print is the intended value (``0.1``, ``0.666667``). Integers, strings and NaN are left
alone.

Examples:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"nu": [0.09999999999999999, 2 / 3, float("nan")], "n": [1, 2, 3]})
    >>> print(round_floats(frame).to_csv(index=False).strip())
    nu,n
    0.1,1
    0.666667,2
    ,3
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["round_float", "round_floats"]


def round_float(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (NaN and ±inf unchanged).

    Examples:
        >>> round_float(1.9249999999999998), round_float(1e-7 / 3)
        (1.925, 3.33333e-08)
    """
    if not math.isfinite(value) or value == 0:
        return value + 0.0
    return float(f"{value:.{digits}g}") + 0.0


def round_floats(frame: pd.DataFrame, digits: int = 6) -> pd.DataFrame:
    """A copy of ``frame`` with every float column rounded to ``digits`` significant digits."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            values = out[col].to_numpy(dtype=float)
            out[col] = np.fromiter(
                (round_float(v, digits) for v in values), dtype=float, count=len(values)
            )
    return out
