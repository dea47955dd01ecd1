"""Projecting a dense weight onto a structure: min ‖W − W_struct‖_F over the factors.

Numpy only (float64). The target is first put on the realization's grid: ``W`` is zero-padded
or truncated to ``(padded_out, padded_in)``, reshaped to the output and input classes, and
restricted to the diagonal of every block-diagonal class (entries off it are not reachable by
any factor values and only add a constant to the error). Entries that padding creates are
*unobserved*: their values are dropped by the layer, so the methods treat them as missing and
fill them with the current model's values (hard imputation, which decreases the masked
objective monotonically).

Methods:

* ``"svd"`` (k ≤ 2) — a closed form. For two factors, fix the block classes shared by A and
  B and visible to x or y (γ, φ, block-diagonal ones). The block of the target is then
  ``Σ_ρ A[(α, δ, …), ρ] · B[(β, ε, …), ρ]``: rows indexed by A's own visible classes, columns
  by B's, rank n_ρ (1 without a rank class). The best such block is its truncated SVD
  (Eckart–Young), block by block. This is Van Loan–Pitsianis for Kronecker, the truncated SVD
  for low rank, and the per-block SVD for Monarch and BTT; it is the global optimum when there
  is no padding. One factor (dense, block-diagonal) is the target itself.
* ``"als"`` (any k) — alternating least squares. Given the other factors, the model is
  linear in factor i, and the normal equations split into independent blocks, one per value
  of the factor's visible classes, each of size n_R × n_R where R are its rank classes
  (Gram matrices from one einsum of the other factors with a copy of themselves). Each block
  is solved exactly with a pseudo-inverse. Sweeps stop when the relative error changes by
  less than ``tol``. ALS finds a local optimum from a seeded random start.

``"auto"`` uses ``"svd"`` for k ≤ 2 and ``"als"`` otherwise.

Examples:
    >>> import numpy as np
    >>> from einspace import Structure
    >>> r = Structure.named("kronecker").realize(16, 16)
    >>> w = r.materialize(seed=1)
    >>> fs = project(w, r)
    >>> float(np.linalg.norm(r.materialize(fs) - w) / np.linalg.norm(w)) < 1e-12
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import opt_einsum

from einspace.errors import EinspaceError
from einspace.index_classes import X, Y, factor_bit

if TYPE_CHECKING:
    from einspace.realization import Realization

__all__ = ["project", "relative_error"]

Array = npt.NDArray[np.float64]


def _sym(i: int) -> str:
    return str(opt_einsum.get_symbol(i))


@dataclass(frozen=True)
class _Grid:
    """The target on the realization's visible classes (each class once, class order)."""

    visible: tuple[int, ...]  # class positions touching x or y
    target: Array  # shape: sizes of ``visible``
    mask: Array  # 1 where observed


def _grid(weight: Array, r: Realization) -> _Grid:
    classes, sizes = r.family.classes, r.class_sizes
    full = np.zeros((r.padded_out, r.padded_in))
    mask = np.zeros_like(full)
    rows, cols = min(r.d_out, r.padded_out), min(r.d_in, r.padded_in)
    full[:rows, :cols] = weight[:rows, :cols]
    mask[:rows, :cols] = 1.0
    shape = [sizes[p] for p in r.output_positions] + [sizes[p] for p in r.input_positions]
    subs = "".join(_sym(p) for p in r.output_positions + r.input_positions)
    visible = tuple(p for p, m in enumerate(classes) if m & (X | Y))
    out = "".join(_sym(p) for p in visible)
    eq = f"{subs}->{out}"
    target = np.einsum(eq, full.reshape(shape)).copy()
    return _Grid(visible, target, np.einsum(eq, mask.reshape(shape)).copy())


def _model(r: Realization, factors: Sequence[Array], visible: tuple[int, ...]) -> Array:
    fsubs = ["".join(_sym(p) for p in ps) for ps in r.factor_positions]
    out = "".join(_sym(p) for p in visible)
    return np.asarray(opt_einsum.contract(",".join(fsubs) + "->" + out, *factors))


def relative_error(weight: Array, r: Realization, factors: Sequence[Array]) -> float:
    """‖W − Realization.materialize(factors)‖_F / ‖W‖_F."""
    norm = float(np.linalg.norm(weight))
    diff = float(np.linalg.norm(weight - r.materialize(factors)))
    return diff / norm if norm > 0 else diff


def project(
    weight: npt.ArrayLike,
    realization: Realization,
    method: Literal["auto", "svd", "als"] = "auto",
    iterations: int = 200,
    seed: int = 0,
    tol: float = 1e-12,
    restarts: int = 3,
) -> list[Array]:
    """The factors (core order) of the structured matrix closest to ``weight`` (d_out, d_in).

    Args:
        weight: the dense matrix.
        realization: the structure at ``weight``'s shape.
        method: ``"auto"``, ``"svd"`` (k ≤ 2, closed form) or ``"als"``.
        iterations: ALS sweeps, or imputation rounds of ``"svd"`` when padding hides entries.
        seed: seeds the random ALS start.
        tol: stop when the relative error improves by less than this.
        restarts: ALS starts (seeds ``seed``, ``seed + 1``, …); the best is kept, and a start
            that reaches a relative error below 1e-10 ends the search.
    """
    w = np.asarray(weight, dtype=np.float64)
    r = realization
    if w.shape != (r.d_out, r.d_in):
        raise EinspaceError(
            f"weight has shape {w.shape}; the realization expects (d_out, d_in) = "
            f"({r.d_out}, {r.d_in})"
        )
    if method not in ("auto", "svd", "als"):
        raise EinspaceError(f"method = {method!r}; expected 'auto', 'svd' or 'als'")
    if method == "svd" and r.k > 2:
        raise EinspaceError(
            f"method='svd' is the closed form for k ≤ 2 factors; {r.structure} has k = {r.k}. "
            "Use method='als'"
        )
    grid = _grid(w, r)
    if method == "als" or (method == "auto" and r.k > 2):
        best: tuple[float, list[Array]] | None = None
        for start in range(max(1, restarts)):
            err, factors = _als(grid, r, iterations, seed + start, tol)
            if best is None or err < best[0]:
                best = (err, factors)
            if err < 1e-10:
                break
        assert best is not None
        return best[1]
    return _svd(grid, r, iterations, tol)


# ---------------------------------------------------------------------- closed form (k ≤ 2)
def _svd(grid: _Grid, r: Realization, iterations: int, tol: float) -> list[Array]:
    classes, sizes = r.family.classes, r.class_sizes
    vis = grid.visible
    if r.k == 1:
        return [grid.target * grid.mask]
    a, b = factor_bit(0), factor_bit(1)
    shared = tuple(p for p in vis if classes[p] & a and classes[p] & b)
    only_a = tuple(p for p in vis if classes[p] & a and not classes[p] & b)
    only_b = tuple(p for p in vis if classes[p] & b and not classes[p] & a)
    ranks = tuple(p for p, m in enumerate(classes) if not m & (X | Y))
    rank = math.prod(sizes[p] for p in ranks)
    n_h, n_a, n_b = (math.prod(sizes[p] for p in g) for g in (shared, only_a, only_b))
    order = shared + only_a + only_b
    perm = tuple(vis.index(p) for p in order)

    def solve(target: Array) -> tuple[Array, Array]:
        blocks = target.transpose(perm).reshape(n_h, n_a, n_b)
        u, s, vh = np.linalg.svd(blocks, full_matrices=False)
        q = min(rank, s.shape[-1])
        root = np.sqrt(s[:, :q])
        fa = np.zeros((n_h, n_a, rank))
        fb = np.zeros((n_h, n_b, rank))
        fa[:, :, :q] = u[:, :, :q] * root[:, None, :]
        fb[:, :, :q] = vh[:, :q, :].transpose(0, 2, 1) * root[:, None, :]
        return fa, fb

    def to_core(f: Array, own: tuple[int, ...], bit: int) -> Array:
        axes = shared + own + ranks  # the order f's axes are in
        f = f.reshape([sizes[p] for p in axes])
        core = tuple(p for p, m in enumerate(classes) if m & bit)
        return f.transpose(tuple(axes.index(p) for p in core))

    target = grid.target * grid.mask
    observed = bool(grid.mask.all())
    prev = math.inf
    for _ in range(1 if observed else max(1, iterations)):
        fa, fb = solve(target)
        factors = [to_core(fa, only_a, a), to_core(fb, only_b, b)]
        if observed:
            break
        model = _model(r, factors, vis)
        err = float(np.linalg.norm(grid.mask * (grid.target - model)))
        if prev - err <= tol * max(1.0, float(np.linalg.norm(grid.target))):
            break
        prev = err
        target = grid.mask * grid.target + (1 - grid.mask) * model
    return factors


# ---------------------------------------------------------------------- ALS (any k)
def _als(
    grid: _Grid, r: Realization, iterations: int, seed: int, tol: float
) -> tuple[float, list[Array]]:
    """One ALS run; returns (relative error on the observed entries, factors)."""
    classes, sizes = r.family.classes, r.class_sizes
    n = len(classes)
    vis = grid.visible
    visible = set(vis)
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal(s) for s in r.factor_shapes]
    if r.k == 1:
        return 0.0, [grid.target * grid.mask]
    # scale the start so the model has the target's norm
    model = _model(r, factors, vis)
    ratio = float(np.linalg.norm(grid.target)) / max(float(np.linalg.norm(model)), 1e-300)
    scale = ratio ** (1 / r.k)
    factors = [f * scale for f in factors]
    fsubs = ["".join(_sym(p) for p in ps) for ps in r.factor_positions]
    vsubs = "".join(_sym(p) for p in vis)
    norm = max(float(np.linalg.norm(grid.target)), 1e-300)
    target = grid.target * grid.mask
    observed = bool(grid.mask.all())
    prev = err = math.inf
    for _ in range(max(1, iterations)):
        for i in range(r.k):
            own = r.factor_positions[i]
            v_i = tuple(p for p in own if p in visible)
            r_i = tuple(p for p in own if p not in visible)
            others = [j for j in range(r.k) if j != i]
            # right-hand side: the target contracted with every other factor
            eq = ",".join([vsubs] + [fsubs[j] for j in others]) + "->" + fsubs[i]
            rhs = np.asarray(opt_einsum.contract(eq, target, *(factors[j] for j in others)))
            # Gram blocks: the other factors with a copy whose rank indices are renamed
            touched = {p for j in others for p in r.factor_positions[j]}
            v_shared = tuple(p for p in v_i if p in touched)

            def rename(p: int) -> str:
                return _sym(n + p) if p not in visible else _sym(p)

            copy = ["".join(rename(p) for p in r.factor_positions[j]) for j in others]
            out = (
                "".join(_sym(p) for p in v_shared)
                + "".join(_sym(p) for p in r_i)
                + "".join(_sym(n + p) for p in r_i)
            )
            eq = ",".join([fsubs[j] for j in others] + copy) + "->" + out
            gram = np.asarray(
                opt_einsum.contract(
                    eq, *(factors[j] for j in others), *(factors[j] for j in others)
                )
            )
            n_r = math.prod(sizes[p] for p in r_i)
            n_s = math.prod(sizes[p] for p in v_shared)
            gram = gram.reshape(n_s, n_r, n_r)
            # rhs in order (v_shared, v_only, r_i)
            v_only = tuple(p for p in v_i if p not in touched)
            axes = v_shared + v_only + r_i
            b = rhs.transpose(tuple(own.index(p) for p in axes))
            n_o = math.prod(sizes[p] for p in v_only)
            b = b.reshape(n_s, n_o, n_r)
            pinv = np.linalg.pinv(gram, rcond=1e-13, hermitian=True)  # (n_s, n_r, n_r)
            f = np.einsum("srt,sot->sor", pinv, b)
            f = f.reshape([sizes[p] for p in axes])
            factors[i] = f.transpose(tuple(axes.index(p) for p in own))
        model = _model(r, factors, vis)
        err = float(np.linalg.norm(grid.mask * (grid.target - model))) / norm
        if not observed:
            target = grid.mask * grid.target + (1 - grid.mask) * model
        if prev - err <= tol:
            break
        prev = err
    return err, factors
