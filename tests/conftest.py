"""Shared fixtures: a small CIFAR-10 directory in the exact python-pickle format."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def write_cifar10(folder: Path, n_per_batch: int = 12, seed: int = 0) -> Path:
    """Write ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` as the CIFAR-10 python
    version does: pickled dicts with bytes keys, ``b'data'`` uint8 (N, 3072) and
    ``b'labels'`` a list of ints (protocol 2, as the original files)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR10_FILES:
        batch = {
            b"batch_label": f"{name} of a generated fixture".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    return folder


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CIFAR-10 directory, 12 images per batch."""
    return write_cifar10(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")


@pytest.fixture(scope="session")
def cifar10_writer() -> Callable[..., Path]:
    """:func:`write_cifar10`, for tests that need their own (e.g. damaged) directory."""
    return write_cifar10
