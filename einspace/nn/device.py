"""The torch device a run asks for, checked once with one message.

Examples:
    >>> resolve_device(None), resolve_device("cpu")
    (device(type='cpu'), device(type='cpu'))
    >>> try:
    ...     resolve_device("gpu", name="--device")
    ... except EinspaceError as err:
    ...     print(str(err).split(';')[0])
    unknown --device 'gpu'
"""

from __future__ import annotations

import torch

from einspace.errors import EinspaceError

__all__ = ["DeviceLike", "resolve_device"]

DeviceLike = torch.device | str | None
"""A device as users give it; None means CPU."""


def resolve_device(device: DeviceLike, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` (None → CPU), refused by name when torch does not know
    it or when it asks for CUDA (or MPS) on a machine without one."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise EinspaceError(
            f"unknown {name} {device!r}; expected a torch device such as 'cpu', 'cuda', "
            "'cuda:0' or 'mps'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EinspaceError(f"{name} {device!r} asked for but CUDA is not available; use 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise EinspaceError(f"{name} {device!r} asked for but MPS is not available; use 'cpu'")
    return dev
