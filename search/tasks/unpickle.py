"""A restricted unpickler for the CIFAR-10 python batches: numpy byte arrays, dicts and
lists only, so a batch file cannot run code when it is read."""

from __future__ import annotations

import pickle
from typing import Any, Final

__all__ = ["ALLOWED_GLOBALS", "BatchUnpickler"]

# what the batches' pickles may reference: numpy arrays of bytes, nothing else
ALLOWED_GLOBALS: Final = frozenset(
    {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy byte arrays and lists only (no arbitrary code).

    Examples:
        >>> import io, numpy as np
        >>> batch = {b"data": np.zeros((1, 3), np.uint8), b"labels": [7]}
        >>> BatchUnpickler(io.BytesIO(pickle.dumps(batch)), encoding="bytes").load()[b"labels"]
        [7]
        >>> BatchUnpickler(io.BytesIO(pickle.dumps(print))).load()
        Traceback (most recent call last):
        ...
        _pickle.UnpicklingError: global builtins.print is not allowed
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)
