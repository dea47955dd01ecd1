"""Fitting activations to a realization's padded widths (the core's padding rules).

x is zero-padded or truncated from d_in to the input classes' product; the einsum output is
truncated or zero-padded from the output classes' product to d_out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from einspace.errors import EinspaceError

__all__ = ["flatten_input", "resize_last"]


def flatten_input(x: torch.Tensor, d_in: int, layer: str) -> torch.Tensor:
    """Check the last dimension is ``d_in`` and flatten the leading ones: (Z, d_in)."""
    if x.shape[-1:] != (d_in,):
        raise EinspaceError(
            f"input of shape {tuple(x.shape)} given to {layer}; expected the last "
            f"dimension to be d_in = {d_in}"
        )
    return x.reshape(-1, d_in)


def resize_last(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad or truncate the last dimension of a (Z, n) tensor to ``width``.

    Examples:
        >>> resize_last(torch.ones(2, 3), 4).tolist()
        [[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
        >>> resize_last(torch.ones(2, 3), 2).shape
        torch.Size([2, 2])
    """
    n = t.shape[-1]
    if n < width:
        return F.pad(t, (0, width - n))
    if n > width:
        return t[:, :width]
    return t
