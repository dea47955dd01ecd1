"""The language-modelling task: byte-level next-token prediction on real text (``lm``)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from einspace.errors import EinspaceError
from einspace.nn.device import resolve_device
from einspace.validation import check_int
from search.tasks.corpus import LM_CORPUS, corpus_bytes
from search.tasks.protocol import DeviceLike
from search.tasks.seeding import batch_generator, check_batch, check_seed

__all__ = ["TextLM"]


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
        n_ctx = check_int(n_ctx, "n_ctx", example=64)
        n_eval = check_int(n_eval, "n_eval", example=64)
        if isinstance(eval_fraction, bool) or not (
            isinstance(eval_fraction, int | float) and 0 < eval_fraction <= 0.5
        ):
            raise EinspaceError(f"eval_fraction must be in (0, 0.5]; got {eval_fraction!r}")
        self.seed = check_seed(seed)
        self.n_ctx, self.n_eval, self.eval_fraction = n_ctx, n_eval, float(eval_fraction)
        self.path = None if path is None else str(path)
        self.corpus = LM_CORPUS if self.path is None else self.path
        raw = corpus_bytes(self.path)
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
        step, batch_size = check_batch(step, batch_size)
        gen = batch_generator(self.seed, step, generator)
        high = len(self._train_bytes) - self.n_ctx  # starts 0 … high - 1
        starts = torch.randint(high, (batch_size, 1), generator=gen)
        w = self._train_bytes[starts + torch.arange(self.n_ctx + 1)].long()  # (B, n_ctx + 1)
        dev = resolve_device(device)
        return w[:, :-1].to(dev), w[:, 1:].to(dev)

    def eval_set(self, device: DeviceLike = None) -> tuple[Tensor, Tensor]:
        """The held-out windows ``(x, y)``, each (n_eval, n_ctx) (copies; fewer windows
        when the held-out part has fewer distinct starts)."""
        dev = resolve_device(device)
        return self._eval[0].to(dev, copy=True), self._eval[1].to(dev, copy=True)
