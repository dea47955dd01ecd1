"""``BTTMoE``: a BTT whose rank index ρ (size E) is split into E experts (docs/theory.md §5).

The layer is the BTT ``y[ε, φ] = Σ_{α,γ,ρ} B[γ, ε, φ, ρ] · g[ρ] · A[α, γ, φ, ρ] · x[α, γ]`` with a
per-token gate vector ``g``: a zero-initialized linear gate ``d_in → E`` gives logits, the
top-k experts per token are kept and their logits softmaxed, and the other entries of ``g``
are zero. Expert ``e`` is the rank-1 BTT (a Monarch matrix) ``ρ = e``.

* Sizes: α, γ, ε, φ are Monarch's (√d each, padded like :class:`~einspace.nn.EinsumLinear`),
  ρ = E.
* Init: each expert as a rank-1 BTT, i.e. the spectral σ of the Monarch realization's fans,
  which also set the μP learning rates (:func:`~einspace.nn.param_groups`).
* Counts: :attr:`BTTMoE.params` counts the two factors (the gate adds ``gate_params``);
  :meth:`BTTMoE.macs` is the BTT's sequential MACs × k / E (the gate's d_in·E not included).
* Load balancing: after each forward pass :attr:`BTTMoE.aux_loss` holds
  ``E · ⟨P, f⟩ + z_loss_weight · mean(logsumexp(logits)²)``, where ``P`` is the router's
  softmax probability averaged over tokens and ``f`` the fraction of the k·tokens selections
  each expert received (both sum to 1; ``E · ⟨P, f⟩`` is 1 when perfectly balanced). Add it
  to the training loss with a small coefficient.
* Compute: ``dispatch="dense"`` runs the full BTT and zeroes the unselected rank slices (the
  plan of :class:`EinsumLinear` with the gate applied between the two factors);
  ``"sparse"`` gathers each expert's tokens and runs each expert as a Monarch plan on them
  (k/E of the MACs, plus a gather and a scatter-add). ``"auto"`` picks sparse when
  top_k < E and experts get at least 16 tokens on average (measured on CPU: sparse wins from
  there on, by 2–8× at 4096 tokens), and dense under ``torch.compile`` (no data-dependent
  shapes).

Examples:
    >>> import torch
    >>> moe = BTTMoE(256, 256, experts=8, top_k=2)
    >>> moe(torch.randn(4, 10, 256)).shape
    torch.Size([4, 10, 256])
    >>> float(moe.aux_loss.detach()) > 0, moe.macs() == moe.btt_macs * 2 / 8
    (True, True)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from einspace.errors import EinspaceError
from einspace.nn.execute import PlanFunction, compile_program, compute_dtype, run_program
from einspace.nn.linear import core_order_state
from einspace.nn.mup import init_factors, spectral_sigmas
from einspace.nn.widths import flatten_input, resize_last
from einspace.plan import ExecutionPlan, Z
from einspace.realization import Realization
from einspace.structure import Structure, realize_sizes

__all__ = ["BTTMoE"]

_BTT = "xA,xAB,By,ABy,AB"  # α γ ε φ ρ


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
        dispatch: ``"auto"``, ``"dense"`` or ``"sparse"`` (see the module docs).
        device: where to create the parameters.
        dtype: parameter dtype.
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
        dispatch: Literal["auto", "dense", "sparse"] = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("experts", experts), ("top_k", top_k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise EinspaceError(f"{name} = {v!r} must be a positive integer")
        if top_k > experts:
            raise EinspaceError(
                f"top_k = {top_k} exceeds experts = {experts}; a token can use at most "
                f"{experts} experts (use top_k ≤ {experts})"
            )
        if dispatch not in ("auto", "dense", "sparse"):
            raise EinspaceError(f"dispatch = {dispatch!r}; expected 'auto', 'dense' or 'sparse'")
        monarch = Structure.named("monarch").realize(d_in, d_out, mode=mode, pad_tol=pad_tol)
        n = monarch.sizes
        self.d_in, self.d_out, self.experts, self.top_k = d_in, d_out, experts, top_k
        self.z_loss_weight = float(z_loss_weight)
        self.dispatch = dispatch
        self._options = {"top_k": top_k, "bias": bias, "mode": mode, "pad_tol": pad_tol}
        self.monarch = monarch
        self.realization = realize_sizes(
            _BTT, {"α": n["α"], "γ": n["γ"], "ε": n["ε"], "φ": n["φ"], "ρ": experts}, d_in, d_out
        )
        self.plan = ExecutionPlan.compile(self.realization)
        self._padded_in = self.realization.padded_in
        self._padded_out = self.realization.padded_out
        self._sizes = dict(self.realization.sizes)
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
        self.gate = nn.Linear(d_in, experts, **kw)
        self.bias = nn.Parameter(torch.empty(d_out, **kw)) if bias else None
        self.aux_loss: torch.Tensor | None = None
        core_order_state(self)  # state_dict factors in the core's axis order
        self.reset_parameters()

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
        """Parameters of the two factors (gate and bias not included)."""
        return self.realization.params

    @property
    def gate_params(self) -> int:
        """Parameters of the gate (weight and bias)."""
        return sum(p.numel() for p in self.gate.parameters())

    @property
    def btt_macs(self) -> int:
        """Sequential MACs per token of the whole BTT (all experts)."""
        return int(self.realization.macs())

    def macs(self, batch: int = 1) -> float:
        """MACs per token counted for the MoE: the BTT's × top_k / E (docs/theory.md §5)."""
        return self.realization.macs("sequential", batch) * self.top_k / self.experts

    def reset_parameters(self) -> None:
        """Spectral init (rank-1 fans), zero gate, zero bias."""
        init_factors(self.factors, self.sigmas)
        with torch.no_grad():
            self.gate.weight.zero_()
            self.gate.bias.zero_()
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
        logits = self.gate(x2)  # (Z, E)
        top, idx = logits.topk(self.top_k, dim=-1)  # (Z, k)
        weights = torch.softmax(top, dim=-1)
        probs = torch.softmax(logits, dim=-1).mean(0)  # (E,) sums to 1
        counts = torch.zeros_like(probs).scatter_add_(
            0, idx.reshape(-1), torch.ones_like(idx, dtype=probs.dtype).reshape(-1)
        )
        freq = counts / max(1, idx.numel())  # (E,) sums to 1
        balance = self.experts * (probs * freq.detach()).sum()
        z_loss = torch.logsumexp(logits, dim=-1).square().mean()
        return idx, weights, balance + self.z_loss_weight * z_loss

    def _use_sparse(self, tokens: int) -> bool:
        if self.dispatch != "auto":
            return self.dispatch == "sparse"
        if torch.compiler.is_compiling():
            return False
        return self.top_k < self.experts and tokens * self.top_k >= 16 * self.experts

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
        if self._use_sparse(x2.shape[0]):
            y = self._sparse(xp, idx, weights, ws)
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
