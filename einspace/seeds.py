"""Seed derivation: one seed per purpose from a few integers, by NumPy's SeedSequence.

Runs, tasks and the θ sampler each derive independent streams from a user seed and a stream
number (and a step, a worker, …). :func:`derive_seed` is the one way to do it; ``bits`` keeps
the width each caller has always used, so derived seeds (and so results) are unchanged:
64 for a ``torch.Generator``, 63 for ``torch.manual_seed`` (a non-negative int64), 32 for
Optuna's samplers.

Examples:
    >>> derive_seed(0, 1)
    5836529245451711556
    >>> derive_seed(0, 1, bits=32)
    3964924996
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(*words: int, bits: Literal[32, 63, 64] = 63) -> int:
    """A seed from ``words`` (non-negative integers): the first state word of
    ``np.random.SeedSequence(words)``, ``bits`` wide."""
    if bits == 32:
        return int(np.random.SeedSequence(list(words)).generate_state(1)[0])
    state = int(np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)[0])
    return state if bits == 64 else state & 0x7FFF_FFFF_FFFF_FFFF
