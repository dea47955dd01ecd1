"""A training checkpoint as bytes: what a proxy run needs to continue bit for bit.

A checkpoint holds the step, the model's and the optimizer's state, the training losses
logged since the last point (the partial window of the next point's ``train_loss``) and the
CPU (and CUDA) RNG state, written with ``torch.save`` into bytes (the run store keeps the
bytes). It is read back with ``weights_only=True``: only tensors and plain containers load.

Examples:
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> optimizer = torch.optim.AdamW(model.parameters())
    >>> blob = checkpoint_bytes(3, model, optimizer, [0.5])
    >>> restore_checkpoint(blob, model, optimizer, torch.device("cpu"))
    (3, [0.5])
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["checkpoint_bytes", "restore_checkpoint"]


def checkpoint_bytes(
    step: int, model: nn.Module, optimizer: torch.optim.Optimizer, window: Sequence[float]
) -> bytes:
    """The checkpoint of a run after ``step`` optimizer steps, as bytes."""
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "window": list(window),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def restore_checkpoint(
    blob: bytes, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> tuple[int, list[float]]:
    """Load :func:`checkpoint_bytes` output into ``model``, ``optimizer`` and the global RNG
    state; returns the checkpoint's step and training-loss window."""
    state = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"].cpu())
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
    return int(state["step"]), [float(v) for v in state["window"]]
