"""What a proxy run needs from a task (:class:`Task`), the model kind a task asks for
(:func:`model_kind`), and the devices batches are moved to (:func:`resolve_device`)."""

from __future__ import annotations

from typing import Protocol, TypeAlias, runtime_checkable

import torch
from torch import Tensor

from einspace.errors import EinspaceError

__all__ = ["DeviceLike", "Task", "model_kind"]

DeviceLike: TypeAlias = torch.device | str | None
"""A device argument of a task: a torch device, its name, or ``None`` for the CPU."""


@runtime_checkable
class Task(Protocol):
    """What a proxy run needs from a task.

    Attributes:
        name: the registry name of the task.
        d_in: input features per example.
        d_out: outputs per example (regression targets or class logits).
    """

    @property
    def name(self) -> str: ...

    @property
    def d_in(self) -> int: ...

    @property
    def d_out(self) -> int: ...

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """The scalar training/evaluation loss of predictions ``pred`` (B, d_out)."""
        ...

    def train_batch(
        self,
        step: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
    ) -> tuple[Tensor, Tensor]:
        """A training batch ``(x, y)`` with ``x`` of shape (batch_size, d_in)."""
        ...

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The fixed held-out evaluation set ``(x, y)``."""
        ...


def model_kind(task: object) -> str:
    """The model a task needs: its ``model_kind`` attribute, ``"mlp"`` when it has none.

    Examples:
        >>> from search.tasks import Digits, TextLM
        >>> model_kind(Digits()), model_kind(TextLM(n_ctx=8))
        ('mlp', 'lm')
    """
    kind = getattr(task, "model_kind", "mlp")
    if kind not in ("mlp", "lm"):
        raise EinspaceError(f"task {task!r} has model_kind = {kind!r}; expected 'mlp' or 'lm'")
    return str(kind)
