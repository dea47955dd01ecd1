"""Proxy tasks: small, seeded problems on which structures are trained and compared.

A :class:`Task` gives training batches, a fixed evaluation set and a loss. Everything
is reproducible on CPU from the task's seed: batches are drawn on CPU (with the given
generator, or with one seeded from ``(seed, step)`` when none is given, so the batch of
a step does not depend on what ran before, which makes resumed runs see the same data)
and then moved to the requested device, so every device sees identical numbers.

Tasks are named in a registry: :func:`get_task` builds one by name, :data:`TASKS` maps
names to factories and :func:`register_task` adds one.

Registered tasks: ``mlp_regression`` (a teacher MLP), ``digits`` (scikit-learn's 8×8 digits),
``cifar10`` (the CIFAR-10 python batches from a directory the user gives) and ``lm`` (byte-level
language modelling on English text that ships with Python, or on the user's own file).

**Model kind.** A task may declare ``model_kind``: ``"mlp"`` (the default when absent: inputs
``(B, d_in)`` floats, the proxy is an MLP) or ``"lm"`` (inputs and targets are ``(B, n_ctx)``
token ids below ``d_in = d_out = vocab_size``, the proxy is a decoder-only transformer, and one
example is ``tokens_per_example = n_ctx`` tokens). :func:`model_kind` reads it.

This module imports torch; :mod:`search` itself does not import this module.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import math
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from einspace.errors import EinspaceError, suggest

__all__ = [
    "ACTIVATIONS",
    "CIFAR10_FILES",
    "TASKS",
    "Cifar10",
    "Digits",
    "MLPRegression",
    "Task",
    "TextLM",
    "get_task",
    "model_kind",
    "register_task",
]

DeviceLike: TypeAlias = torch.device | str | None

ACTIVATIONS: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {"tanh": torch.tanh, "relu": torch.relu}
)
"""Nonlinearities the teacher of :class:`MLPRegression` can use."""

# Independent random streams derived from one task seed.
_STREAM_MODEL, _STREAM_TRAIN, _STREAM_EVAL, _STREAM_NORM, _STREAM_SPLIT = range(5)


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


# --------------------------------------------------------------------------- randomness


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EinspaceError(f"seed must be an integer >= 0; got {seed!r}")
    return seed


def _generator(seed: int, stream: int, step: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``(seed, stream, step)`` by NumPy's SeedSequence."""
    state = np.random.SeedSequence([seed, stream, step]).generate_state(1, dtype=np.uint64)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(state[0]))
    return gen


def _batch_generator(
    seed: int, step: int, batch_size: int, generator: torch.Generator | None
) -> torch.Generator:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise EinspaceError(f"step must be an integer >= 0; got {step!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EinspaceError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if generator is None:
        return _generator(seed, _STREAM_TRAIN, step)
    if generator.device.type != "cpu":
        raise EinspaceError(
            f"the generator must be a CPU torch.Generator (batches are drawn on CPU and "
            f"then moved, so every device sees the same data); got one on "
            f"{generator.device}"
        )
    return generator


def _device(device: DeviceLike) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise EinspaceError(
            f"unknown device {device!r}; expected a torch device such as 'cpu', 'cuda', "
            f"'cuda:0' or 'mps'"
        ) from None


# --------------------------------------------------------------------------- tasks


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
        for arg, value in (("d_in", d_in), ("hidden", hidden), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EinspaceError(f"{arg} must be an integer >= 1; got {value!r}")
        if isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 2:
            raise EinspaceError(f"n_eval must be an integer >= 2; got {n_eval!r}")
        if activation not in ACTIVATIONS:
            raise EinspaceError(
                f"unknown teacher activation {activation!r}; "
                f"{suggest(str(activation), ACTIVATIONS)}"
            )
        self.seed = _check_seed(seed)
        self.d_in = d_in
        self.d_out = 1
        self.hidden = hidden
        self.depth = depth
        self.activation = activation
        self.n_eval = n_eval
        gen = _generator(self.seed, _STREAM_MODEL)
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
        raw = self._teacher(self._inputs(16384, _generator(self.seed, _STREAM_NORM)))
        self._shift = float(raw.mean())
        self._scale = float(raw.std())
        x_eval = self._inputs(n_eval, _generator(self.seed, _STREAM_EVAL))
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
        gen = _batch_generator(self.seed, step, batch_size, generator)
        x = self._inputs(batch_size, gen)
        dev = _device(device)
        return x.to(dev), self._teacher(x).to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The fixed evaluation set: ``n_eval`` inputs and their targets (copies).

        Examples:
            >>> x, y = MLPRegression(n_eval=100).eval_set()
            >>> tuple(x.shape), tuple(y.shape)
            ((100, 8), (100, 1))
        """
        dev = _device(device)
        return self._eval[0].to(dev, copy=True), self._eval[1].to(dev, copy=True)


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
        self.seed = _check_seed(seed)
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
        order = torch.randperm(n, generator=_generator(self.seed, _STREAM_SPLIT))
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
        gen = _batch_generator(self.seed, step, batch_size, generator)
        if batch_size <= self.n_train:
            idx = torch.randperm(self.n_train, generator=gen)[:batch_size]
        else:
            idx = torch.randint(self.n_train, (batch_size,), generator=gen)
        dev = _device(device)
        return self._train[0][idx].to(dev), self._train[1][idx].to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The held-out images and labels (copies).

        Examples:
            >>> x, y = Digits(eval_fraction=0.5).eval_set()
            >>> tuple(x.shape), tuple(y.shape)
            ((898, 64), (898,))
        """
        dev = _device(device)
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


# --------------------------------------------------------------------------- language modelling

LM_CORPUS: Final = "pydoc_data.topics"
"""The default corpus: the standard library's documentation topics, joined in key order."""


class TextLM:
    """Byte-level language modelling (vocabulary 256) on real English text, no download.

    The default corpus is the text of the standard library's documentation topics
    (``pydoc_data.topics``: every topic, in sorted key order, separated by blank lines,
    UTF-8 encoded; about 0.47 MB with Python 3.11), which every Python installation ships.
    ``path`` trains on a text file of the user's instead (its bytes, as they are).

    The split is fixed by the text alone: the last ``eval_fraction`` of the bytes is held out.
    A training example is a window of ``n_ctx + 1`` consecutive training bytes at a uniformly
    drawn start: inputs are its first ``n_ctx`` bytes, targets the next-byte shifts. The
    evaluation set is ``n_eval`` windows at evenly spaced starts over the held-out part. The
    loss is the mean cross-entropy per byte, in nats (``log 256 ≈ 5.545`` for uniform logits).

    Args:
        n_ctx: context length in bytes (tokens per example).
        path: a text file to model instead of the default corpus.
        eval_fraction: share of the bytes held out, in (0, 0.5].
        n_eval: number of evaluation windows.
        seed: seed of the training batches (the split does not depend on it).

    Attributes:
        model_kind: ``"lm"``; ``d_in = d_out = vocab_size = 256``.
        tokens_per_example: ``n_ctx``.
        corpus: ``"pydoc_data.topics"`` or the path given.
        digest: the first 16 hex digits of the corpus bytes' SHA-256 (for run records).

    Examples:
        >>> task = TextLM(n_ctx=32)
        >>> x, y = task.train_batch(step=0, batch_size=4)
        >>> tuple(x.shape), x.dtype, bool((x[:, 1:] == y[:, :-1]).all())
        ((4, 32), torch.int64, True)
        >>> round(float(task.loss(torch.zeros(4, 32, 256), y)), 3)  # log 256
        5.545
    """

    name = "lm"
    model_kind = "lm"
    vocab_size = 256

    def __init__(
        self,
        n_ctx: int = 64,
        path: str | None = None,
        eval_fraction: float = 0.1,
        n_eval: int = 64,
        seed: int = 0,
    ) -> None:
        for arg, value in (("n_ctx", n_ctx), ("n_eval", n_eval)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EinspaceError(f"{arg} must be an integer >= 1; got {value!r}")
        if isinstance(eval_fraction, bool) or not (
            isinstance(eval_fraction, int | float) and 0 < eval_fraction <= 0.5
        ):
            raise EinspaceError(f"eval_fraction must be in (0, 0.5]; got {eval_fraction!r}")
        self.seed = _check_seed(seed)
        self.n_ctx, self.n_eval, self.eval_fraction = n_ctx, n_eval, float(eval_fraction)
        self.path = None if path is None else str(path)
        self.corpus = LM_CORPUS if self.path is None else self.path
        raw = _corpus_bytes(self.path)
        n, window = len(raw), n_ctx + 1
        n_held = max(window, round(n * self.eval_fraction))
        if n - n_held < window:
            need = window + max(window, math.ceil(window / self.eval_fraction))
            raise EinspaceError(
                f"the text {self.corpus!r} has {n} bytes: too short for n_ctx = {n_ctx} with "
                f"eval_fraction = {eval_fraction!r} (needs at least about {need} bytes: a "
                f"training and a held-out window of {window}); use a longer text or a smaller "
                f"n_ctx"
            )
        self.digest = hashlib.sha256(raw).hexdigest()[:16]
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)  # (n,)
        self._train_bytes = data[: n - n_held]
        held = data[n - n_held :]
        starts = np.unique(np.linspace(0, len(held) - window, n_eval).round().astype(np.int64))
        windows = held[torch.from_numpy(starts)[:, None] + torch.arange(window)].long()
        self._eval = (windows[:, :-1].contiguous(), windows[:, 1:].contiguous())
        self.d_in = self.d_out = self.vocab_size
        self.tokens_per_example = n_ctx
        self.n_train_bytes, self.n_eval_bytes = n - n_held, n_held

    def __repr__(self) -> str:
        path = "" if self.path is None else f"path={self.path!r}, "
        return (
            f"TextLM(n_ctx={self.n_ctx}, {path}eval_fraction={self.eval_fraction!r}, "
            f"n_eval={self.n_eval}, seed={self.seed})"
        )

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy of logits ``pred`` (B, T, 256) against next bytes ``target``
        (B, T), in nats per byte."""
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))

    def train_batch(
        self,
        step: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
    ) -> tuple[Tensor, Tensor]:
        """Inputs ``x`` and targets ``y``, both (batch_size, n_ctx) int64 byte values."""
        gen = _batch_generator(self.seed, step, batch_size, generator)
        high = len(self._train_bytes) - self.n_ctx  # starts 0 … high - 1
        starts = torch.randint(high, (batch_size, 1), generator=gen)
        w = self._train_bytes[starts + torch.arange(self.n_ctx + 1)].long()  # (B, n_ctx + 1)
        dev = _device(device)
        return w[:, :-1].to(dev), w[:, 1:].to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The held-out windows ``(x, y)``, each (n_eval, n_ctx) (copies; fewer windows
        when the held-out part has fewer distinct starts)."""
        dev = _device(device)
        return self._eval[0].to(dev, copy=True), self._eval[1].to(dev, copy=True)


def _corpus_bytes(path: str | None) -> bytes:
    """The corpus as bytes: the documentation topics, or the file at ``path`` (read again
    when the file's size or modification time changes)."""
    return _read_corpus(path, _file_stamp(path))


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    try:
        info = Path(path).stat() if path is not None else None
    except OSError:
        return None
    return None if info is None else (info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=4)
def _read_corpus(path: str | None, stamp: tuple[int, int] | None) -> bytes:
    if path is None:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise EinspaceError(f"text file {path!r} {what}; expected a readable text file")
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise EinspaceError(f"cannot read text file {path!r}: {err.strerror}") from None
    if not raw:
        raise EinspaceError(f"text file {path!r} is empty; expected some text to model")
    return raw


# --------------------------------------------------------------------------- CIFAR-10

CIFAR10_FILES: Final = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
"""The files of the CIFAR-10 python version (``cifar-10-batches-py``)."""

_CIFAR10_URL: Final = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_HINT: Final = (
    f"download {_CIFAR10_URL} and extract it: tar xzf cifar-10-python.tar.gz "
    f"(it creates cifar-10-batches-py/)"
)
# what the batches' pickles may reference: numpy arrays of bytes, nothing else
_CIFAR10_GLOBALS: Final = frozenset(
    {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy byte arrays and lists only (no arbitrary code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR10_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


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
        self.seed = _check_seed(seed)
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
        gen = _batch_generator(self.seed, step, batch_size, generator)
        if batch_size <= self.n_train:
            idx = torch.randperm(self.n_train, generator=gen)[:batch_size]
        else:
            idx = torch.randint(self.n_train, (batch_size,), generator=gen)
        dev = _device(device)
        return self._standardize(self._train[0][idx]).to(dev), self._train[1][idx].to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The standardized ``test_batch`` images and labels (copies)."""
        dev = _device(device)
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
            batch = _BatchUnpickler(fh, encoding="bytes").load()
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


def model_kind(task: object) -> str:
    """The model a task needs: its ``model_kind`` attribute, ``"mlp"`` when it has none.

    Examples:
        >>> model_kind(Digits()), model_kind(TextLM(n_ctx=8))
        ('mlp', 'lm')
    """
    kind = getattr(task, "model_kind", "mlp")
    if kind not in ("mlp", "lm"):
        raise EinspaceError(f"task {task!r} has model_kind = {kind!r}; expected 'mlp' or 'lm'")
    return str(kind)


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., Task]] = {}

TASKS: Mapping[str, Callable[..., Task]] = MappingProxyType(_REGISTRY)
"""Registered task names and their factories (read-only; add with :func:`register_task`)."""


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Register a task factory under ``name``; a name can be registered once.

    Examples:
        >>> "digits" in TASKS
        True
        >>> register_task("digits", Digits)
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: task 'digits' is already registered (to Digits); ...
    """
    if not isinstance(name, str) or not name:
        raise EinspaceError(f"a task name must be a non-empty string; got {name!r}")
    if name in _REGISTRY:
        owner = getattr(_REGISTRY[name], "__name__", repr(_REGISTRY[name]))
        raise EinspaceError(
            f"task {name!r} is already registered (to {owner}); choose another name. "
            f"Registered: {sorted(_REGISTRY)}"
        )
    _REGISTRY[name] = factory


def get_task(name: str, **kwargs: Any) -> Task:
    """Build the task registered as ``name`` with keyword arguments ``kwargs``.

    Raises:
        EinspaceError: an unknown name (the message lists the valid ones) or an
            argument the task does not take.

    Examples:
        >>> get_task("mlp_regression", seed=1)
        MLPRegression(d_in=8, hidden=64, depth=2, activation='tanh', n_eval=4096, seed=1)
        >>> get_task("digit")
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: unknown task 'digit'; did you mean 'digits'? Valid: ...
    """
    if name not in _REGISTRY:
        raise EinspaceError(f"unknown task {name!r}; {suggest(str(name), _REGISTRY)}")
    factory = _REGISTRY[name]
    try:
        signature = inspect.signature(factory)
        signature.bind(**kwargs)
    except TypeError as err:
        params = [p for p in signature.parameters if p != "self"]
        bad = next((k for k in kwargs if k not in signature.parameters), None)
        hint = suggest(bad, params) if bad is not None else f"valid: {params}"
        raise EinspaceError(f"task {name!r} got bad arguments {kwargs!r} ({err}); {hint}") from None
    except ValueError:  # no signature (e.g. a builtin); let the call check
        pass
    return factory(**kwargs)


register_task(MLPRegression.name, MLPRegression)
register_task(Digits.name, Digits)
register_task(Cifar10.name, Cifar10)
register_task(TextLM.name, TextLM)
