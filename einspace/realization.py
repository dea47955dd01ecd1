"""Realizations: a structure at integer class sizes for concrete d_in, d_out (docs/theory.md §1–§3).

Layout conventions (shared with :mod:`einspace.nn`):

* ``x`` (flat length d_in) is zero-padded or truncated to ``padded_in`` = Π input sizes and
  reshaped row-major to the input classes in class order; ``y`` likewise over the output
  classes, then truncated or zero-padded to d_out. Block-diagonal classes are in both.
* Factor ``F_i`` has one axis per class that contains it, in class order.
* :attr:`Realization.einsum` names the batch index ``z`` and the classes ``a, b, c, …`` in
  class order; operands are ``x, A, B, …``.

:attr:`rank_bound` (the min-cut, capped at min(d_in, d_out)) is an upper bound on the rank.
:attr:`Realization.rank` is the rank of the matrix the layer computes, padding and truncation
included: proven, measured by SVD, or (``rank_is_bound``) only the bound; see
:mod:`einspace.rank`.

Examples:
    >>> from einspace import Structure
    >>> r = Structure.named("btt", r=0.25).realize(1024, 1024)
    >>> r.sizes
    {'α': 32, 'γ': 32, 'ε': 32, 'φ': 32, 'ρ': 6}
    >>> r.einsum
    'zab,abde,bcde->zcd'
    >>> r.params, r.macs(), r.rank_bound
    (393216, 393216, 1024)
    >>> r.rank, r.rank_is_bound, r.rank_method, r.full_rank
    (1024, False, 'proof', True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from einspace import hypergraph
from einspace.contraction import OptimalPath, best_sequential, optimal_contraction
from einspace.errors import EinspaceError
from einspace.family import Family
from einspace.index_classes import FACTOR_LETTERS, X, Y, factor_bit
from einspace.rank import RankMethod, TrueRank, certified_lower, rank_method
from einspace.sizing import SizingMode, exact_sizes, round_sizes
from einspace.validation import check_int

if TYPE_CHECKING:
    import numpy.typing as npt

    from einspace.structure import Structure

__all__ = ["Realization", "check_width", "realize"]

LETTERS = "abcdefghijklmnopqrstuvwxy"
BATCH = "z"


def check_width(value: object, name: str) -> int:
    """Validate a layer width: an integer ≥ 1 (:func:`einspace.validation.check_int`)."""
    return check_int(value, name, example=1024, what="a width")


@dataclass(frozen=True)
class Realization:
    """A structure at integer class sizes for a layer d_in → d_out.

    Attributes:
        structure: the point of the space (its family fixes the classes).
        d_in: input width.
        d_out: output width.
        class_sizes: integer size of each class, aligned with ``structure.family.classes``.
        mode: how the sizes were chosen (``"round"``, ``"exact"`` or ``"given"``).
    """

    structure: Structure
    d_in: int
    d_out: int
    class_sizes: tuple[int, ...]
    mode: Literal["round", "exact", "given"] = "given"

    # ------------------------------------------------------------------ layout
    @property
    def family(self) -> Family:
        """The family (classes) of the structure."""
        return self.structure.family

    @property
    def k(self) -> int:
        """Number of factors."""
        return self.family.k

    @property
    def sizes(self) -> dict[str, int]:
        """Class name → size, in class order (Greek names for k = 2)."""
        return dict(zip(self.family.names, self.class_sizes, strict=True))

    @cached_property
    def input_positions(self) -> tuple[int, ...]:
        """Positions of the classes holding x: the axes of the reshaped input."""
        return tuple(p for p, m in enumerate(self.family.classes) if m & X)

    @cached_property
    def output_positions(self) -> tuple[int, ...]:
        """Positions of the classes holding y: the axes of the reshaped output."""
        return tuple(p for p, m in enumerate(self.family.classes) if m & Y)

    @cached_property
    def factor_positions(self) -> tuple[tuple[int, ...], ...]:
        """For each factor, the positions of its classes (its axes), in class order."""
        return tuple(
            tuple(p for p, m in enumerate(self.family.classes) if m & factor_bit(i))
            for i in range(self.k)
        )

    @property
    def padded_in(self) -> int:
        """Π of the input class sizes: the width x is padded or truncated to."""
        return math.prod(self.class_sizes[p] for p in self.input_positions)

    @property
    def padded_out(self) -> int:
        """Π of the output class sizes: the width the einsum produces."""
        return math.prod(self.class_sizes[p] for p in self.output_positions)

    @property
    def padding(self) -> dict[str, int]:
        """Padding applied: ``input`` > 0 zero-pads x, < 0 truncates it; ``output`` > 0
        drops computed outputs, < 0 appends zero outputs."""
        return {"input": self.padded_in - self.d_in, "output": self.padded_out - self.d_out}

    @property
    def is_exact(self) -> bool:
        """Whether no padding or truncation is needed."""
        return self.padded_in == self.d_in and self.padded_out == self.d_out

    @property
    def factor_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shape of each weight factor, axes in class order."""
        return tuple(tuple(self.class_sizes[p] for p in ps) for ps in self.factor_positions)

    @property
    def factor_names(self) -> str:
        """``"AB"`` for k = 2."""
        return FACTOR_LETTERS[: self.k]

    @property
    def einsum(self) -> str:
        """The einsum equation ``x, A, B, … -> y`` with batch index ``z``."""
        letter = LETTERS
        x = BATCH + "".join(letter[p] for p in self.input_positions)
        y = BATCH + "".join(letter[p] for p in self.output_positions)
        fs = ["".join(letter[p] for p in ps) for ps in self.factor_positions]
        return ",".join([x, *fs]) + "->" + y

    # ------------------------------------------------------------------ counts
    @property
    def params(self) -> int:
        """Σ_i Π_{c ∋ F_i} n_c."""
        return sum(math.prod(s) for s in self.factor_shapes)

    @cached_property
    def _sequential(self) -> tuple[tuple[int, ...], int]:
        return best_sequential(self.family.classes, self.k, self.class_sizes)

    @property
    def order(self) -> tuple[int, ...]:
        """The factor order with the fewest sequential MACs."""
        return self._sequential[0]

    def optimal_path(self, batch: int = 1) -> OptimalPath:
        """The cheapest pairwise contraction for ``batch`` inputs (opt_einsum path format)."""
        batch = check_width(batch, "batch")
        return optimal_contraction(self.family.classes, self.k, self.class_sizes, batch)

    def macs(self, order: Literal["sequential", "optimal"] = "sequential", batch: int = 1) -> float:
        """Multiply-accumulates per input vector (docs/theory.md §2).

        ``sequential`` is an integer independent of ``batch``. ``optimal`` is the total of the
        cheapest path for ``batch`` inputs divided by ``batch``; weight-only steps are paid
        once per batch, so it may be fractional (an ``int`` when it divides exactly).
        """
        if order == "sequential":
            check_width(batch, "batch")
            return self._sequential[1]
        if order == "optimal":
            total = self.optimal_path(batch).total
            return total // batch if total % batch == 0 else total / batch
        raise EinspaceError(f"order = {order!r}; expected 'sequential' or 'optimal'")

    def flops(
        self, order: Literal["sequential", "optimal"] = "sequential", batch: int = 1
    ) -> float:
        """FLOPs per input vector: 2 × :meth:`macs`."""
        return 2 * self.macs(order, batch)

    @cached_property
    def rank_bound(self) -> int:
        """Hypergraph min-cut between x and y, as the product of the cut classes' sizes, capped
        at min(d_in, d_out).

        For k ≤ 12 every one of the 2**k bipartitions is tried in integers (exact); beyond, a
        networkx max-flow with capacities log n_c gives the cut value, rounded.
        """
        cls = self.family.classes
        if self.k <= 12:
            cut = min(
                math.prod(self.class_sizes[p] for p in c) for c in hypergraph.cuts(cls, self.k)
            )
            return min(cut, self.d_in, self.d_out)
        import networkx as nx

        g = nx.DiGraph()
        tensors = ["x", "y", *self.factor_names]
        bits = [X, Y] + [factor_bit(i) for i in range(self.k)]
        for p, (m, n) in enumerate(zip(cls, self.class_sizes, strict=True)):
            g.add_edge(("in", p), ("out", p), capacity=math.log(n))
            for t, b in zip(tensors, bits, strict=True):
                if m & b:
                    g.add_edge(t, ("in", p))
                    g.add_edge(("out", p), t)
        # the value, not the returned partition: with float capacities the residual graph
        # can leave a partition whose own capacity is larger than the flow
        value = nx.maximum_flow_value(g, "x", "y")
        return min(round(math.exp(value)), self.d_in, self.d_out)

    @cached_property
    def true_rank(self) -> TrueRank:
        """The rank of the computed (d_out, d_in) matrix and how it is known: proven, measured
        or the bound, by the one rule of :func:`einspace.rank.rank_method`."""
        upper = self.rank_bound
        lower = int(
            certified_lower(self.family.classes, [self.class_sizes], self.d_in, self.d_out)[0]
        )
        if lower > upper:  # pragma: no cover - a specialization cannot beat the min-cut
            raise AssertionError(f"certified rank {lower} above the min-cut {upper} for {self}")
        method = cast(RankMethod, str(rank_method(lower, upper, self.k, self.d_in, self.d_out)))
        rank = self.numeric_rank(seed=0) if method == "svd" else upper
        return TrueRank(rank, method == "bound", method, lower, upper)

    @property
    def rank(self) -> int:
        """Rank of the (d_out, d_in) matrix the layer computes, padding and truncation
        included; only the upper bound :attr:`rank_bound` when :attr:`rank_is_bound`."""
        return self.true_rank.rank

    @property
    def rank_is_bound(self) -> bool:
        """True when :attr:`rank` is only the bound (neither proven nor measured)."""
        return self.true_rank.is_bound

    @property
    def rank_method(self) -> str:
        """How :attr:`rank` is known: ``"proof"``, ``"svd"`` or ``"bound"``."""
        return self.true_rank.method

    @property
    def full_rank(self) -> bool:
        """Whether the rank is min(d_in, d_out), claimed only from a proven or measured rank."""
        return not self.rank_is_bound and self.rank == min(self.d_in, self.d_out)

    def numeric_rank(self, seed: int = 0) -> int:
        """Rank of :meth:`materialize` with seeded random factors (SVD, numpy's tolerance)."""
        return int(np.linalg.matrix_rank(self.materialize(seed=seed)))

    def random_weights(self, seed: int = 0) -> list[npt.NDArray[np.float64]]:
        """Seeded standard-normal factors of the right shapes."""
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(s) for s in self.factor_shapes]

    def materialize(
        self, weights: Sequence[npt.ArrayLike] | None = None, seed: int = 0
    ) -> npt.NDArray[np.float64]:
        """The dense (d_out, d_in) matrix of the layer, padding included.

        Evaluates :attr:`einsum` on the identity. ``weights`` default to
        :meth:`random_weights`.
        """
        ws = self.random_weights(seed) if weights is None else [np.asarray(w) for w in weights]
        for i, (w, shape) in enumerate(zip(ws, self.factor_shapes, strict=True)):
            if w.shape != shape:
                raise EinspaceError(
                    f"factor {self.factor_names[i]} has shape {w.shape}; expected {shape}"
                )
        if len(ws) != self.k:
            raise EinspaceError(f"{len(ws)} weights given; expected {self.k}")
        eye = np.eye(self.padded_in).reshape(
            self.padded_in, *(self.class_sizes[p] for p in self.input_positions)
        )
        out = np.einsum(self.einsum, eye, *ws, optimize=True)
        full = out.reshape(self.padded_in, self.padded_out).T  # (P_out, P_in)
        dense = np.zeros((self.d_out, self.d_in), dtype=full.dtype)
        rows, cols = min(self.d_out, self.padded_out), min(self.d_in, self.padded_in)
        dense[:rows, :cols] = full[:rows, :cols]
        return dense

    # ------------------------------------------------------------------ exponents
    @property
    def _log_d(self) -> float:
        return math.log(math.sqrt(self.d_in * self.d_out))

    @property
    def nu_eff(self) -> float:
        """log(MACs)/log(√(d_in·d_out)) − 1."""
        return math.log(self.macs()) / self._log_d - 1

    @property
    def omega_eff(self) -> float:
        """log(MACs/params)/log(√(d_in·d_out))."""
        return math.log(self.macs() / self.params) / self._log_d

    @property
    def psi_eff(self) -> float:
        """log(rank)/log(min(d_in, d_out)) (1 when min(d_in, d_out) = 1), from :attr:`rank`
        (so an upper bound when :attr:`rank_is_bound`)."""
        m = min(self.d_in, self.d_out)
        return 1.0 if m == 1 else math.log(self.rank) / math.log(m)

    @property
    def degenerate(self) -> bool:
        """docs/theory.md §3 degeneracy at these sizes: n_ρ > max(min(n_α, n_ε), min(n_β, n_δ)).
        False for k ≠ 2."""
        if self.k != 2:
            return False
        n = {name: s for name, s in self.sizes.items()}
        g = {c: n.get(c, 1) for c in ("α", "β", "δ", "ε", "ρ")}
        return g["ρ"] > max(min(g["α"], g["ε"]), min(g["β"], g["δ"]))

    # ------------------------------------------------------------------ μP fans
    @cached_property
    def fans(self) -> tuple[tuple[int, int], ...]:
        """(fan_in, fan_out) of each factor in the best sequential order (docs/theory.md §4).

        fan-in: product of the factor's classes contracted at its step; fan-out: product of
        the classes it adds to the live set.
        """
        out: list[tuple[int, int]] = [(1, 1)] * self.k
        for step in hypergraph.sequential_steps(self.family.classes, self.k, self.order):
            fin = math.prod(self.class_sizes[p] for p in step.contracted)
            fout = math.prod(self.class_sizes[p] for p in step.added)
            out[step.factor] = (fin, fout)
        return tuple(out)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, object]:
        """Every metric of this realization, for tables and the CLI."""
        return {
            "structure": str(self.structure),
            "family": str(self.family),
            "name": self.family.name,
            "k": self.k,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "mode": self.mode,
            "sizes": self.sizes,
            "factor_shapes": self.factor_shapes,
            "einsum": self.einsum,
            "padding": self.padding,
            "params": self.params,
            "macs_sequential": self.macs("sequential"),
            "macs_optimal": self.macs("optimal"),
            "flops": self.flops(),
            "rank": self.rank,
            "rank_is_bound": self.rank_is_bound,
            "rank_method": self.rank_method,
            "rank_bound": self.rank_bound,
            "full_rank": self.full_rank,
            "nu_eff": self.nu_eff,
            "omega_eff": self.omega_eff,
            "psi_eff": self.psi_eff,
            "degenerate": self.degenerate,
        }


def realize(
    structure: Structure, d_in: int, d_out: int, mode: SizingMode, pad_tol: float
) -> Realization:
    """Implementation of :meth:`Structure.realize`."""
    d_in, d_out = check_width(d_in, "d_in"), check_width(d_out, "d_out")
    if isinstance(pad_tol, bool) or not isinstance(pad_tol, int | float) or not (0 <= pad_tol < 1):
        raise EinspaceError(f"pad_tol = {pad_tol!r} must be a number in [0, 1), e.g. 0.15")
    if mode == "exact":
        return Realization(structure, d_in, d_out, exact_sizes(structure, d_in, d_out), "exact")
    if mode != "round":
        raise EinspaceError(f"mode = {mode!r}; expected 'round' or 'exact'")
    r = Realization(structure, d_in, d_out, round_sizes(structure, d_in, d_out), "round")
    for side, got, want in (("input", r.padded_in, d_in), ("output", r.padded_out, d_out)):
        rel = abs(got - want) / want
        if rel > pad_tol:
            product = " × ".join(
                str(r.class_sizes[p])
                for p in (r.input_positions if side == "input" else r.output_positions)
            )
            raise EinspaceError(
                f"{structure} rounds its {side} classes to {product} = {got} for "
                f"d_{'in' if side == 'input' else 'out'} = {want}: {rel:.1%} "
                f"{'padding' if got > want else 'truncation'}, above pad_tol = {pad_tol:g}. "
                f"Use width {got}, mode='exact', or pad_tol ≥ {rel:.3f}"
            )
    return r
