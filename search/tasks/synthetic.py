"""The synthetic task: regression onto a fixed random teacher MLP (``mlp_regression``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from einspace.errors import EinspaceError, suggest
from einspace.nn.device import resolve_device
from einspace.validation import check_int
from search.tasks.protocol import DeviceLike
from search.tasks.seeding import (
    STREAM_EVAL,
    STREAM_MODEL,
    STREAM_NORM,
    batch_generator,
    check_batch,
    check_seed,
    stream_generator,
)

__all__ = ["ACTIVATIONS", "MLPRegression"]

ACTIVATIONS: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {"tanh": torch.tanh, "relu": torch.relu}
)
"""Nonlinearities the teacher of :class:`MLPRegression` can use."""


class MLPRegression:
    """Regression onto a fixed random teacher MLP (the papers' MLP-regression setup).

    The teacher is ``d_in → hidden → … → hidden → 1`` with ``depth`` hidden layers and
    a tanh nonlinearity by default. tanh keeps the target smooth and not piecewise-linear,
    so a ReLU student cannot represent it exactly and the loss keeps falling with
    scale. Its weights are drawn from ``N(0, 1/fan_in)`` and its hidden biases from
    ``N(0, 0.5²)``, all from the task seed. Targets are standardized (mean 0, variance
    1 over 16384 seeded inputs), so predicting 0 has an MSE of about 1.

    Inputs are ``x ~ N(0, I)``; every training batch is fresh, and the evaluation set
    is ``n_eval`` fixed inputs from a separate stream. The loss is the mean squared error.

    Args:
        d_in: input dimension (8 in the papers' setup).
        hidden: teacher hidden width.
        depth: number of teacher hidden layers.
        activation: ``"tanh"`` or ``"relu"``.
        n_eval: size of the evaluation set.
        seed: seed of the teacher, the batches and the evaluation set.

    Examples:
        >>> task = MLPRegression(seed=0)
        >>> x, y = task.train_batch(step=0, batch_size=4)
        >>> tuple(x.shape), tuple(y.shape), task.d_in, task.d_out
        ((4, 8), (4, 1), 8, 1)
        >>> torch.equal(task.train_batch(0, 4)[0], x)
        True
        >>> round(float(task.loss(torch.zeros_like(task.eval_set()[1]), task.eval_set()[1])), 1)
        1.0
    """

    name = "mlp_regression"

    def __init__(
        self,
        d_in: int = 8,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "tanh",
        n_eval: int = 4096,
        seed: int = 0,
    ) -> None:
        d_in, hidden = check_int(d_in, "d_in", example=8), check_int(hidden, "hidden", example=64)
        depth, n_eval = check_int(depth, "depth", example=2), check_int(n_eval, "n_eval", low=2)
        if activation not in ACTIVATIONS:
            raise EinspaceError(
                f"unknown teacher activation {activation!r}; "
                f"{suggest(str(activation), ACTIVATIONS)}"
            )
        self.seed = check_seed(seed)
        self.d_in = d_in
        self.d_out = 1
        self.hidden = hidden
        self.depth = depth
        self.activation = activation
        self.n_eval = n_eval
        gen = stream_generator(self.seed, STREAM_MODEL)
        dims = [d_in] + [hidden] * depth + [1]
        self._weights = [
            torch.randn(a, b, generator=gen, dtype=torch.float32) / math.sqrt(a)
            for a, b in itertools.pairwise(dims)
        ]
        self._biases = [
            0.5 * torch.randn(hidden, generator=gen, dtype=torch.float32) for _ in range(depth)
        ]
        self._shift = 0.0
        self._scale = 1.0
        raw = self._teacher(self._inputs(16384, stream_generator(self.seed, STREAM_NORM)))
        self._shift = float(raw.mean())
        self._scale = float(raw.std())
        x_eval = self._inputs(n_eval, stream_generator(self.seed, STREAM_EVAL))
        self._eval = (x_eval, self._teacher(x_eval))

    def __repr__(self) -> str:
        return (
            f"MLPRegression(d_in={self.d_in}, hidden={self.hidden}, depth={self.depth}, "
            f"activation={self.activation!r}, n_eval={self.n_eval}, seed={self.seed})"
        )

    def _inputs(self, n: int, gen: torch.Generator) -> Tensor:
        return torch.randn(n, self.d_in, generator=gen, dtype=torch.float32)  # (n, d_in)

    def _teacher(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        h = x
        for weight, bias in zip(self._weights[:-1], self._biases, strict=True):
            h = act(h @ weight + bias)  # (n, hidden)
        return (h @ self._weights[-1] - self._shift) / self._scale  # (n, 1)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean squared error.

        Examples:
            >>> MLPRegression().loss(torch.ones(2, 1), torch.zeros(2, 1))
            tensor(1.)
        """
        return F.mse_loss(pred, target)

    def train_batch(
        self,
        step: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
    ) -> tuple[Tensor, Tensor]:
        """Fresh inputs ``x`` (batch_size, d_in) and teacher targets ``y`` (batch_size, 1).

        Without a generator the batch is a function of ``(seed, step)`` only.

        Examples:
            >>> task = MLPRegression()
            >>> torch.equal(task.train_batch(1, 8)[1], task.train_batch(2, 8)[1])
            False
        """
        step, batch_size = check_batch(step, batch_size)
        gen = batch_generator(self.seed, step, generator)
        x = self._inputs(batch_size, gen)
        dev = resolve_device(device)
        return x.to(dev), self._teacher(x).to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The fixed evaluation set: ``n_eval`` inputs and their targets (copies).

        Examples:
            >>> x, y = MLPRegression(n_eval=100).eval_set()
            >>> tuple(x.shape), tuple(y.shape)
            ((100, 8), (100, 1))
        """
        dev = resolve_device(device)
        return self._eval[0].to(dev, copy=True), self._eval[1].to(dev, copy=True)
