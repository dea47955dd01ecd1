"""``EinsumLinear``: a linear layer whose weight is an einsum structure (docs/theory.md §1–§4).

The layer compiles an :class:`~einspace.plan.ExecutionPlan` once, at construction, and
its forward pass runs that plan: one ``bmm`` (or ``mm``) per factor on views of the live
tensor, with the few copies the plan could not avoid. When those products are tiny (blocks
of ~10 at proxy widths) and the rows many, it contracts the factors into the dense matrix
instead and runs one GEMM (:func:`~einspace.nn.execute.prefers_dense`; same map, same
gradients). Under ``torch.autocast`` it computes in autocast's dtype. Each factor is stored
pre-permuted in the layout its step wants (``factors[i]`` has axes ``plan.steps[...].weight_axes``);
:meth:`EinsumLinear.core_factors` maps them back to the core's axis order (one axis per class,
in class order), so ``Realization.materialize(core_factors)`` is the layer's matrix.

``state_dict()`` holds ``factors.i`` in the core's axis order (``Realization.factor_shapes``),
and ``load_state_dict`` expects that order, so checkpoints do not depend on the plan.

Counts: :attr:`EinsumLinear.params` counts the factors only (``Realization.params``); the
bias adds ``d_out`` (:attr:`EinsumLinear.bias_params`) and a normalized layer's gain adds 1.
``sum(p.numel() for p in layer.parameters()) == layer.params + layer.bias_params +
layer.normalize``. :meth:`EinsumLinear.macs` is ``Realization.macs`` (per token).

Examples:
    >>> import torch
    >>> layer = EinsumLinear(1024, 1024, "btt:r=0.25")
    >>> layer
    EinsumLinear(d_in=1024, d_out=1024, structure='btt:r=0.25')
    >>> layer(torch.randn(8, 3, 1024)).shape
    torch.Size([8, 3, 1024])
    >>> layer.params, layer.macs(), sum(p.numel() for p in layer.parameters())
    (393216, 393216, 394240)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from einspace.errors import EinspaceError
from einspace.nn.execute import (
    PlanFunction,
    compile_program,
    compute_dtype,
    dense_weight,
    prefers_dense,
    run_program,
)
from einspace.nn.mup import init_factors, spectral_sigmas
from einspace.nn.widths import flatten_input, resize_last
from einspace.plan import ExecutionPlan
from einspace.realization import Realization
from einspace.structure import Structure

__all__ = ["EinsumLinear", "resolve_realization"]

StructureLike = Structure | Realization | str


def _export_core_order(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    """state_dict post-hook: factors leave in the core's axis order (one axis per class)."""
    axes: tuple[tuple[int, ...], ...] = module._stored_axes  # type: ignore[assignment]
    for i, ax in enumerate(axes):
        key = f"{prefix}factors.{i}"
        if key in state_dict:
            state_dict[key] = state_dict[key].permute(tuple(ax.index(p) for p in sorted(ax)))


def _import_core_order(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """load_state_dict pre-hook: factors arrive in core order; permute them to storage."""
    axes: tuple[tuple[int, ...], ...] = module._stored_axes  # type: ignore[assignment]
    for i, ax in enumerate(axes):
        key = f"{prefix}factors.{i}"
        t = state_dict.get(key)
        if isinstance(t, torch.Tensor) and t.dim() == len(ax):
            state_dict[key] = t.permute(tuple(sorted(ax).index(p) for p in ax)).contiguous()


def core_order_state(module: nn.Module) -> None:
    """Make ``module``'s state_dict hold its ``factors`` in the core's axis order, so that
    checkpoints do not depend on the storage layout an execution plan chose."""
    module.register_state_dict_post_hook(_export_core_order)
    module.register_load_state_dict_pre_hook(_import_core_order)


def resolve_realization(
    structure: StructureLike,
    d_in: int,
    d_out: int,
    mode: Literal["round", "exact"] = "round",
    pad_tol: float = 0.15,
) -> Realization:
    """A realization for ``d_in → d_out`` from a structure, a string or a realization.

    Examples:
        >>> resolve_realization("monarch", 64, 64).sizes
        {'α': 8, 'γ': 8, 'ε': 8, 'φ': 8}
    """
    if isinstance(structure, Realization):
        if (structure.d_in, structure.d_out) != (d_in, d_out):
            raise EinspaceError(
                f"the realization given is for d_in = {structure.d_in}, d_out = "
                f"{structure.d_out}, but the layer is {d_in} → {d_out}; pass the structure "
                f"({structure.structure}) instead to realize it at these widths"
            )
        return structure
    if isinstance(structure, str):
        structure = Structure.parse(structure)
    if not isinstance(structure, Structure):
        raise EinspaceError(
            f"structure = {structure!r}; expected a Structure, a Realization or a string "
            "such as 'btt:r=0.25'"
        )
    return structure.realize(d_in, d_out, mode=mode, pad_tol=pad_tol)


class EinsumLinear(nn.Module):
    """A linear layer ``y = x Wᵀ + b`` whose ``W`` is an einsum structure.

    Args:
        d_in: input width (the last dimension of the input).
        d_out: output width.
        structure: a :class:`~einspace.Structure`, a string for
            :meth:`~einspace.Structure.parse` (``"btt:r=0.25"``) or a
            :class:`~einspace.Realization` for exactly ``d_in → d_out``.
        bias: whether to add a learnable bias (initialized to zero).
        mode: how to pick class sizes, ``"round"`` (pad within ``pad_tol``) or ``"exact"``.
        pad_tol: the largest relative padding accepted in ``"round"`` mode.
        normalize: divide each factor by ``max(1, rms(F)/σ)`` at every forward pass, with a
            learnable scalar gain (docs/theory.md §4).
        zero_init: initialize the last applied factor to zero (ends of residual branches).
        device: where to create the parameters.
        dtype: parameter dtype.

    Inputs of shape ``(..., d_in)`` give outputs of shape ``(..., d_out)``. Inputs shorter than
    the realization's ``padded_in`` are zero-padded; longer ones are truncated. Outputs are
    truncated to ``d_out`` or zero-padded (see :class:`~einspace.Realization`).

    Examples:
        >>> import torch
        >>> layer = EinsumLinear(60, 70, "kronecker", bias=False, dtype=torch.float64)
        >>> layer.realization.padding
        {'input': 4, 'output': -6}
        >>> x = torch.randn(5, 60, dtype=torch.float64)
        >>> torch.allclose(layer(x), x @ layer.materialize().T)
        True
    """

    factors: nn.ParameterList
    bias: nn.Parameter | None
    gain: nn.Parameter | None

    def __init__(
        self,
        d_in: int,
        d_out: int,
        structure: StructureLike,
        bias: bool = True,
        mode: Literal["round", "exact"] = "round",
        pad_tol: float = 0.15,
        normalize: bool = False,
        zero_init: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        realization = resolve_realization(structure, d_in, d_out, mode, pad_tol)
        self.d_in, self.d_out = realization.d_in, realization.d_out
        self._structure_arg = structure
        self._options = {
            "bias": bias,
            "mode": mode,
            "pad_tol": pad_tol,
            "normalize": normalize,
            "zero_init": zero_init,
        }
        self.realization = realization
        self._label = self._short()  # names the layer in errors (built once, not per call)
        self.normalize = bool(normalize)
        self.zero_init = bool(zero_init)
        self.plan = ExecutionPlan.compile(realization)
        self._program = compile_program(self.plan)
        # plain ints and floats for forward (torch.compile traces them as constants)
        self._padded_in, self._padded_out = realization.padded_in, realization.padded_out
        self._sigmas = spectral_sigmas(realization)
        self._last = self.plan.order[-1]
        steps = {s.factor: s for s in self.plan.steps}
        shapes = self._program.weight_shapes
        # stored axis j of factor i is the class at position _stored_axes[i][j]
        self._stored_axes = tuple(steps[i].weight_axes for i in range(self.k))
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.factors = nn.ParameterList(nn.Parameter(torch.empty(s, **kw)) for s in shapes)
        self.bias = nn.Parameter(torch.empty(self.d_out, **kw)) if bias else None
        self.gain = nn.Parameter(torch.ones((), **kw)) if normalize else None
        core_order_state(self)
        self.reset_parameters()

    # ------------------------------------------------------------------ structure views
    @property
    def structure(self) -> Structure:
        """The point of the einsum space."""
        return self.realization.structure

    @property
    def k(self) -> int:
        """Number of factors."""
        return self.realization.k

    @property
    def mup_realization(self) -> Realization:
        """The realization whose fans set the μP init and learning rates."""
        return self.realization

    @property
    def sigmas(self) -> tuple[float, ...]:
        """Spectral init standard deviation of each factor (docs/theory.md §4)."""
        return self._sigmas

    @property
    def params(self) -> int:
        """Factor parameters, ``Realization.params`` (bias and gain not included)."""
        return self.realization.params

    @property
    def bias_params(self) -> int:
        """``d_out`` with a bias, else 0."""
        return self.d_out if self.bias is not None else 0

    def macs(self, order: Literal["sequential", "optimal"] = "sequential", batch: int = 1) -> float:
        """MACs per token (``Realization.macs``); the forward pass runs the sequential plan."""
        return self.realization.macs(order, batch)

    # ------------------------------------------------------------------ parameters
    def reset_parameters(self) -> None:
        """Spectral μP init of every factor, zero bias, unit gain, optional zero last factor."""
        init_factors(self.factors, self.sigmas)
        with torch.no_grad():
            if self.zero_init:
                self.factors[self._last].zero_()
            if self.bias is not None:
                self.bias.zero_()
            if self.gain is not None:
                self.gain.fill_(1.0)

    def _to_core(self, i: int, stored: torch.Tensor) -> torch.Tensor:
        axes = self._stored_axes[i]
        return stored.permute(tuple(axes.index(p) for p in sorted(axes)))

    def effective_factors(self) -> list[torch.Tensor]:
        """The stored factors as the forward pass uses them (normalized and gained)."""
        # a tenth of list(self.factors)'s cost (the list holds no None)
        ws: list[torch.Tensor] = list(self.factors._parameters.values())  # type: ignore[arg-type]
        if not self.normalize:
            return ws
        out = []
        for i, (w, s) in enumerate(zip(ws, self.sigmas, strict=True)):
            rms = w.square().mean().sqrt()
            scale = 1.0 / torch.clamp(rms / s, min=1.0)
            if i == self._last:
                assert self.gain is not None
                scale = scale * self.gain
            out.append(w * scale)
        return out

    def core_factors(self, effective: bool = False) -> list[torch.Tensor]:
        """Each factor with its axes in the core's order (one per class, class order).

        ``effective=True`` applies normalization and gain. The tensors are views of the
        parameters (differentiable); ``Realization.materialize`` accepts them as numpy.
        """
        ws = self.effective_factors() if effective else list(self.factors)
        return [self._to_core(i, w) for i, w in enumerate(ws)]

    def load_core_factors(self, weights: Sequence[Any]) -> None:
        """Set the factors from core-order arrays (shapes ``Realization.factor_shapes``)."""
        if len(weights) != self.k:
            raise EinspaceError(f"{len(weights)} factors given; the structure has {self.k}")
        with torch.no_grad():
            for i, w in enumerate(weights):
                t = torch.as_tensor(np.asarray(w) if not torch.is_tensor(w) else w)
                want = self.realization.factor_shapes[i]
                if tuple(t.shape) != want:
                    raise EinspaceError(
                        f"factor {self.realization.factor_names[i]} has shape "
                        f"{tuple(t.shape)}; expected {want}"
                    )
                self._to_core(i, self.factors[i]).copy_(t)

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``(d_out, d_in)`` matrix, for code that reads ``layer.weight`` (e.g. the
        eval fast path of ``nn.TransformerEncoderLayer``). It is :meth:`materialize`:
        differentiable, rebuilt at each access, and never used by :meth:`forward`."""
        return self.materialize()

    def materialize(self) -> torch.Tensor:
        """The dense ``(d_out, d_in)`` weight, padding included (differentiable).

        Evaluated with ``torch.einsum`` on the core's equation, independently of the plan.
        """
        r = self.realization
        ref = self.factors[0]
        eye = torch.eye(r.padded_in, dtype=ref.dtype, device=ref.device)
        eye = eye.reshape(r.padded_in, *(r.class_sizes[p] for p in r.input_positions))
        full = torch.einsum(r.einsum, eye, *self.core_factors(effective=True))
        full = full.reshape(r.padded_in, r.padded_out).T  # (P_out, P_in)
        rows, cols = min(self.d_out, r.padded_out), min(self.d_in, r.padded_in)
        return F.pad(full[:rows, :cols], (0, self.d_in - cols, 0, self.d_out - rows))

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., d_in) → (..., d_out)``.

        Runs the plan, or, when the plan's products are small and the rows many
        (:func:`~einspace.nn.execute.prefers_dense`), one GEMM with the matrix contracted
        from the factors at this call (padding folded in, so no activation is copied).
        Under ``torch.autocast`` it computes in autocast's dtype, as ``nn.Linear`` does
        (input, factors and bias cast; gradients flow back to the fp32 parameters); an
        input whose dtype differs from the parameters' otherwise raises EinspaceError.
        """
        lead = x.shape[:-1]
        x2 = flatten_input(x, self.d_in, self._label)  # (Z, d_in)
        ws = self.effective_factors()
        bias: torch.Tensor | None = self.bias
        dtype = compute_dtype(x2, ws[0], self._label)
        if dtype is None:
            return self._forward(x2, ws, bias).reshape(*lead, self.d_out)
        with torch.autocast(x.device.type, enabled=False):  # autocast: all in its dtype
            ws = [w.to(dtype) for w in ws]
            bias = None if bias is None else bias.to(dtype)
            return self._forward(x2.to(dtype), ws, bias).reshape(*lead, self.d_out)

    def _forward(
        self, x2: torch.Tensor, ws: Sequence[torch.Tensor], bias: torch.Tensor | None
    ) -> torch.Tensor:
        if prefers_dense(self._program, x2.shape[0]):
            return F.linear(x2, self._dense_matrix(ws), bias)
        x2 = resize_last(x2, self._padded_in)  # (Z, P_in)
        if torch.compiler.is_compiling():
            y = run_program(self._program, x2, ws)  # plain ops for the tracer
        elif torch.is_grad_enabled():
            y = PlanFunction.apply(self._program, x2, *ws)  # (Z, padded_out)
        else:
            y = run_program(self._program, x2, ws, chunked=True)
        y = resize_last(y, self.d_out)
        return y if bias is None else y + bias

    def _dense_matrix(self, ws: Sequence[torch.Tensor]) -> torch.Tensor:
        """The ``(d_out, d_in)`` matrix from the stored factors ``ws`` (padding folded in)."""
        w = dense_weight(self._program, ws)  # (P_out, P_in)
        rows, cols = min(self.d_out, self._padded_out), min(self.d_in, self._padded_in)
        if (rows, cols) != tuple(w.shape):
            w = w[:rows, :cols]
        if (rows, cols) != (self.d_out, self.d_in):
            w = F.pad(w, (0, self.d_in - cols, 0, self.d_out - rows))
        return w

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_dense(
        cls,
        weight: torch.Tensor,
        structure: StructureLike,
        bias: torch.Tensor | None = None,
        *,
        method: Literal["auto", "svd", "als"] = "auto",
        iterations: int = 200,
        seed: int = 0,
        **kwargs: Any,
    ) -> tuple[EinsumLinear, float]:
        """Project a dense ``(d_out, d_in)`` weight onto ``structure`` (least squares).

        Minimizes ‖W − W_struct‖_F; see :mod:`einspace.nn.projection` for the methods. The
        layer has a bias iff ``bias`` is given (it is copied). Other keyword arguments go to
        the constructor; dtype and device default to the weight's.

        Returns:
            the layer and the relative error ‖W − W_struct‖_F / ‖W‖_F.

        Examples:
            >>> import torch
            >>> u = torch.randn(64, 8, dtype=torch.float64)
            >>> layer, err = EinsumLinear.from_dense(u @ u.T, "low_rank:r=0.5")
            >>> err < 1e-10
            True
        """
        from einspace.nn.projection import project

        if weight.dim() != 2:
            raise EinspaceError(f"weight has shape {tuple(weight.shape)}; expected (d_out, d_in)")
        d_out, d_in = weight.shape
        kwargs.setdefault("dtype", weight.dtype)
        kwargs.setdefault("device", weight.device)
        layer = cls(d_in, d_out, structure, bias=bias is not None, **kwargs)
        target = weight.detach().to("cpu", torch.float64).numpy()
        factors = project(
            target, layer.realization, method=method, iterations=iterations, seed=seed
        )
        layer.load_core_factors(factors)
        if bias is not None:
            assert layer.bias is not None
            with torch.no_grad():
                layer.bias.copy_(bias)
        with torch.no_grad():
            approx = layer.materialize().to(torch.float64).cpu()
            w64 = weight.detach().to("cpu", torch.float64)
            norm = torch.linalg.norm(w64)
            err = torch.linalg.norm(w64 - approx) / norm if norm > 0 else torch.linalg.norm(approx)
        return layer, float(err)

    # ------------------------------------------------------------------ repr / pickle
    def _short(self) -> str:
        return f"EinsumLinear({self.d_in} → {self.d_out}, {self.structure})"

    def _structure_repr(self) -> str:
        s = self._structure_arg
        if isinstance(s, Realization):
            return f"realize_sizes({str(s.family)!r}, {s.class_sizes!r}, {s.d_in}, {s.d_out})"
        return repr(str(s))

    def extra_repr(self) -> str:
        parts = [f"d_in={self.d_in}", f"d_out={self.d_out}", f"structure={self._structure_repr()}"]
        defaults = {"bias": True, "mode": "round", "pad_tol": 0.15, "normalize": False}
        defaults["zero_init"] = False
        for key, value in self._options.items():
            if value != defaults[key]:
                parts.append(f"{key}={value!r}")
        p = self.factors[0]
        if p.dtype != torch.get_default_dtype():
            parts.append(f"dtype={p.dtype}")
        if p.device.type != "cpu":
            parts.append(f"device={str(p.device)!r}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
