"""Seeds and random streams of the tasks.

Independent streams are derived from one task seed (``STREAM_*``) by NumPy's
``SeedSequence``; a training batch without a generator is drawn from one seeded from
``(seed, step)``, so the batch of a step does not depend on what ran before.
"""

from __future__ import annotations

import torch

from einspace.errors import EinspaceError
from einspace.seeds import derive_seed
from einspace.validation import check_int

__all__ = [
    "STREAM_EVAL",
    "STREAM_MODEL",
    "STREAM_NORM",
    "STREAM_SPLIT",
    "STREAM_TRAIN",
    "batch_generator",
    "check_batch",
    "check_seed",
    "stream_generator",
]

# Independent random streams derived from one task seed.
STREAM_MODEL, STREAM_TRAIN, STREAM_EVAL, STREAM_NORM, STREAM_SPLIT = range(5)


def check_seed(seed: object) -> int:
    """``seed`` as an ``int`` if it is an integer ≥ 0, else an :class:`EinspaceError` naming
    it (:func:`einspace.validation.check_int` with ``low=0``).

    Examples:
        >>> check_seed(3)
        3
        >>> check_seed(-1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: seed = -1 must be an integer ≥ 0; ...
    """
    return check_int(seed, "seed", low=0)


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


def check_batch(step: object, batch_size: object) -> tuple[int, int]:
    """A training batch's ``step`` (an integer ≥ 0) and ``batch_size`` (≥ 1) as ``int``-s,
    checked by :func:`einspace.validation.check_int`.

    Examples:
        >>> check_batch(5, 8.0)
        (5, 8)
        >>> check_batch(5, 0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: batch_size = 0 must be an integer ≥ 1; ...
    """
    return check_int(step, "step", low=0), check_int(batch_size, "batch_size", example=64)


def batch_generator(seed: int, step: int, generator: torch.Generator | None) -> torch.Generator:
    """The generator a training batch is drawn with: ``generator`` if given (it must be on
    the CPU), else one seeded from ``(seed, step)`` alone (``step`` as returned by
    :func:`check_batch`).

    Examples:
        >>> a, b = batch_generator(0, 5, None), batch_generator(0, 5, None)
        >>> torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
        True
    """
    if generator is None:
        return stream_generator(seed, STREAM_TRAIN, step)
    if generator.device.type != "cpu":
        raise EinspaceError(
            f"the generator must be a CPU torch.Generator (batches are drawn on CPU and "
            f"then moved, so every device sees the same data); got one on "
            f"{generator.device}"
        )
    return generator
