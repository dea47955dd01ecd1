"""The digits task: classification of scikit-learn's bundled 8×8 digits (``digits``)."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from einspace.errors import EinspaceError
from einspace.nn.device import resolve_device
from search.tasks.protocol import DeviceLike
from search.tasks.seeding import (
    STREAM_SPLIT,
    batch_generator,
    check_batch,
    check_seed,
    stream_generator,
)

__all__ = ["Digits"]


class Digits:
    """Classification of the 8×8 digits bundled with scikit-learn (no download).

    The 1797 images (64 features, 10 classes) are split by a seeded permutation into a
    training part and an evaluation part of ``eval_fraction``. Features are standardized
    with the training part's per-pixel mean and standard deviation (constant pixels
    are only centred). Training batches are drawn without replacement within a batch
    (with replacement when ``batch_size`` exceeds the training set). The loss is the
    cross-entropy of the logits.

    Args:
        eval_fraction: share of the images held out for evaluation, in (0, 1).
        seed: seed of the split and of the batches.

    Examples:
        >>> task = Digits(seed=0)
        >>> x, y = task.train_batch(step=0, batch_size=5)
        >>> tuple(x.shape), y.dtype, task.d_in, task.d_out, task.n_train + task.n_eval
        ((5, 64), torch.int64, 64, 10, 1797)
        >>> round(float(task.loss(torch.zeros(5, 10), y)), 4)  # log(10)
        2.3026
    """

    name = "digits"

    def __init__(self, eval_fraction: float = 0.2, seed: int = 0) -> None:
        if not 0 < eval_fraction < 1:
            raise EinspaceError(f"eval_fraction must be in (0, 1); got {eval_fraction!r}")
        self.seed = check_seed(seed)
        self.eval_fraction = float(eval_fraction)
        self.d_in = 64
        self.d_out = 10
        features, labels = _digits_arrays()
        x = torch.tensor(features, dtype=torch.float64)  # (1797, 64), a copy
        y = torch.tensor(labels, dtype=torch.int64)  # (1797,)
        n = x.shape[0]
        n_eval = max(1, round(n * self.eval_fraction))
        if n_eval >= n:
            raise EinspaceError(
                f"eval_fraction={eval_fraction!r} leaves no training images of {n}; "
                f"expected a fraction such as 0.2"
            )
        order = torch.randperm(n, generator=stream_generator(self.seed, STREAM_SPLIT))
        train_idx, eval_idx = order[n_eval:], order[:n_eval]
        mean = x[train_idx].mean(dim=0)
        std = x[train_idx].std(dim=0)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        x = ((x - mean) / std).to(torch.float32)
        self._train = (x[train_idx], y[train_idx])
        self._eval = (x[eval_idx], y[eval_idx])
        self.n_train = int(train_idx.numel())
        self.n_eval = int(eval_idx.numel())

    def __repr__(self) -> str:
        return f"Digits(eval_fraction={self.eval_fraction!r}, seed={self.seed})"

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy of logits ``pred`` (B, 10) against class indices ``target`` (B,).

        Examples:
            >>> round(float(Digits().loss(torch.zeros(3, 10), torch.tensor([0, 4, 9]))), 4)
            2.3026
        """
        return F.cross_entropy(pred, target)

    def train_batch(
        self,
        step: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
    ) -> tuple[Tensor, Tensor]:
        """Standardized images ``x`` (batch_size, 64) and labels ``y`` (batch_size,).

        Examples:
            >>> task = Digits()
            >>> torch.equal(task.train_batch(3, 16)[1], task.train_batch(3, 16)[1])
            True
        """
        step, batch_size = check_batch(step, batch_size)
        gen = batch_generator(self.seed, step, generator)
        if batch_size <= self.n_train:
            idx = torch.randperm(self.n_train, generator=gen)[:batch_size]
        else:
            idx = torch.randint(self.n_train, (batch_size,), generator=gen)
        dev = resolve_device(device)
        return self._train[0][idx].to(dev), self._train[1][idx].to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The held-out images and labels (copies).

        Examples:
            >>> x, y = Digits(eval_fraction=0.5).eval_set()
            >>> tuple(x.shape), tuple(y.shape)
            ((898, 64), (898,))
        """
        dev = resolve_device(device)
        return self._eval[0].to(dev, copy=True), self._eval[1].to(dev, copy=True)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The bundled digits ``(features (1797, 64), labels (1797,))``, loaded once."""
    from sklearn.datasets import load_digits  # slow to import; only Digits needs it

    features, labels = load_digits(return_X_y=True)
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    features.setflags(write=False)
    labels.setflags(write=False)
    return features, labels
