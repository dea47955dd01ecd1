"""The CIFAR-10 task: image classification from the python-pickle batches (``cifar10``)."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from einspace.errors import EinspaceError
from einspace.nn.device import resolve_device
from search.tasks.protocol import DeviceLike
from search.tasks.seeding import batch_generator, check_batch, check_seed
from search.tasks.unpickle import BatchUnpickler

__all__ = ["CIFAR10_FILES", "Arrays", "Cifar10"]

CIFAR10_FILES: Final = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
"""The files of the CIFAR-10 python version (``cifar-10-batches-py``)."""

_CIFAR10_URL: Final = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_HINT: Final = (
    f"download {_CIFAR10_URL} and extract it: tar xzf cifar-10-python.tar.gz "
    f"(it creates cifar-10-batches-py/)"
)


class Cifar10:
    """CIFAR-10 image classification from the standard python-pickle batches (no torchvision).

    ``root`` is the directory holding ``data_batch_1`` … ``data_batch_5`` and ``test_batch``
    (or the directory that contains ``cifar-10-batches-py``). Each file is a pickled dict with
    ``b'data'``, uint8 of shape (N, 3072) (the 1024 red, then green, then blue pixels of a
    32×32 image, row-major), and ``b'labels'``, N integers in 0…9. The five data batches
    train; ``test_batch`` is the evaluation set. Pixels are standardized per channel with the
    training images' mean and standard deviation; the images stay flat (``d_in = 3072``) for
    an MLP proxy. Training batches are drawn as in :class:`Digits`. The loss is the
    cross-entropy of the logits.

    Args:
        root: the directory of the batches.
        seed: seed of the training batches (the split is the data set's own).

    Examples:
        >>> Cifar10("/nonexistent")
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: CIFAR-10 directory '/nonexistent' does not exist; ...
    """

    name = "cifar10"

    def __init__(self, root: str | None = None, seed: int = 0) -> None:
        if root is None:
            raise EinspaceError(
                "the cifar10 task needs root=<directory with data_batch_1 … data_batch_5 and "
                f"test_batch>; {_CIFAR10_HINT}"
            )
        self.seed = check_seed(seed)
        self.root = str(root)
        folder = _cifar_folder(Path(self.root))
        (x_train, y_train), (x_eval, y_eval) = _cifar_arrays(str(folder))
        # per-channel mean and std from value histograms (exact, no float copy of the data)
        values = np.arange(256, dtype=np.float64)
        channels = x_train.reshape(len(x_train), 3, 1024).transpose(1, 0, 2).reshape(3, -1)
        counts = [np.bincount(channel, minlength=256) for channel in channels]
        mean = np.array([(h * values).sum() / h.sum() for h in counts])  # (3,)
        var = np.array(
            [(h * (values - m) ** 2).sum() / h.sum() for h, m in zip(counts, mean, strict=True)]
        )
        std = np.where(var > 1e-16, np.sqrt(var), 1.0)
        self._mean = torch.tensor(np.repeat(mean, 1024), dtype=torch.float32)  # (3072,)
        self._inv_std = torch.tensor(np.repeat(1.0 / std, 1024), dtype=torch.float32)
        self._train = (torch.from_numpy(x_train), torch.from_numpy(y_train))  # uint8, int64
        self._eval = (self._standardize(torch.from_numpy(x_eval)), torch.from_numpy(y_eval))
        self.d_in, self.d_out = 3072, 10
        self.n_train, self.n_eval = len(y_train), len(y_eval)

    def __repr__(self) -> str:
        return f"Cifar10(root={self.root!r}, seed={self.seed})"

    def _standardize(self, x: Tensor) -> Tensor:
        return (x.float() - self._mean) * self._inv_std  # (N, 3072)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy of logits ``pred`` (B, 10) against class indices ``target`` (B,)."""
        return F.cross_entropy(pred, target)

    def train_batch(
        self,
        step: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
    ) -> tuple[Tensor, Tensor]:
        """Standardized images ``x`` (batch_size, 3072) and labels ``y`` (batch_size,)."""
        step, batch_size = check_batch(step, batch_size)
        gen = batch_generator(self.seed, step, generator)
        if batch_size <= self.n_train:
            idx = torch.randperm(self.n_train, generator=gen)[:batch_size]
        else:
            idx = torch.randint(self.n_train, (batch_size,), generator=gen)
        dev = resolve_device(device)
        return self._standardize(self._train[0][idx]).to(dev), self._train[1][idx].to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The standardized ``test_batch`` images and labels (copies)."""
        dev = resolve_device(device)
        return self._eval[0].to(dev, copy=True), self._eval[1].to(dev, copy=True)


def _cifar_folder(root: Path) -> Path:
    if not root.is_dir():
        raise EinspaceError(f"CIFAR-10 directory {str(root)!r} does not exist; {_CIFAR10_HINT}")
    for folder in (root, root / "cifar-10-batches-py"):
        if all((folder / f).is_file() for f in CIFAR10_FILES):
            return folder
    missing = [f for f in CIFAR10_FILES if not (root / f).is_file()]
    raise EinspaceError(
        f"CIFAR-10 directory {str(root)!r} lacks {', '.join(missing)} (expected "
        f"{', '.join(CIFAR10_FILES)}); {_CIFAR10_HINT}"
    )


Arrays: TypeAlias = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


@functools.lru_cache(maxsize=1)
def _cifar_arrays(folder: str) -> tuple[Arrays, Arrays]:
    """``((train images, labels), (test images, labels))``, read once per folder."""
    parts = [_cifar_batch(Path(folder) / f) for f in CIFAR10_FILES]
    train = (np.concatenate([p[0] for p in parts[:-1]]), np.concatenate([p[1] for p in parts[:-1]]))
    return train, parts[-1]


def _cifar_batch(file: Path) -> Arrays:
    try:
        with file.open("rb") as fh:
            batch = BatchUnpickler(fh, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise EinspaceError(
            f"{str(file)!r} is not a CIFAR-10 python batch (a pickled dict with b'data' and "
            f"b'labels'): {err}; {_CIFAR10_HINT}"
        ) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise EinspaceError(
            f"{str(file)!r}: b'data' is {data.dtype} of shape {data.shape}; expected uint8 "
            f"of shape (N, 3072)"
        )
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise EinspaceError(
            f"{str(file)!r}: b'labels' must be {len(data)} integers in 0…9; got shape "
            f"{labels.shape}"
        )
    return data, labels
