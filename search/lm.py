"""The LM proxy: a small pre-LayerNorm decoder-only transformer with structured projections.

nanoGPT's layout: token and position embeddings, ``n_layer`` blocks of causal self-attention
and a GELU MLP (4× expansion), each behind a LayerNorm on a residual branch, a final LayerNorm
and a readout to the vocabulary. **Every** projection — Q, K, V, the attention output and both
MLP layers — is an :class:`~einspace.nn.EinsumLinear` of the structure under test (without
bias); the embeddings and the readout stay dense, as in the papers. With a sparse spec
(:mod:`einspace.moe`) as the structure, ``"btt_moe:e=8,k=2"`` makes every projection a
:class:`~einspace.nn.BTTMoE` (the paper's BTT-MoE, experts at the proxy's Monarch sizes) and
``"moe:e=8,k=2"`` keeps the projections dense and replaces each block's MLP by ``E`` expert
MLPs behind a top-k router (:class:`MoEMLP`, the standard-MoE baseline); both use the same
gate and auxiliary loss (:func:`einspace.nn.moe.top_k_route`). A training loop adds
:meth:`GPT.aux_loss` to the loss and may log :meth:`GPT.moe_stats`. The width ``d_model``
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
* LayerNorm gains and biases: learning rate ``lr``;
* MoE routers (``mup_role = "readout"``): zero init and a readout's learning rate.

``optimizer_groups(model, lr)`` is ``param_groups(model, lr, base_width=config.base_width)``:
the ``mup_role`` attributes route the dense layers.

**Compute** (docs: theory §6, Kaplan et al.'s convention): training FLOPs per token are
``6 × (M + n_layer · n_ctx · d_model)``. ``M`` is the forward MACs per token of every
projection (each ``EinsumLinear.macs()``, the sequential plan the layer runs, padding
included) plus the readout's ``d_model · vocab``; the second term counts the attention scores
``q·k`` and the weighted sum of the values with causal masking: a token attends to
``n_ctx / 2`` positions on average, so ``2 · (n_ctx / 2) · d_model`` MACs per layer. The
embedding lookups, LayerNorms, softmax and GELU are not counted. For a sparse model ``M``
counts what a token runs: k of the E experts of each routed layer plus its router's
``d_in · E`` (the paper's count), while :meth:`GPT.num_params` counts every expert. The
implementation computes
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from einspace.errors import EinspaceError, suggest
from einspace.moe import MoESpec, parse_spec
from einspace.nn import BTTMoE, EinsumLinear, param_groups
from einspace.nn.moe import RoutedLayer, aux_loss, routed_layers, routing_stats, top_k_route
from einspace.proxy_realization import (
    DEFAULT_LAYER_SIZING,
    LayerSizing,
    padding_record,
    proxy_realization,
)
from einspace.realization import Realization
from einspace.structure import Structure
from einspace.validation import check_int

__all__ = ["GPT", "GPTConfig", "MoEMLP", "build_gpt"]


@dataclass(frozen=True)
class GPTConfig:
    """Everything that determines the LM proxy's architecture.

    Attributes:
        structure: the projections' structure spec (normalized to its canonical string), or
            a sparse spec (:mod:`einspace.moe`): ``"btt_moe:e=8,k=2"`` makes every projection
            a :class:`~einspace.nn.BTTMoE`; ``"moe:e=8,k=2"`` keeps the projections dense
            and replaces each block's MLP by the standard MoE (:class:`MoEMLP`).
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
        aux_weight: the weight of the MoE auxiliary loss in :meth:`GPT.aux_loss` (the paper's
            code: 0.01).

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
    mode: LayerSizing = DEFAULT_LAYER_SIZING
    pad_tol: float = 0.15
    zero_init: bool = True
    aux_weight: float = 0.01

    def __post_init__(self) -> None:
        spec = self.structure
        if not isinstance(spec, str | Structure | MoESpec):
            raise EinspaceError(f"structure = {spec!r}; expected a spec such as 'btt:r=0.25'")
        object.__setattr__(self, "structure", str(parse_spec(spec)))
        w = self.aux_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not w >= 0:
            raise EinspaceError(f"aux_weight = {w!r} must be a number >= 0, e.g. 0.01")
        for name in ("d_model", "n_layer", "d_head", "n_ctx", "vocab_size"):
            object.__setattr__(self, name, check_int(getattr(self, name), name))
        if self.d_model % self.d_head:
            near = max(self.d_head, round(self.d_model / self.d_head) * self.d_head)
            raise EinspaceError(
                f"d_model = {self.d_model} is not a multiple of d_head = {self.d_head}; "
                f"use d_model = {near} or another d_head"
            )
        if self.base_width is not None:
            object.__setattr__(self, "base_width", check_int(self.base_width, "base_width"))
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

    @property
    def sparse(self) -> MoESpec | None:
        """The sparse spec, or None for a structure."""
        spec = parse_spec(self.structure)
        return spec if isinstance(spec, MoESpec) else None

    def realize(self, d_in: int, d_out: int) -> Realization:
        """The realization of a ``d_in → d_out`` projection under :attr:`mode` (for
        ``btt_moe``: one expert's Monarch; for ``moe``: dense)."""
        sparse = self.sparse
        if sparse is None:
            structure = Structure.parse(self.structure)
        else:
            structure = Structure.named("monarch" if sparse.kind == "btt_moe" else "dense")
        if self.mode == "auto":
            return proxy_realization(structure, d_in, d_out, pad_tol=self.pad_tol)
        return structure.realize(d_in, d_out, mode=self.mode, pad_tol=self.pad_tol)


Projection = Callable[[int, int, bool], EinsumLinear | BTTMoE]
"""``make(d_in, d_out, zero_init) -> layer``: how a model builds its projections."""


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with structured Q, K, V and output projections."""

    def __init__(self, config: GPTConfig, make: Projection) -> None:
        super().__init__()
        d = config.d_model
        self.n_head, self.d_head = config.n_head, config.d_head
        self.q, self.k, self.v = (make(d, d, False) for _ in range(3))
        self.o = make(d, d, config.zero_init)
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

    def macs(self) -> int:
        """Forward MACs per token of the four projections (active MACs for BTT-MoE)."""
        return sum(int(m.macs()) for m in (self.q, self.k, self.v, self.o))


class MLP(nn.Module):
    """``d → 4d → d`` with GELU; both layers structured."""

    def __init__(self, config: GPTConfig, make: Projection) -> None:
        super().__init__()
        d = config.d_model
        self.fc = make(d, 4 * d, False)
        self.proj = make(4 * d, d, config.zero_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))  # (B, T, d)

    def macs(self) -> int:
        """Forward MACs per token of both layers."""
        return int(self.fc.macs()) + int(self.proj.macs())


class MoEMLP(nn.Module):
    """The standard MoE baseline: E expert :class:`MLP` s behind a top-k router.

    The router is ``nn.Linear(d, E, bias=False)``, zero-initialized, a μP readout
    (``mup_role = "readout"``); routing, the softmax over the top-k logits and the
    auxiliary loss are :func:`einspace.nn.moe.top_k_route`'s, as in BTT-MoE. Each expert's
    tokens are gathered and only the selected experts run. After a forward pass
    :attr:`aux_loss` and :attr:`load` hold the auxiliary loss and the fraction of the
    selections each expert got.

    Examples:
        >>> mlp = GPT(GPTConfig("moe:e=4,k=1", d_model=16, n_layer=1, n_ctx=8)).h[0].mlp
        >>> mlp(torch.randn(2, 3, 16)).shape, mlp.macs() == 16 * 64 * 2 + 16 * 4
        (torch.Size([2, 3, 16]), True)
    """

    def __init__(
        self, config: GPTConfig, make: Projection, experts: int, top_k: int, z_loss: float = 0.1
    ) -> None:
        super().__init__()
        self.top_k, self.z_loss_weight = top_k, z_loss
        self.gate = nn.Linear(config.d_model, experts, bias=False)
        self.gate.mup_role = "readout"  # type: ignore[assignment]
        nn.init.zeros_(self.gate.weight)
        self.experts = nn.ModuleList(MLP(config, make) for _ in range(experts))
        self.aux_loss: Tensor | None = None
        self.load: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # (Z, d)
        idx, weights, self.aux_loss, self.load = top_k_route(
            self.gate(x2), self.top_k, self.z_loss_weight
        )
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=len(self.experts)).tolist()
        y = torch.zeros_like(x2)
        start = 0
        for expert, count in zip(self.experts, counts, strict=True):
            sel = order[start : start + count]
            start += count
            if count:
                rows = sel // self.top_k
                out = expert(x2.index_select(0, rows)) * weights.reshape(-1)[sel, None]
                y = y.index_add(0, rows, out)
        return y.reshape(x.shape)

    def macs(self) -> int:
        """Active forward MACs per token: k expert MLPs plus the router's ``d · E``."""
        first = self.experts[0]
        assert isinstance(first, MLP)
        return self.top_k * first.macs() + self.gate.in_features * self.gate.out_features


class Block(nn.Module):
    """Pre-LayerNorm residual block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: GPTConfig, make: Projection) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config, make)
        self.ln_2 = nn.LayerNorm(config.d_model)
        sparse = config.sparse
        self.mlp: MLP | MoEMLP = (
            MoEMLP(config, make, sparse.experts, sparse.top_k)
            if sparse is not None and sparse.kind == "moe"
            else MLP(config, make)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, d)
        return x + self.mlp(self.ln_2(x))


def _projections(config: GPTConfig) -> Projection:
    """The config's projection factory (one realization per shape, shared)."""
    cache: dict[tuple[int, int], Realization] = {}
    sparse = config.sparse

    def make(d_in: int, d_out: int, zero_init: bool) -> EinsumLinear | BTTMoE:
        r = cache.get((d_in, d_out))
        if r is None:
            r = cache[(d_in, d_out)] = config.realize(d_in, d_out)
        if sparse is not None and sparse.kind == "btt_moe":
            return BTTMoE(
                d_in, d_out, sparse.experts, sparse.top_k, bias=False, expert=r, zero_init=zero_init
            )
        return EinsumLinear(d_in, d_out, r, bias=False, zero_init=zero_init)

    return make


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
        make = _projections(config)
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(config.n_ctx, d)
        self.h = nn.ModuleList(Block(config, make) for _ in range(config.n_layer))
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
    def structured_layers(self) -> dict[str, EinsumLinear | BTTMoE]:
        """Every structured projection by module name (a standard MoE's experts included)."""
        return {n: m for n, m in self.named_modules() if isinstance(m, EinsumLinear | BTTMoE)}

    def padding(self) -> dict[str, dict[str, object]]:
        """Per structured layer: mode, class sizes and padding (for the run record; for a
        BTT-MoE layer, its experts' Monarch)."""
        return padding_record(
            {
                n: m.monarch if isinstance(m, BTTMoE) else m.realization
                for n, m in self.structured_layers().items()
            }
        )

    def macs_breakdown(self) -> dict[str, int]:
        """Forward MACs per token: ``projections`` (the structured layers; for sparse models
        the **active** MACs, k of E experts plus the router), ``readout``
        (``d_model · vocab``) and ``attention`` (``n_layer · n_ctx · d_model``, causal)."""
        c = self.config
        projections = 0
        for block in self.h:
            assert isinstance(block, Block)
            projections += block.attn.macs() + block.mlp.macs()
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

    # ------------------------------------------------------------------ MoE
    def moe_layers(self) -> dict[str, RoutedLayer]:
        """Every routed layer by module name (empty for a dense or structured model)."""
        return routed_layers(self)

    def aux_loss(self) -> Tensor:
        """``aux_weight ×`` the mean over the routed layers of their auxiliary loss in the
        last forward pass (the paper's code averages over layers, weight 0.01): add it to
        the training loss. A zero tensor for a model without routed layers
        (:func:`einspace.nn.moe.aux_loss`)."""
        return aux_loss(self, self.config.aux_weight)

    def expert_load(self) -> dict[str, list[float]]:
        """Per routed layer: the fraction of the last forward's selections each expert got
        (sums to 1; with k = 1 the fraction of tokens)."""
        return {n: m.load.tolist() for n, m in self.moe_layers().items() if m.load is not None}

    def moe_stats(self) -> dict[str, float]:
        """The routers' health in the last forward pass (:func:`einspace.nn.moe.routing_stats`:
        ``aux_loss``, ``load_entropy``, ``load_entropy_min``, ``load_max``, ``collapsed``);
        empty for a model without routed layers."""
        return routing_stats(self, self.config.aux_weight)

    def point_extra(self) -> dict[str, float]:
        """What a run logs per point beside the losses (:func:`search.training.train`): the
        routers' health, :meth:`moe_stats` (empty for a model without routed layers)."""
        return self.moe_stats()

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
