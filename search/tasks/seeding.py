"""Seeds and random streams of the tasks.

Independent streams are derived from one task seed (``STREAM_*``) by NumPy's
``SeedSequence``; a training batch without a generator is drawn from one seeded from
``(seed, step)``, so the batch of a step does not depend on what ran before.
"""

from __future__ import annotations

import torch

from einspace.errors import EinspaceError
from einspace.seeds import derive_seed

__all__ = [
    "STREAM_EVAL",
    "STREAM_MODEL",
    "STREAM_NORM",
    "STREAM_SPLIT",
    "STREAM_TRAIN",
    "batch_generator",
    "check_seed",
    "stream_generator",
]

# Independent random streams derived from one task seed.
STREAM_MODEL, STREAM_TRAIN, STREAM_EVAL, STREAM_NORM, STREAM_SPLIT = range(5)


def check_seed(seed: object) -> int:
    """``seed`` if it is an integer >= 0, else an :class:`EinspaceError` naming it.

    Examples:
        >>> check_seed(3)
        3
        >>> check_seed(-1)
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: seed must be an integer >= 0; got -1
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EinspaceError(f"seed must be an integer >= 0; got {seed!r}")
    return seed


def stream_generator(seed: int, stream: int, step: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``(seed, stream, step)`` by NumPy's SeedSequence.

    Examples:
        >>> a, b = stream_generator(0, STREAM_EVAL), stream_generator(0, STREAM_EVAL)
        >>> torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
        True
    """
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derive_seed(seed, stream, step, bits=64))
    return gen


def batch_generator(
    seed: int, step: int, batch_size: int, generator: torch.Generator | None
) -> torch.Generator:
    """The generator a training batch is drawn with: ``generator`` if given (it must be on
    the CPU), else one seeded from ``(seed, step)`` alone; ``step`` and ``batch_size``
    are checked.

    Examples:
        >>> a, b = batch_generator(0, 5, 8, None), batch_generator(0, 5, 8, None)
        >>> torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
        True
        >>> batch_generator(0, 5, 0, None)
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: batch_size must be an integer >= 1; got 0
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise EinspaceError(f"step must be an integer >= 0; got {step!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EinspaceError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if generator is None:
        return stream_generator(seed, STREAM_TRAIN, step)
    if generator.device.type != "cpu":
        raise EinspaceError(
            f"the generator must be a CPU torch.Generator (batches are drawn on CPU and "
            f"then moved, so every device sees the same data); got one on "
            f"{generator.device}"
        )
    return generator
