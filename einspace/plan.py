"""Execution plans: how a realization runs as a chain of (batched) matrix products.

A plan is compiled once from a :class:`~einspace.realization.Realization`, without torch.
It applies the factors one at a time in a sequential order with the fewest MACs (docs/theory.md §2),
so its MACs are exactly ``Realization.macs()``. Each step contracts the live tensor with one
factor as one ``bmm``:

* the factor's **batch** classes (live and still needed later: block indices) become the
  bmm batch dimension,
* the **rows** are the token axis ``z`` and the live classes the factor does not touch,
* the factor's **contracted** classes are summed, its **added** classes are produced.

The live tensor is always a contiguous array whose axes are listed, outermost first, in a
*layout* (class positions, with :data:`Z` for the token axis; classes of size 1 are left out).
A step runs on a *view* when its three groups (batch, rows, contracted) are each a run of
consecutive axes of the layout and the innermost axis is not a batch axis: BLAS then reads
every batch matrix in place with a leading dimension (torch's CPU and CUDA bmm both accept
such strides). Otherwise the plan inserts one copy into a layout that works. The factor is
stored pre-permuted in the order its step wants, so weights are never copied. Among the
orders with the fewest MACs and every choice of layouts, the plan minimizes the elements
copied per token, weighted by how a copy moves memory (:func:`_copy_cost`: whole rows are
cheap, transposes of small tiles that stay in cache cost a few times more, large
transposes several times that), over both passes (a dynamic program over layouts). A step may
write its product with the batch between the matrix dimensions (a row move after the
bmm), and may put ``z`` in the batch dimension with the factor broadcast to every token
when that avoids a copy (Kronecker and TT then need no copy at all); many small products
and a gradient summed over tokens make that cost a little extra (:data:`Z_BATCH_PENALTY`).
Every copy is done on merged runs of axes (:func:`copy_runs`), so it is a row move or a
(batched) 2D transpose whenever possible.

Examples:
    >>> from einspace import Structure
    >>> plan = ExecutionPlan.compile(Structure.named("btt", r=0.25).realize(1024, 1024))
    >>> plan.copies, plan.macs
    (3, 393216)
    >>> kron = ExecutionPlan.compile(Structure.named("kronecker").realize(1024, 1024))
    >>> kron.copies, [s.z_batch for s in kron.steps]  # per token Aᵀ x_z, then one GEMM
    (0, [True, False])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from einspace import hypergraph
from einspace.contraction import sequential_macs
from einspace.index_classes import X, Y

if TYPE_CHECKING:
    from einspace.realization import Realization

__all__ = ["ExecutionPlan", "StepPlan", "Z", "copy_runs"]

#: The token (batch) axis in a layout.
Z = -1

#: Cost of copying one element, in MACs, when whole rows move (measured on a 2-core CPU,
#: where a MAC in a large GEMM costs ~0.04 ns and a plain copy ~0.16 ns per element).
COPY_ROWS = 4.0

#: Per element, for a batch of small 2D transposes (the last two runs of axes swap and
#: each tile they form holds at most :data:`TILE_ELEMS` elements, so it stays in L1 cache).
#: Measured on a 2-core CPU: (z, 64, 64) → (z, 64, 64)ᵀ moves ~0.14 ns per element, a
#: third of one large (z·64, 64) → (64, z·64) transpose.
COPY_TILE = 10.0

#: Largest tile (elements) that a batch of 2D transposes moves at :data:`COPY_TILE`.
TILE_ELEMS = 1 << 14

#: Per element, for a batch of large 2D transposes (the last two runs of axes swap).
COPY_SLAB = 30.0

#: Per element, for any other permutation.
COPY_FULL = 45.0

#: Extra cost per MAC of a step that batches over tokens with a broadcast factor: many small
#: matrix products are less efficient than one large one.
Z_BATCH_PENALTY = 0.05

#: Per element, the copies the backward pass of such a step makes to sum the factor's
#: gradient over tokens (one tensordot).
Z_BATCH_GRAD_COPY = 8.0

#: How many orders of one group's axes the search tries when it is free to choose.
_MAX_GROUP_ORDERS = 6

Layout = tuple[int, ...]


@dataclass(frozen=True)
class StepPlan:
    """One factor applied to the live tensor as a batched matrix product.

    Shapes are in class positions; :data:`Z` is the token axis. With ``transposed`` False the
    step computes ``out (nb, m, n) = T (nb, m, c) @ W (nb, c, n)``, else
    ``out (nb, n, m) = W (nb, n, c) @ T (nb, m, c)ᵀ``; either way ``out`` is contiguous.

    Attributes:
        factor: the factor applied (0 = A).
        batch: the bmm batch axes in memory order (``(Z,)`` when ``z_batch``).
        rows: the row axes (the token axis unless ``z_batch``, plus carried classes).
        contracted: the classes summed, in memory order.
        added: the classes produced, in the order stored in the weight.
        transposed: whether the product is computed as ``W @ Tᵀ``.
        z_batch: whether tokens form the batch with the factor broadcast.
        copy: whether the live tensor is copied into ``layout_in`` first.
        out_mid: whether the product is written with the batch between its two matrix
            dimensions, e.g. ``(m, nb, n)`` in memory (the bmm result moved row by row).
        layout_in: memory order of the live tensor entering the product.
        layout_out: memory order of the product.
        weight_axes: the class positions of the stored factor's dimensions (every class of
            the factor, size-1 ones last).
        weight_matrix: the stored factor viewed as ``(nb, c, n)`` (``(nb, n, c)`` when
            transposed; ``nb`` = 1 when ``z_batch``).
        macs: multiply-accumulates per token.
    """

    factor: int
    batch: tuple[int, ...]
    rows: tuple[int, ...]
    contracted: tuple[int, ...]
    added: tuple[int, ...]
    transposed: bool
    z_batch: bool
    copy: bool
    out_mid: bool
    layout_in: Layout
    layout_out: Layout
    weight_axes: tuple[int, ...]
    weight_matrix: tuple[int, int, int]
    macs: int


@dataclass(frozen=True)
class ExecutionPlan:
    """A compiled, framework-neutral schedule for one realization.

    Build one with :meth:`compile`. The torch module :class:`einspace.nn.EinsumLinear`
    executes it; :meth:`describe` prints it.

    Attributes:
        sizes: class sizes, aligned with the family's classes.
        order: the factor order applied.
        input_layout: layout of the (padded) input: ``(Z, input classes in class order)``.
        output_layout: layout the output must end in: ``(Z, output classes in class order)``.
        steps: one :class:`StepPlan` per factor, in application order.
        final_copy: whether the last product must be permuted (copied) into ``output_layout``.
        macs: sequential MACs per token (equals ``Realization.macs()``).
        copy_elements: elements copied per token, final copy included.
    """

    sizes: tuple[int, ...]
    order: tuple[int, ...]
    input_layout: Layout
    output_layout: Layout
    steps: tuple[StepPlan, ...]
    final_copy: bool
    macs: int
    copy_elements: int

    @property
    def copies(self) -> int:
        """Copies of the live tensor per forward pass: into a step's layout, the row move of a
        product written with the batch in the middle, and the final one."""
        return sum(s.copy + s.out_mid for s in self.steps) + self.final_copy

    @classmethod
    def compile(cls, realization: Realization) -> ExecutionPlan:
        """Plan ``realization``: the cheapest layouts over its min-MAC factor orders."""
        return _compile(realization.family.classes, realization.k, realization.class_sizes)

    def axis_size(self, axis: int) -> int:
        """Size of a class position; -1 for the token axis."""
        return -1 if axis == Z else self.sizes[axis]

    def shape(self, layout: Sequence[int]) -> tuple[int, ...]:
        """Sizes of a layout's axes, -1 for the token axis."""
        return tuple(self.axis_size(a) for a in layout)

    def describe(self, names: Sequence[str] | None = None) -> str:
        """A readable table of the steps (class names default to positions).

        Examples:
            >>> from einspace import Structure
            >>> r = Structure.named("low_rank", r=0.5).realize(64, 64)
            >>> print(ExecutionPlan.compile(r).describe(r.family.names))
            step  factor  batch  rows  contract  add  op   copy  MACs
               1  A       -      z     α         ρ    T@W  no    512
               2  B       -      z     ρ         ε    T@W  no    512
            final copy: no; copied elements per token: 0
        """

        def fmt(axes: Iterable[int]) -> str:
            out = ["z" if a == Z else (names[a] if names else str(a)) for a in axes]
            return ",".join(out) or "-"

        letters = "ABCDEFGHIJKLMNOPQRSTUVW"
        rows = [("step", "factor", "batch", "rows", "contract", "add", "op", "copy", "MACs")]
        for i, s in enumerate(self.steps):
            rows.append(
                (
                    str(i + 1),
                    letters[s.factor],
                    fmt(s.batch),
                    fmt(s.rows),
                    fmt(s.contracted),
                    fmt(s.added),
                    ("W@Tᵀ" if s.transposed else "T@W") + (" mid" if s.out_mid else ""),
                    "yes" if s.copy else "no",
                    str(s.macs),
                )
            )
        widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
        lines = []
        for r in rows:
            cells = [r[0].rjust(widths[0])] + [
                c.ljust(w) for c, w in zip(r[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        lines.append(
            f"final copy: {'yes' if self.final_copy else 'no'}; "
            f"copied elements per token: {self.copy_elements}"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------- layout helpers
def _runs(layout: Layout, groups: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]] | None:
    """Each group's axes in memory order if every group is a run of consecutive axes."""
    out: list[tuple[int, ...]] = []
    for g in groups:
        if not g:
            out.append(())
            continue
        idx = sorted(layout.index(a) for a in g)
        if idx[-1] - idx[0] != len(idx) - 1:
            return None
        out.append(tuple(layout[i] for i in idx))
    return out


def _blas_ok(layout: Layout, batch: tuple[int, ...]) -> bool:
    """A batch matrix needs a unit stride: the innermost axis must not be a batch axis."""
    return not layout or layout[-1] not in batch


def _orders(axes: Iterable[int]) -> list[tuple[int, ...]]:
    """A few orders of ``axes``, the ascending (class) order first."""
    base = tuple(sorted(axes))
    return list(itertools.islice(itertools.permutations(base), _MAX_GROUP_ORDERS))


def _prod(sizes: tuple[int, ...], axes: Iterable[int]) -> int:
    return math.prod(sizes[a] for a in axes if a != Z)


def copy_runs(src: Layout, dst: Layout) -> tuple[tuple[int, ...], ...]:
    """The runs of axes a copy from ``src`` to ``dst`` moves together, in ``dst`` order.

    Axes adjacent (in the same order) in both layouts form one run; a copy is a permutation
    of runs, which an executor should perform on the merged (fewer-dimensional) view.

    Examples:
        >>> copy_runs((Z, 0, 1), (1, Z, 0))  # (z, α, γ) → (γ, z, α): a 2D transpose
        ((1,), (-1, 0))
    """
    runs: list[list[int]] = []
    for a in dst:
        if runs and src.index(runs[-1][-1]) + 1 == src.index(a):
            runs[-1].append(a)
        else:
            runs.append([a])
    return tuple(tuple(r) for r in runs)


def _copy_cost(src: Layout, dst: Layout, sizes: tuple[int, ...]) -> float:
    """Cost, in MACs per token, of copying a tensor from layout ``src`` into ``dst``.

    Keeping the innermost run is a row move (:data:`COPY_ROWS` per element, more for short
    rows); swapping only the last two runs is a batch of 2D transposes (:data:`COPY_TILE`
    when each transposed tile is small, else :data:`COPY_SLAB`); anything else is a general
    transpose (:data:`COPY_FULL`).
    """
    if src == dst:
        return 0.0
    runs = copy_runs(src, dst)
    heads = sorted(range(len(runs)), key=lambda i: src.index(runs[i][0]))
    rank = [heads.index(i) for i in range(len(runs))]  # src position of each dst run
    n = len(runs)
    elems = _prod(sizes, dst)
    if rank[-1] == n - 1:
        row = _prod(sizes, runs[-1])
        return (COPY_ROWS + 64.0 / row) * elems
    if rank[-2:] == [n - 1, n - 2] and rank[:-2] == list(range(n - 2)):
        tile = runs[-1] + runs[-2]  # a tile holding the token axis is as large as the batch
        small = Z not in tile and _prod(sizes, tile) <= TILE_ELEMS
        return (COPY_TILE if small else COPY_SLAB) * elems
    return COPY_FULL * elems


_Option = tuple[float, int, Layout, tuple]  # cost, copied elements, layout out, StepPlan args


def _step_options(
    layout: Layout,
    factor: int,
    step: hypergraph.Step,
    fclasses: tuple[int, ...],
    sizes: tuple[int, ...],
) -> list[_Option]:
    """Every (cost, copied elements, output layout, step) the search considers from ``layout``.

    Costs count both passes: a copy in the forward pass has its mirror in the backward pass.
    """
    keep = [p for p in fclasses if sizes[p] > 1]
    trivial = tuple(p for p in fclasses if sizes[p] == 1)
    batch = tuple(p for p in step.batch if p in keep)
    contracted = tuple(p for p in step.contracted if p in keep)
    added = tuple(p for p in step.added if p in keep)
    live = set(layout)
    carried = tuple(a for a in layout if a not in batch and a not in contracted)
    macs = _prod(sizes, live | set(keep))
    live_elems = _prod(sizes, live)
    out_elems = _prod(sizes, (live - set(contracted)) | set(added))
    added_orders = _orders(added)
    out: list[_Option] = []
    for z_batch in (False, True) if not batch else (False,):
        gb = (Z,) if z_batch else batch
        gm = tuple(a for a in carried if a != Z) if z_batch else carried
        runs = _runs(layout, (gb, gm, contracted))
        candidates: list[tuple[float, Layout, tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
        candidates = []
        if runs is not None and _blas_ok(layout, gb):
            # 1. run on a view of the current layout
            candidates.append((0.0, layout, runs[0], runs[1], runs[2]))
        else:
            # 2. copy into a layout whose groups are runs, the batch not innermost
            oc = tuple(sorted(contracted))
            for ob in _orders(gb):
                for om in _orders(gm):
                    seen = set()
                    for lay in (ob + om + oc, ob + oc + om, om + ob + oc, oc + ob + om):
                        if lay in seen or not _blas_ok(lay, ob):
                            continue
                        seen.add(lay)
                        candidates.append((2 * _copy_cost(layout, lay, sizes), lay, ob, om, oc))
        for transposed in (False, True):
            for copy_cost, lay, ob, om, oc in candidates:
                copy = lay != layout
                copied = live_elems if copy else 0
                cost = copy_cost + 1e-9 * transposed  # the plain orientation on ties
                if ob and lay[0] not in ob:
                    # batch in the middle: read in place, but the backward pass writes the
                    # input gradient with a row move after its bmm
                    cost += COPY_ROWS * live_elems
                if z_batch:
                    cost += 3 * Z_BATCH_PENALTY * macs
                    # the backward pass sums the factor's gradient over tokens: a plain
                    # matrix product only when tokens and rows are adjacent, else copies
                    if transposed:
                        cost += Z_BATCH_GRAD_COPY * out_elems
                    elif lay.index(Z) + 1 < len(lay) and lay[lay.index(Z) + 1] not in om:
                        cost += Z_BATCH_GRAD_COPY * live_elems
                for on in added_orders:
                    # the product is written contiguous, or with the batch in the middle
                    # (a row move after the bmm)
                    first, second = (on, om) if transposed else (om, on)
                    outs = [(False, ob + first + second)]
                    if ob and first:
                        outs.append((True, first + ob + second))
                    for mid, lay_out in outs:
                        args = (factor, ob, om, oc, on, transposed, z_batch, copy, lay, lay_out)
                        extra = COPY_ROWS * out_elems if mid else 0.0  # the row move
                        moved = copied + (out_elems if mid else 0)
                        out.append((cost + extra, moved, lay_out, (*args, mid, trivial, macs)))
    return out


def _build(sizes: tuple[int, ...], args: tuple) -> StepPlan:
    factor, ob, om, oc, on, transposed, z_batch, copy, lay, lay_out, mid, trivial, macs = args
    nb = 1 if z_batch else _prod(sizes, ob)
    c, n = _prod(sizes, oc), _prod(sizes, on)
    w_axes = (() if z_batch else ob) + ((on + oc) if transposed else (oc + on))
    return StepPlan(
        factor=factor,
        batch=ob,
        rows=om,
        contracted=oc,
        added=on,
        transposed=transposed,
        z_batch=z_batch,
        copy=copy,
        out_mid=mid,
        layout_in=lay,
        layout_out=lay_out,
        weight_axes=w_axes + trivial,
        weight_matrix=(nb, n, c) if transposed else (nb, c, n),
        macs=macs,
    )


#: States kept per step of the search (the cheapest ones).
_BEAM = 32


@lru_cache(maxsize=4096)
def _compile(classes: tuple[int, ...], k: int, sizes: tuple[int, ...]) -> ExecutionPlan:
    n_classes = len(classes)
    inputs = tuple(p for p in range(n_classes) if classes[p] & X and sizes[p] > 1)
    outputs = tuple(p for p in range(n_classes) if classes[p] & Y and sizes[p] > 1)
    start: Layout = (Z, *inputs)
    final: Layout = (Z, *outputs)
    fsets = hypergraph.factor_class_sets(classes, k)
    costs = {o: sequential_macs(classes, k, sizes, o) for o in hypergraph.orders(k)}
    best_macs = min(costs.values())
    best: tuple[float, ExecutionPlan] | None = None
    State = tuple[float, int, tuple[StepPlan, ...]]
    for order in (o for o, c in costs.items() if c == best_macs):
        steps = hypergraph.sequential_steps(classes, k, order)
        frontier: dict[Layout, State] = {start: (0.0, 0, ())}
        for f, step in zip(order, steps, strict=True):
            nxt: dict[Layout, tuple[float, int, tuple[StepPlan, ...], tuple]] = {}
            fclasses = tuple(sorted(fsets[f]))
            for layout, (cost, copied, done) in frontier.items():
                for c, e, lay_out, args in _step_options(layout, f, step, fclasses, sizes):
                    total = cost + c
                    if lay_out not in nxt or total < nxt[lay_out][0]:
                        nxt[lay_out] = (total, copied + e, done, args)
            kept = sorted(nxt.items(), key=lambda kv: kv[1][0])[:_BEAM]
            frontier = {
                lay: (c, e, (*done, _build(sizes, args))) for lay, (c, e, done, args) in kept
            }
        for layout, (cost, copied, done) in frontier.items():
            need = layout != final
            out_elems = _prod(sizes, outputs) if need else 0
            total = cost + 2 * _copy_cost(layout, final, sizes)
            if best is None or total < best[0] - 1e-12:
                plan = ExecutionPlan(
                    sizes=sizes,
                    order=order,
                    input_layout=start,
                    output_layout=final,
                    steps=done,
                    final_copy=need,
                    macs=best_macs,
                    copy_elements=copied + out_elems,
                )
                best = (total, plan)
    assert best is not None
    return best[1]
