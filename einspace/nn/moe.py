"""``BTTMoE``: a BTT whose rank index ρ (size E) is split into E experts (docs/theory.md §5).

The layer is the BTT ``y[ε, φ] = Σ_{α,γ,ρ} B[γ, ε, φ, ρ] · g[ρ] · A[α, γ, φ, ρ] · x[α, γ]`` with a
per-token gate vector ``g``: a zero-initialized linear gate ``d_in → E`` gives logits, the
top-k experts per token are kept and their logits softmaxed, and the other entries of ``g``
are zero. Expert ``e`` is the rank-1 BTT (a Monarch matrix) ``ρ = e``.

* Sizes: α, γ, ε, φ are Monarch's (√d each, padded like :class:`~einspace.nn.EinsumLinear`),
  ρ = E.
* Init: each expert as a rank-1 BTT, i.e. the spectral σ of the Monarch realization's fans,
  which also set the μP learning rates (:func:`~einspace.nn.param_groups`).
* Gate: ``nn.Linear(d_in, E, bias=False)``, zero-initialized (as in the paper's code); its
  ``mup_role`` is ``"readout"`` (:func:`~einspace.nn.param_groups` gives it a readout's rate).
* Counts (:class:`einspace.moe.MoERealization`, :attr:`BTTMoE.counts`): :attr:`BTTMoE.params`
  counts the two factors (all experts); :attr:`BTTMoE.total_params` adds the gate;
  :meth:`BTTMoE.macs` is the **active** MACs per token, the BTT's sequential MACs × k / E
  plus the gate's ``d_in · E`` (the paper's count: 139,264 at d = 1024, E = 8, k = 2).
* Load balancing: after each forward pass :attr:`BTTMoE.aux_loss` holds
  ``E · ⟨P, f⟩ + z_loss_weight · mean(logsumexp(logits)²)``, where ``P`` is the router's
  softmax probability averaged over tokens and ``f`` the fraction of the k·tokens selections
  each expert received (both sum to 1; ``E · ⟨P, f⟩`` is 1 when perfectly balanced). Add it
  to the training loss with a small coefficient. :attr:`BTTMoE.load` holds ``f`` (detached).
* Compute: ``dispatch="dense"`` runs the full BTT and zeroes the unselected rank slices (the
  plan of :class:`EinsumLinear` with the gate applied between the two factors), as the
  paper's code does; ``"sparse"`` gathers each expert's tokens and runs each expert as a
  Monarch plan on them (exactly k/E of the MACs, plus a gather, a scatter-add and a Python
  loop over the experts); ``"grouped"`` copies each expert's tokens into its rows of an
  ``(E, C, d_in)`` buffer (C = the most tokens any expert got) and runs all experts as two
  batched matmuls (E·C/(k·tokens) × k/E of the MACs: the empty slots compute zeros).
  ``"auto"`` follows :func:`auto_dispatch` (measured on CPU, ``benchmarks/moe_layers.py``,
  docs/moe.md), and picks dense under ``torch.compile`` (no data-dependent shapes).

Examples:
    >>> import torch
    >>> moe = BTTMoE(256, 256, experts=8, top_k=2)
    >>> moe(torch.randn(4, 10, 256)).shape
    torch.Size([4, 10, 256])
    >>> float(moe.aux_loss.detach()) > 0, moe.macs() == moe.btt_macs * 2 / 8 + 256 * 8
    (True, True)
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from einspace.errors import EinspaceError, suggest
from einspace.moe import MoERealization, MoESpec, collapsed, load_entropy
from einspace.nn.execute import PlanFunction, compile_program, compute_dtype, run_program
from einspace.nn.linear import core_order_state
from einspace.nn.mup import init_factors, spectral_sigmas
from einspace.nn.widths import flatten_input, resize_last
from einspace.plan import ExecutionPlan, Z
from einspace.realization import Realization
from einspace.validation import check_int

__all__ = [
    "DISPATCHES",
    "GROUPED_FROM",
    "LOOP_FROM",
    "BTTMoE",
    "Dispatch",
    "RoutedLayer",
    "auto_dispatch",
    "aux_loss",
    "routed_layers",
    "routing_stats",
    "top_k_route",
]

Dispatch = Literal["auto", "dense", "sparse", "grouped"]
DISPATCHES: tuple[Dispatch, ...] = ("auto", "dense", "sparse", "grouped")
"""How a :class:`BTTMoE` runs its experts (see the module docs)."""


class BTTMoE(nn.Module):
    """BTT mixture of experts over the rank index.

    Args:
        d_in: input width.
        d_out: output width.
        experts: E, the number of experts (the size of ρ).
        top_k: experts used per token (1 ≤ top_k ≤ E).
        bias: add a learnable output bias (zero init).
        mode: class sizing, ``"round"`` or ``"exact"`` (as for EinsumLinear).
        pad_tol: largest relative padding in ``"round"`` mode.
        z_loss_weight: weight of the z-loss in :attr:`aux_loss` (docs/theory.md §5: 0.1).
        dispatch: ``"auto"``, ``"dense"``, ``"sparse"`` or ``"grouped"`` (see the module
            docs).
        device: where to create the parameters.
        dtype: parameter dtype.
        expert: the experts' Monarch realization (instead of ``mode`` and ``pad_tol``; e.g.
            the LM proxy's exact sizes).
        zero_init: start the last factor at zero (the layer's output is zero).
    """

    factors: nn.ParameterList
    bias: nn.Parameter | None

    def __init__(
        self,
        d_in: int,
        d_out: int,
        experts: int,
        top_k: int = 2,
        bias: bool = True,
        mode: Literal["round", "exact"] = "round",
        pad_tol: float = 0.15,
        z_loss_weight: float = 0.1,
        dispatch: Dispatch = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        expert: Realization | None = None,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        experts, top_k = check_int(experts, "experts", example=8), check_int(top_k, "top_k")
        if top_k > experts:
            raise EinspaceError(
                f"top_k = {top_k} exceeds experts = {experts}; a token can use at most "
                f"{experts} experts (use top_k ≤ {experts})"
            )
        if dispatch not in DISPATCHES:
            raise EinspaceError(f"dispatch = {dispatch!r}; {suggest(str(dispatch), DISPATCHES)}")
        if expert is None:
            counts = MoESpec("btt_moe", experts, top_k).realize(d_in, d_out, mode, pad_tol)
        else:
            if (expert.d_in, expert.d_out) != (d_in, d_out):
                raise EinspaceError(
                    f"expert realization is {expert.d_in} → {expert.d_out}; the layer is "
                    f"{d_in} → {d_out}"
                )
            counts = MoERealization.from_expert(expert, experts, top_k)
        self.counts = counts
        monarch = counts.expert
        self.d_in, self.d_out, self.experts, self.top_k = d_in, d_out, experts, top_k
        self.z_loss_weight = float(z_loss_weight)
        self.dispatch = dispatch
        self.zero_init = zero_init
        self._options = {"top_k": top_k, "bias": bias, "mode": monarch.mode, "pad_tol": pad_tol}
        self.monarch = monarch
        self.realization = counts.btt
        self.plan = ExecutionPlan.compile(self.realization)
        self._padded_in = self.realization.padded_in
        self._padded_out = self.realization.padded_out
        # the gate scales the ρ slices of the intermediate between the two factors (ρ is
        # live there whichever factor goes first); find where ρ and the tokens sit in it
        self._first = compile_program(self.plan, 0, 1)
        self._second = compile_program(self.plan, 1, 2)
        mid = self.plan.steps[0].layout_out
        self._gate_transposed = 4 in mid and mid.index(4) < mid.index(Z)
        self._gate_shape = tuple(-1 if a == Z else (experts if a == 4 else 1) for a in mid)
        # one expert = the Monarch plan (same class positions minus ρ), for sparse dispatch
        expert_plan = ExecutionPlan.compile(monarch)
        self._expert_first = compile_program(expert_plan, 0, 1)
        self._expert_second = compile_program(expert_plan, 1, 2)
        e_steps = sorted(expert_plan.steps, key=lambda s: s.factor)
        core = ((0, 1, 3), (1, 2, 3))  # A: α γ φ, B: γ ε φ (class positions)
        self._expert_perm = tuple(
            tuple(c.index(p) for p in st.weight_axes) for c, st in zip(core, e_steps, strict=True)
        )
        mid_e = expert_plan.steps[0].layout_out
        self._expert_gate_shape = tuple(-1 if a == Z else 1 for a in mid_e)
        self._stored_axes = tuple(
            s.weight_axes for s in sorted(self.plan.steps, key=lambda s: s.factor)
        )
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        shapes = self._first.weight_shapes
        self.factors = nn.ParameterList(nn.Parameter(torch.empty(s, **kw)) for s in shapes)
        self.gate = nn.Linear(d_in, experts, bias=False, **kw)
        self.gate.mup_role = "readout"  # type: ignore[assignment]
        self.bias = nn.Parameter(torch.empty(d_out, **kw)) if bias else None
        self.aux_loss: torch.Tensor | None = None
        self.load: torch.Tensor | None = None
        core_order_state(self)  # state_dict factors in the core's axis order
        self.reset_parameters()

    @classmethod
    def from_realization(cls, realization: MoERealization, **kwargs: Any) -> BTTMoE:
        """The layer of a :class:`~einspace.moe.MoERealization` (its expert sizes, E, k);
        ``kwargs`` as for the constructor (``bias``, ``dispatch``, ``device``, ``dtype``, …).

        Examples:
            >>> from einspace.moe import MoESpec
            >>> r = MoESpec.parse("btt_moe:e=4,k=1").realize(64, 64)
            >>> BTTMoE.from_realization(r).macs() == r.active_macs == 2 * 8 ** 3 + 64 * 4
            True
        """
        return cls(
            realization.d_in,
            realization.d_out,
            realization.experts,
            realization.top_k,
            expert=realization.expert,
            **kwargs,
        )

    # ------------------------------------------------------------------ counts
    @property
    def mup_realization(self) -> Realization:
        """The rank-1 BTT (Monarch) realization: each expert's fans set init and μP LRs."""
        return self.monarch

    @property
    def k(self) -> int:
        """Number of factors (2)."""
        return 2

    @property
    def sigmas(self) -> tuple[float, ...]:
        """Init σ of A and B (each expert as a rank-1 BTT)."""
        return spectral_sigmas(self.monarch)

    @property
    def params(self) -> int:
        """Weights of the two factors, all experts (gate and bias not included)."""
        return self.counts.params

    @property
    def gate_params(self) -> int:
        """Weights of the gate, ``d_in · E``."""
        return self.counts.gate_params

    @property
    def total_params(self) -> int:
        """Every weight trained: all experts and the gate (the bias not included)."""
        return self.counts.total_params

    @property
    def active_params(self) -> int:
        """Weights a token uses: k experts and the gate."""
        return self.counts.active_params

    @property
    def btt_macs(self) -> int:
        """Sequential MACs per token of the whole BTT (all experts, no gate)."""
        return self.counts.btt_macs

    def macs(self, batch: int = 1) -> float:
        """Active MACs per token: the BTT's × top_k / E plus the gate's ``d_in · E``
        (docs/theory.md §5; ``batch`` is accepted for :class:`EinsumLinear`'s signature,
        the sequential count does not depend on it)."""
        return float(self.counts.active_macs)

    def reset_parameters(self) -> None:
        """Spectral init (rank-1 fans), zero gate, zero bias (and, with ``zero_init``, a
        zero last factor: the layer starts as zero, for one that ends a residual branch)."""
        init_factors(self.factors, self.sigmas)
        with torch.no_grad():
            if self.zero_init:
                self.factors[-1].zero_()
            self.gate.weight.zero_()
            if self.bias is not None:
                self.bias.zero_()

    def core_factors(self) -> list[torch.Tensor]:
        """A (α, γ, φ, ρ) and B (γ, ε, φ, ρ) in the core's axis order (views)."""
        return self._core(list(self.factors))

    def _core(self, ws: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for axes, w in zip(self._stored_axes, ws, strict=True):
            out.append(w.permute(tuple(axes.index(p) for p in sorted(axes))))
        return out

    # ------------------------------------------------------------------ routing
    def route(self, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate ``x2`` (tokens, d_in): (top-k indices, their softmax weights, aux loss)."""
        idx, weights, aux, self.load = top_k_route(self.gate(x2), self.top_k, self.z_loss_weight)
        return idx, weights, aux

    def path(self, tokens: int) -> Dispatch:
        """The path a forward pass of ``tokens`` tokens takes: :attr:`dispatch`, or for
        ``"auto"`` :func:`auto_dispatch` (``"dense"`` under ``torch.compile``)."""
        if self.dispatch != "auto":
            return self.dispatch
        if torch.compiler.is_compiling():
            return "dense"
        return auto_dispatch(tokens, self.experts, self.top_k)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., d_in) → (..., d_out)``; sets :attr:`aux_loss`."""
        lead = x.shape[:-1]
        name = f"BTTMoE({self.d_in} → {self.d_out})"
        x2 = flatten_input(x, self.d_in, name)  # (Z, d_in)
        dtype = compute_dtype(x2, self.factors[0], name)
        idx, weights, self.aux_loss = self.route(x2)  # the gate follows autocast itself
        ws = list(self.factors)
        bias: torch.Tensor | None = self.bias
        if dtype is None:
            y = self._experts(x2, idx, weights, ws)
        else:  # autocast: the experts compute in its dtype, as nn.Linear would
            with torch.autocast(x.device.type, enabled=False):
                ws = [w.to(dtype) for w in ws]
                bias = None if bias is None else bias.to(dtype)
                y = self._experts(x2.to(dtype), idx, weights.to(dtype), ws)
        if bias is not None:
            y = y + bias
        return y.reshape(*lead, self.d_out)

    def _experts(
        self, x2: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor, ws: list[torch.Tensor]
    ) -> torch.Tensor:
        """The experts' output (tokens, d_out) for gated inputs, bias not added."""
        xp = resize_last(x2, self._padded_in)  # (Z, P_in)
        path = self.path(x2.shape[0])
        if path == "sparse":
            y = self._sparse(xp, idx, weights, ws)
        elif path == "grouped":
            y = self._grouped(xp, idx, weights, ws)
        else:
            scale = torch.zeros(x2.shape[0], self.experts, dtype=weights.dtype, device=x2.device)
            scale = scale.scatter(1, idx, weights)  # (Z, E), zero off the top-k
            y = self._dense(xp, scale, ws)
        return resize_last(y, self.d_out)

    def _dense(self, xp: torch.Tensor, scale: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
        g = scale.t() if self._gate_transposed else scale  # (E, Z) when ρ precedes z
        g = g.reshape(self._gate_shape)  # broadcasts over the intermediate's layout
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            h = PlanFunction.apply(self._first, xp, *ws)
            return PlanFunction.apply(self._second, h * g, *ws)
        h = run_program(self._first, xp, ws)
        return run_program(self._second, h * g, ws)

    def _sparse(
        self, xp: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor, ws: list[torch.Tensor]
    ) -> torch.Tensor:
        """Run each expert (a Monarch plan) on its own tokens only."""
        a_core, b_core = self._core(ws)  # (α, γ, φ, E), (γ, ε, φ, E)
        tokens = xp.shape[0]
        y = xp.new_zeros(tokens, self._padded_out)
        flat_idx, flat_w = idx.reshape(-1), weights.reshape(-1)
        token_of = torch.arange(tokens, device=xp.device).repeat_interleave(self.top_k)
        order = torch.argsort(flat_idx, stable=True)
        counts = torch.bincount(flat_idx, minlength=self.experts).tolist()
        grad = torch.is_grad_enabled()
        start = 0
        for e, count in enumerate(counts):
            if count == 0:
                continue
            sel = order[start : start + count]
            start += count
            rows = token_of[sel]
            ws = [
                a_core[..., e].permute(self._expert_perm[0]),
                b_core[..., e].permute(self._expert_perm[1]),
            ]
            xe = xp.index_select(0, rows)  # (T, padded_in)
            scale = flat_w[sel].reshape(self._expert_gate_shape)  # broadcasts over h
            if grad:
                h = PlanFunction.apply(self._expert_first, xe, *ws)
                ye = PlanFunction.apply(self._expert_second, h * scale, *ws)
            else:
                h = run_program(self._expert_first, xe, ws)
                ye = run_program(self._expert_second, h * scale, ws)
            y.index_add_(0, rows, ye)
        return y

    def _grouped(
        self, xp: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor, ws: list[torch.Tensor]
    ) -> torch.Tensor:
        """Run the selected experts as two batched matmuls over (expert, slot): each
        expert's tokens are copied into its rows of an ``(E, C, d_in)`` buffer, C the most
        tokens any expert got (the empty slots are computed on zeros and dropped)."""
        n, e = self.realization.sizes, self.experts
        a_core, b_core = self._core(ws)  # (α, γ, φ, E), (γ, ε, φ, E)
        flat_idx = idx.reshape(-1)
        order = torch.argsort(flat_idx, stable=True)
        expert_of = flat_idx[order]
        counts = torch.bincount(flat_idx, minlength=e)
        cap = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        slot = expert_of * cap + torch.arange(order.numel(), device=xp.device) - starts[expert_of]
        rows = order // self.top_k  # the token of each sorted selection
        xg = xp.new_zeros(e * cap, xp.shape[1]).index_copy(0, slot, xp.index_select(0, rows))
        wg = weights.new_zeros(e * cap).index_copy(0, slot, weights.reshape(-1)[order])
        xg = xg.reshape(e, cap, n["α"], n["γ"])
        h = torch.einsum("ecag,agfe->ecgf", xg, a_core) * wg.reshape(e, cap, 1, 1)
        yg = torch.einsum("ecgf,gnfe->ecnf", h, b_core).reshape(e * cap, -1)
        y = xp.new_zeros(xp.shape[0], yg.shape[1])
        return y.index_add(0, rows, yg.index_select(0, slot))

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        parts = [f"d_in={self.d_in}", f"d_out={self.d_out}", f"experts={self.experts}"]
        defaults = {"top_k": 2, "bias": True, "mode": "round", "pad_tol": 0.15}
        parts += [f"{k}={v!r}" for k, v in self._options.items() if v != defaults[k]]
        if self.dispatch != "auto":
            parts.append(f"dispatch={self.dispatch!r}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


@runtime_checkable
class RoutedLayer(Protocol):
    """A layer with a top-k router: :class:`BTTMoE` and the LM proxy's standard MoE are.
    After a forward pass ``aux_loss`` holds its auxiliary loss and ``load`` the fraction of
    the selections each expert got (both None before the first)."""

    top_k: int
    aux_loss: torch.Tensor | None
    load: torch.Tensor | None


def routed_layers(model: nn.Module) -> dict[str, RoutedLayer]:
    """Every routed layer of ``model`` by module name (empty for a model without any)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, RoutedLayer)}


def aux_loss(model: nn.Module, weight: float = 0.01) -> torch.Tensor:
    """``weight ×`` the mean over ``model``'s routed layers of their auxiliary loss in the
    last forward pass, to add to the training loss (the paper's code averages over layers,
    weight 0.01); a zero tensor when it has none. Works on any model, e.g. one that
    :func:`~einspace.nn.replace_linear` gave BTT-MoE layers.

    Examples:
        >>> net = nn.Sequential(BTTMoE(64, 64, experts=4), nn.ReLU(), BTTMoE(64, 64, experts=4))
        >>> y = net(torch.randn(8, 64))
        >>> round(float(aux_loss(net).detach()), 5)  # zero gates: 0.01 · (1 + 0.1 · (log 4)²)
        0.01192
    """
    losses = [m.aux_loss for m in routed_layers(model).values() if m.aux_loss is not None]
    if not losses:
        first = next(model.parameters(), None)
        return torch.zeros((), device=None if first is None else first.device)
    return weight * torch.stack(losses).mean()


def routing_stats(model: nn.Module, weight: float = 0.01) -> dict[str, float]:
    """The health of ``model``'s routers in the last forward pass, for a run's log:
    ``aux_loss`` (as :func:`aux_loss`), ``load_entropy`` (the mean over layers of the load's
    normalized entropy, :func:`einspace.moe.load_entropy`; 1 = balanced),
    ``load_entropy_min``, ``load_max`` (the largest share of any expert in any layer) and
    ``collapsed`` (the fraction of layers whose load :func:`einspace.moe.collapsed`). Empty
    for a model without routed layers."""
    loads = [m.load.tolist() for m in routed_layers(model).values() if m.load is not None]
    if not loads:
        return {}
    entropies = [load_entropy(x) for x in loads]
    return {
        "aux_loss": float(aux_loss(model, weight).detach()),
        "load_entropy": sum(entropies) / len(entropies),
        "load_entropy_min": min(entropies),
        "load_max": max(max(x) for x in loads),
        "collapsed": sum(collapsed(x) for x in loads) / len(loads),
    }


def top_k_route(
    logits: torch.Tensor, top_k: int, z_loss_weight: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k routing of gate ``logits`` (tokens, E), the convention of docs/theory.md §5
    shared by :class:`BTTMoE` and the LM proxy's standard MoE.

    Returns:
        ``(idx, weights, aux_loss, load)``: the k experts of each token (tokens, k); their
        weights, the softmax over the k selected logits (tokens, k); the auxiliary loss
        ``E · ⟨P, f⟩ + z_loss_weight · mean(logsumexp(logits)²)`` (P: the router's softmax
        averaged over tokens, f: the fraction of the k·tokens selections each expert got,
        no gradient); and ``f`` itself, detached (E,), summing to 1.

    Examples:
        >>> idx, w, aux, load = top_k_route(torch.zeros(6, 4), 2)
        >>> w[0].tolist(), round(float(aux), 4), float(load.sum())
        ([0.5, 0.5], 1.1922, 1.0)
    """
    top, idx = logits.topk(top_k, dim=-1)  # (Z, k)
    weights = torch.softmax(top, dim=-1)
    probs = torch.softmax(logits, dim=-1).mean(0)  # (E,) sums to 1
    counts = torch.zeros_like(probs).scatter_add_(
        0, idx.reshape(-1), torch.ones_like(idx, dtype=probs.dtype).reshape(-1)
    )
    freq = (counts / max(1, idx.numel())).detach()  # (E,) sums to 1
    balance = logits.shape[-1] * (probs * freq).sum()
    z_loss = torch.logsumexp(logits, dim=-1).square().mean()
    return idx, weights, balance + z_loss_weight * z_loss, freq


GROUPED_FROM = 16
"""``"auto"`` runs only the selected experts from this many tokens per expert
(``tokens · k / E``) on: the break-even with computing all experts (docs/moe.md)."""

LOOP_FROM = 256
"""``"auto"`` switches from the grouped matmuls to the per-expert loop from this many tokens
per expert on: the loop has no padding to a common expert capacity (docs/moe.md)."""


def auto_dispatch(tokens: int, experts: int, top_k: int) -> Dispatch:
    """The ``"auto"`` dispatch rule, from ``benchmarks/moe_layers.py`` on CPU (docs/moe.md),
    by the average tokens per expert ``t = tokens · k / E``: all experts, masked
    (``"dense"``) when ``k = E`` or ``t <`` :data:`GROUPED_FROM`; the grouped matmuls
    (``"grouped"``) up to :data:`LOOP_FROM`; the per-expert loop (``"sparse"``) from there.

    Examples:
        >>> [auto_dispatch(t, 8, 2) for t in (32, 256, 4096)], auto_dispatch(4096, 4, 4)
        (['dense', 'grouped', 'sparse'], 'dense')
    """
    per_expert = tokens * top_k / experts
    if top_k >= experts or per_expert < GROUPED_FROM:
        return "dense"
    return "grouped" if per_expert < LOOP_FROM else "sparse"
