"""The LM proxy: a small pre-LayerNorm decoder-only transformer with structured projections.

nanoGPT's layout: token and position embeddings, ``n_layer`` blocks of causal self-attention
and a GELU MLP (4× expansion), each behind a LayerNorm on a residual branch, a final LayerNorm
and a readout to the vocabulary. **Every** projection — Q, K, V, the attention output and both
MLP layers — is an :class:`~einspace.nn.EinsumLinear` of the structure under test (without
bias); the embeddings and the readout stay dense, as in the papers. The width ``d_model``
scales the model, and the number of heads with it (``n_head = d_model / d_head``, head size
fixed).

**μP** (docs: theory §4 and §6):

* structured projections: spectral init per factor, per-factor learning rates from
  :func:`einspace.nn.param_groups`; the output projections that end a residual branch
  (attention output, MLP down projection) start with their last factor at zero;
* attention logits are ``q·k / d_head`` (not ``/ √d_head``);
* embeddings (``mup_role = "input"``): unit-variance entries, learning rate ``lr``;
* readout (``mup_role = "readout"``): zero init and learning rate ``lr · base_width /
  d_model``. With ``tied=True`` the readout reuses the token embedding and multiplies the
  logits by ``base_width / d_model`` instead (the mup package's shared readout);
* LayerNorm gains and biases: learning rate ``lr``.

``optimizer_groups(model, lr)`` is ``param_groups(model, lr, base_width=config.base_width)``:
the ``mup_role`` attributes route the dense layers.

**Compute** (docs: theory §6, Kaplan et al.'s convention): training FLOPs per token are
``6 × (M + n_layer · n_ctx · d_model)``. ``M`` is the forward MACs per token of every
projection (each ``EinsumLinear.macs()``, the sequential plan the layer runs, padding
included) plus the readout's ``d_model · vocab``; the second term counts the attention scores
``q·k`` and the weighted sum of the values with causal masking: a token attends to
``n_ctx / 2`` positions on average, so ``2 · (n_ctx / 2) · d_model`` MACs per layer. The
embedding lookups, LayerNorms, softmax and GELU are not counted. The implementation computes
the full ``n_ctx × n_ctx`` score matrix and masks it, so it *executes*
``2 · n_layer · n_ctx · d_model`` attention MACs per token
(:meth:`GPT.executed_macs_per_token`); tests check that figure against
``torch.utils.flop_counter.FlopCounterMode``.

Examples:
    >>> import torch
    >>> model = GPT(GPTConfig("btt", d_model=32, n_layer=1, n_ctx=16))
    >>> model(torch.zeros(2, 16, dtype=torch.long)).shape
    torch.Size([2, 16, 256])
    >>> model.macs_breakdown()  # BTT 32 = 4·8: q, k, v, o 1024 each, fc and proj 3072 each
    {'projections': 10240, 'readout': 8192, 'attention': 512}
    >>> model.flops_per_token() == 6 * (10240 + 32 * 256 + 1 * 16 * 32)
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from einspace.errors import EinspaceError, suggest
from einspace.nn import EinsumLinear, param_groups
from einspace.proxy_realization import padding_record, proxy_realization
from einspace.realization import Realization
from einspace.structure import Structure

__all__ = ["GPT", "GPTConfig", "build_gpt"]

SizeMode = Literal["auto", "round", "exact"]


@dataclass(frozen=True)
class GPTConfig:
    """Everything that determines the LM proxy's architecture.

    Attributes:
        structure: the projections' structure spec (normalized to its canonical string).
        d_model: the width.
        n_layer: transformer blocks.
        d_head: head size (fixed as the width grows; ``d_model`` must be a multiple).
        n_ctx: context length.
        vocab_size: vocabulary (256 for bytes).
        tied: readout tied to the token embedding.
        base_width: the width at which the μP learning rates are the base ones (``None``:
            ``d_model``, no width transfer).
        mode: sizes of the structured layers: ``"auto"`` (exact where the width factors in a
            balanced way, :func:`einspace.proxy_realization.proxy_realization`), ``"round"``
            or ``"exact"``.
        pad_tol: padding tolerance of round mode.
        zero_init: zero-initialize the readout and the residual output projections.

    Examples:
        >>> GPTConfig("btt", d_model=64).n_head, GPTConfig("btt", d_model=64).structure
        (4, 'btt(r=0.25)')
    """

    structure: str
    d_model: int
    n_layer: int = 2
    d_head: int = 16
    n_ctx: int = 64
    vocab_size: int = 256
    tied: bool = False
    base_width: int | None = None
    mode: SizeMode = "auto"
    pad_tol: float = 0.15
    zero_init: bool = True

    def __post_init__(self) -> None:
        spec = self.structure
        if not isinstance(spec, str | Structure):
            raise EinspaceError(f"structure = {spec!r}; expected a spec such as 'btt:r=0.25'")
        object.__setattr__(
            self, "structure", str(spec if isinstance(spec, Structure) else Structure.parse(spec))
        )
        for name in ("d_model", "n_layer", "d_head", "n_ctx", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EinspaceError(f"{name} = {value!r} must be an integer >= 1")
        if self.d_model % self.d_head:
            near = max(self.d_head, round(self.d_model / self.d_head) * self.d_head)
            raise EinspaceError(
                f"d_model = {self.d_model} is not a multiple of d_head = {self.d_head}; "
                f"use d_model = {near} or another d_head"
            )
        if self.base_width is not None and (
            isinstance(self.base_width, bool)
            or not isinstance(self.base_width, int)
            or self.base_width < 1
        ):
            raise EinspaceError(f"base_width = {self.base_width!r} must be an integer >= 1")
        if self.mode not in ("auto", "round", "exact"):
            raise EinspaceError(
                f"mode = {self.mode!r}; {suggest(str(self.mode), ['auto', 'round', 'exact'])}"
            )

    @property
    def n_head(self) -> int:
        """``d_model / d_head``."""
        return self.d_model // self.d_head

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    def realize(self, d_in: int, d_out: int) -> Realization:
        """The realization of a ``d_in → d_out`` projection under :attr:`mode`."""
        structure = Structure.parse(self.structure)
        if self.mode == "auto":
            return proxy_realization(structure, d_in, d_out, pad_tol=self.pad_tol)
        return structure.realize(d_in, d_out, mode=self.mode, pad_tol=self.pad_tol)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with structured Q, K, V and output projections."""

    def __init__(self, config: GPTConfig, square: Realization) -> None:
        super().__init__()
        d = config.d_model
        self.n_head, self.d_head = config.n_head, config.d_head
        self.q, self.k, self.v = (EinsumLinear(d, d, square, bias=False) for _ in range(3))
        self.o = EinsumLinear(d, d, square, bias=False, zero_init=config.zero_init)
        self.scale = 1.0 / config.d_head  # μP: 1/d_head instead of 1/√d_head
        mask = torch.ones(config.n_ctx, config.n_ctx, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape  # (B, T, d)

        def heads(y: Tensor) -> Tensor:
            return y.view(b, t, self.n_head, self.d_head).transpose(1, 2)  # (B, H, T, dh)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, T, T)
        mask: Tensor = self.mask  # type: ignore[assignment]
        scores = scores.masked_fill(~mask[:t, :t], float("-inf"))
        y = scores.softmax(dim=-1) @ v  # (B, H, T, dh)
        return self.o(y.transpose(1, 2).reshape(b, t, d))  # (B, T, d)


class MLP(nn.Module):
    """``d → 4d → d`` with GELU; both layers structured."""

    def __init__(self, config: GPTConfig, up: Realization, down: Realization) -> None:
        super().__init__()
        d = config.d_model
        self.fc = EinsumLinear(d, 4 * d, up, bias=False)
        self.proj = EinsumLinear(4 * d, d, down, bias=False, zero_init=config.zero_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))  # (B, T, d)


class Block(nn.Module):
    """Pre-LayerNorm residual block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: GPTConfig, realizations: Mapping[str, Realization]) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config, realizations["square"])
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config, realizations["up"], realizations["down"])

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, d)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The LM proxy (see the module docs).

    Args:
        config: the architecture.

    Examples:
        >>> model = GPT(GPTConfig("monarch", d_model=32, n_layer=1, n_ctx=8))
        >>> model.padding()["h.0.mlp.fc"]  # 32 = 4·8 → 128 = 8·16, no padding
        {'mode': 'exact', 'sizes': {'α': 4, 'γ': 8, 'ε': 8, 'φ': 16}, 'input': 0, 'output': 0}
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        d, vocab = config.d_model, config.vocab_size
        realizations = {
            "square": config.realize(d, d),
            "up": config.realize(d, 4 * d),
            "down": config.realize(4 * d, d),
        }
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(config.n_ctx, d)
        self.h = nn.ModuleList(Block(config, realizations) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.wte.mup_role = "input"  # type: ignore[assignment]
        self.wpe.mup_role = "input"  # type: ignore[assignment]
        self.lm_head: nn.Linear | None = None
        if not config.tied:
            self.lm_head = nn.Linear(d, vocab, bias=False)
            self.lm_head.mup_role = "readout"  # type: ignore[assignment]
        base = config.base_width if config.base_width is not None else d
        self.readout_mult = base / d if config.tied else 1.0
        self.reset_dense()

    def reset_dense(self) -> None:
        """μP init of the dense parts: embeddings N(0, ½) each (the residual stream starts
        at unit RMS), zero (or, without ``zero_init``, N(0, 1/d)) readout, unit LayerNorms."""
        with torch.no_grad():
            self.wte.weight.normal_(0.0, math.sqrt(0.5))
            self.wpe.weight.normal_(0.0, math.sqrt(0.5))
            if self.lm_head is not None:
                if self.config.zero_init:
                    self.lm_head.weight.zero_()
                else:
                    self.lm_head.weight.normal_(0.0, 1.0 / math.sqrt(self.config.d_model))
            for module in self.modules():
                if isinstance(module, nn.LayerNorm):
                    module.reset_parameters()

    def forward(self, idx: Tensor) -> Tensor:
        """Token ids ``(B, T)`` with ``T ≤ n_ctx`` → logits ``(B, T, vocab)``."""
        t = idx.shape[-1]
        if t > self.config.n_ctx:
            raise EinspaceError(f"sequence length {t} exceeds n_ctx = {self.config.n_ctx}")
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, d)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        if self.lm_head is not None:
            return self.lm_head(x)  # (B, T, vocab)
        return F.linear(x, self.wte.weight) * self.readout_mult

    # ------------------------------------------------------------------ counts
    def structured_layers(self) -> dict[str, EinsumLinear]:
        """Every structured projection by module name."""
        return {n: m for n, m in self.named_modules() if isinstance(m, EinsumLinear)}

    def padding(self) -> dict[str, dict[str, object]]:
        """Per structured layer: mode, class sizes and padding (for the run record)."""
        return padding_record({n: m.realization for n, m in self.structured_layers().items()})

    def macs_breakdown(self) -> dict[str, int]:
        """Forward MACs per token: ``projections`` (the structured layers), ``readout``
        (``d_model · vocab``) and ``attention`` (``n_layer · n_ctx · d_model``, causal)."""
        c = self.config
        projections = sum(int(m.macs()) for m in self.structured_layers().values())
        return {
            "projections": projections,
            "readout": c.d_model * c.vocab_size,
            "attention": c.n_layer * c.n_ctx * c.d_model,
        }

    def macs_per_token(self) -> int:
        """``M + n_layer · n_ctx · d_model``: forward MACs per token, attention included."""
        return sum(self.macs_breakdown().values())

    def flops_per_token(self) -> int:
        """Training FLOPs per token, ``6 × macs_per_token()`` (docs: theory §6)."""
        return 6 * self.macs_per_token()

    def executed_macs_per_token(self) -> int:
        """Forward MACs per token that the matmuls execute: as :meth:`macs_per_token` but
        with the full masked score matrix, ``2 · n_layer · n_ctx · d_model``."""
        parts = self.macs_breakdown()
        return parts["projections"] + parts["readout"] + 2 * parts["attention"]

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters; ``non_embedding`` leaves out the token and position embeddings (a
        tied readout's weights then count nowhere)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.wte.weight.numel() + self.wpe.weight.numel()
        return total

    def optimizer_groups(
        self, lr: float, optimizer: Literal["adam", "sgd"] = "adam"
    ) -> list[dict[str, Any]]:
        """μP parameter groups for the whole model (see the module docs)."""
        return param_groups(self, lr, optimizer, base_width=self.config.base_width)


def build_gpt(structure: Structure | str, width: int, task: object = None, **kwargs: Any) -> GPT:
    """A :class:`GPT` of ``structure`` at ``d_model = width`` for ``task``: the model-factory
    signature ``(structure, width, task) -> nn.Module``.

    The task's ``tokens_per_example`` and ``vocab_size`` (when it has them) set ``n_ctx``
    and the vocabulary; ``kwargs`` set any other :class:`GPTConfig` field.

    Examples:
        >>> from search.tasks import TextLM
        >>> build_gpt("dense", 32, TextLM(n_ctx=16), n_layer=1).config.n_ctx
        16
    """
    fields: dict[str, Any] = {}
    if task is not None:
        if getattr(task, "tokens_per_example", None) is not None:
            fields["n_ctx"] = int(task.tokens_per_example)  # type: ignore[attr-defined]
        if getattr(task, "vocab_size", None) is not None:
            fields["vocab_size"] = int(task.vocab_size)  # type: ignore[attr-defined]
    fields.update(kwargs)
    return GPT(GPTConfig(str(structure), d_model=width, **fields))
