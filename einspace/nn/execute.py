"""Running an :class:`~einspace.plan.ExecutionPlan` with torch, forward and backward.

:func:`compile_program` turns a plan into fixed permutations and shapes (once, at layer
construction). :func:`run_program` executes it with plain torch ops (used for inference and
under ``torch.compile``). :class:`PlanFunction` is the training path: a custom
``torch.autograd.Function`` whose backward pass produces every gradient in (or, when the
batch sits between the matrix dimensions, readable through strides from) the memory layout
of the tensor it belongs to, by choosing the orientation of each ``bmm``. So the backward
pass copies what the forward pass copied, in reverse (plus a regrouping where a later
product cannot read the strided gradient), and never falls into ``bmm``'s per-matrix clone
path (autograd through the plain ops does, several times per step; so would one token
without :func:`_batch_ready`). Both passes run in cache-sized chunks of tokens
(:func:`token_chunks`).

Where the plan's products are too small for BLAS (:func:`prefers_dense`), a layer may
instead contract the factors into its dense matrix (:func:`dense_weight`) and run one GEMM;
:func:`compute_dtype` is how layers follow autocast.

Examples:
    >>> import torch
    >>> from einspace import Structure
    >>> from einspace.plan import ExecutionPlan
    >>> r = Structure.named("monarch").realize(16, 16)
    >>> prog = compile_program(ExecutionPlan.compile(r))
    >>> ws = [torch.randn(s, dtype=torch.float64) for s in prog.weight_shapes]
    >>> x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    >>> torch.autograd.gradcheck(lambda x, a, b: PlanFunction.apply(prog, x, a, b), (x, *ws))
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from einspace.errors import EinspaceError
from einspace.plan import ExecutionPlan, Layout, Z, copy_runs

__all__ = [
    "PlanFunction",
    "Program",
    "chunk_sizes",
    "compile_program",
    "compute_dtype",
    "dense_weight",
    "prefers_dense",
    "reads_strided",
    "run_program",
    "token_chunks",
]


def _perm(src: Layout, dst: Layout) -> tuple[int, ...]:
    return tuple(src.index(a) for a in dst)


def _perm_or_none(src: Layout, dst: Layout) -> tuple[int, ...] | None:
    perm = _perm(src, dst)
    return None if perm == tuple(range(len(perm))) else perm


@dataclass(frozen=True)
class Copy:
    """A layout change done on merged runs of axes (fewer dimensions: faster copies).

    Attributes:
        src_shape: the source viewed as its runs (source order), -1 for the token run.
        perm: the permutation of runs into destination order.
        dst_runs_shape: the destination viewed as its runs.
        dst_shape: the destination layout's shape.
        src_layout_shape: the source layout's shape.
    """

    src_shape: tuple[int, ...]
    perm: tuple[int, ...]
    dst_runs_shape: tuple[int, ...]
    dst_shape: tuple[int, ...]
    src_layout_shape: tuple[int, ...]

    @classmethod
    def of(cls, plan: ExecutionPlan, src: Layout, dst: Layout) -> Copy:
        runs = copy_runs(src, dst)
        order = sorted(range(len(runs)), key=lambda i: src.index(runs[i][0]))

        def size(run: tuple[int, ...]) -> int:
            return -1 if Z in run else math.prod(plan.sizes[a] for a in run)

        return cls(
            src_shape=tuple(size(runs[i]) for i in order),
            perm=tuple(order.index(i) for i in range(len(runs))),
            dst_runs_shape=tuple(size(r) for r in runs),
            dst_shape=plan.shape(dst),
            src_layout_shape=plan.shape(src),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Source layout → destination layout (contiguous)."""
        return t.reshape(self.src_shape).permute(self.perm).contiguous().view(self.dst_shape)

    def into(self, t: torch.Tensor, out: torch.Tensor) -> None:
        """Source layout → ``out`` (a contiguous tensor with the destination's elements)."""
        out.view(self.dst_runs_shape).copy_(t.reshape(self.src_shape).permute(self.perm))

    def backward(
        self, g: torch.Tensor, out: torch.Tensor | None = None, strided: bool = False
    ) -> torch.Tensor:
        """Destination layout → source layout (the mirror copy, for gradients), into ``out``
        (a contiguous tensor with the source's elements) when given.

        A strided ``g`` (an input gradient whose batch sat in the middle) is first made
        contiguous, a row move: the permutation after it is then the cheap mirror the plan
        costed, not a general transpose of the strided memory. With ``strided`` (a chunk
        whose token count :func:`reads_strided` allows) the mirror reads ``g`` in place
        where its runs are a view of it."""
        runs = _view_or_none(g, self.dst_runs_shape) if strided else None
        if runs is None:
            runs = g.contiguous().view(self.dst_runs_shape)
        moved = runs.permute(_inverse(self.perm))
        if out is not None:
            out.view(self.src_shape).copy_(moved)
            return out
        return moved.contiguous().view(self.src_layout_shape)


def _view_or_none(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """``t.view(shape)``, or None where the shape would merge dimensions ``t``'s strides
    keep apart."""
    try:
        return t.view(shape)
    except RuntimeError:
        return None


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


@dataclass(frozen=True)
class Kernel:
    """One plan step as tensor operations (shapes use -1 for the token axis).

    Attributes:
        factor: the factor applied.
        copy: the copy of the live tensor into the step's input layout, or None.
        in_shape: shape of the step's input layout.
        view_perm: permutation of the input layout into (batch, rows, contracted) order,
            None when it is the identity (one torch op fewer per call).
        view_shape: the ``(nb, m, c)`` view of the input.
        matrix: the stored factor as ``(nb, c, n)`` (``(nb, n, c)`` when transposed).
        transposed: the product is ``W @ Tᵀ``.
        z_batch: tokens form the batch; the factor is broadcast.
        out_shape: shape of the step's output layout.
        out_mid: the product is written as ``(rows, nb, cols)`` in memory.
        grad_mode: the memory order of the input's groups (batch, rows, contracted), which
            fixes how the backward pass produces the input gradient: ``"bmc"`` and ``"bcm"``
            are plain bmm outputs, ``"mbc"`` and ``"cbm"`` (batch in the middle) are bmm
            outputs read through strides (the step before reads them in place when it can).
        group_shape: the input layout's shape with its axes in (batch, rows, contracted)
            order (``(nb, m, c)`` split back into axes).
        inverse_perm: permutes ``group_shape`` back into the input layout (None: identity).
    """

    factor: int
    copy: Copy | None
    in_shape: tuple[int, ...]
    view_perm: tuple[int, ...] | None
    view_shape: tuple[int, int, int]
    matrix: tuple[int, int, int]
    transposed: bool
    z_batch: bool
    out_mid: bool
    out_shape: tuple[int, ...]
    grad_mode: str
    group_shape: tuple[int, ...] = ()
    inverse_perm: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Program:
    """A compiled plan (or a range of its steps): the kernels plus the input and output
    reshapes. ``padded_out`` is 0 for a sub-program that returns its live tensor unflattened;
    ``max_live`` is the most elements per token any layout holds (sets the token chunks), and
    ``chunkable`` whether chunking pays off at all. ``macs`` (per token) and ``block`` (the
    smallest contracted or produced size of any batched step's products, 0 when every step
    is one plain GEMM) feed :func:`prefers_dense`;
    ``dense_equation`` contracts the stored factors into the ``(padded_in, padded_out)``
    matrix (None for a sub-program, or when an input class is also an output class).
    ``final_reads_mid``: the last product is written with its batch in the middle and the
    flat output can be read straight from the strided product (no row move first; see
    :func:`reads_strided`).
    """

    input_shape: tuple[int, ...]
    kernels: tuple[Kernel, ...]
    final: Copy | None
    final_shape: tuple[int, ...]
    padded_in: int
    padded_out: int
    weight_shapes: tuple[tuple[int, ...], ...]
    max_live: int
    chunkable: bool
    macs: int = 0
    block: int = 0
    dense_equation: str | None = None
    final_reads_mid: bool = False


def reads_strided(tokens: int) -> bool:
    """Whether a copy should read a chunk of ``tokens`` tokens straight from a product
    written with its batch in the middle (or write a mirror straight from a strided
    gradient), instead of making it contiguous first (a row move).

    One copy instead of two, but reading across the batch steps over the chunk's tokens:
    with a multiple of 4 tokens and power-of-two blocks that step is a multiple of 4 KiB,
    and the fused copy was measured 3-4× slower than the two copies (1.45 against 0.37 ms
    per 128 tokens of 64 × 64 tiles, 1 thread); with 63, 65, 127 or 129 tokens it took
    0.29-0.30 ms. :func:`chunk_sizes` keeps chunks off multiples of 4.

    Examples:
        >>> reads_strided(128), reads_strided(129)
        (False, True)
    """
    return tokens % 4 != 0


def _within_groups(runs: tuple[tuple[int, ...], ...], groups: Sequence[tuple[int, ...]]) -> bool:
    """Whether every run of a copy lies inside one group of the source layout (so the
    copy can read a source whose groups are permuted in memory as a view)."""
    return all(any(set(r) <= set(g) for g in groups) for r in runs)


def _grad_mode(layout: Layout, groups: tuple[tuple[int, ...], ...]) -> str:
    """Which bmm output order matches the memory order of the groups (batch, rows, contr.)."""
    present = [(layout.index(g[0]), name) for g, name in zip(groups, "bmc", strict=True) if g]
    order = "".join(name for _, name in sorted(present))
    if order in ("bmc", "mc", "bm", "b", "m", "c"):
        return "bmc"
    if order in ("bcm", "cm", "bc"):
        return "bcm"
    if order in ("mbc", "mb"):
        return "mbc"
    return "cbm"


def compile_program(plan: ExecutionPlan, start: int = 0, stop: int | None = None) -> Program:
    """Fix every permutation and shape of ``plan`` (framework work done once).

    ``start``/``stop`` select a range of steps (a sub-program, e.g. to scale the intermediate
    between two factors, as :class:`~einspace.nn.BTTMoE` does). A sub-program that starts
    later takes the live tensor in the previous step's output layout (shape
    :meth:`ExecutionPlan.shape` of it); one that stops early returns its live tensor in its
    layout instead of the flat ``(tokens, padded_out)`` output.
    """
    stop = len(plan.steps) if stop is None else stop
    layout = plan.input_layout if start == 0 else plan.steps[start - 1].layout_out
    first = layout
    kernels = []

    def group(axes: tuple[int, ...]) -> int:
        return -1 if Z in axes else math.prod(plan.sizes[a] for a in axes)

    for s in plan.steps[start:stop]:
        kernels.append(
            Kernel(
                factor=s.factor,
                copy=Copy.of(plan, layout, s.layout_in) if s.copy else None,
                in_shape=plan.shape(s.layout_in),
                view_perm=_perm_or_none(s.layout_in, s.batch + s.rows + s.contracted),
                view_shape=(group(s.batch), group(s.rows), group(s.contracted)),
                matrix=s.weight_matrix,
                transposed=s.transposed,
                z_batch=s.z_batch,
                out_mid=s.out_mid,
                out_shape=plan.shape(s.layout_out),
                grad_mode=_grad_mode(s.layout_in, (s.batch, s.rows, s.contracted)),
                group_shape=plan.shape(s.batch + s.rows + s.contracted),
                inverse_perm=_perm_or_none(s.batch + s.rows + s.contracted, s.layout_in),
            )
        )
        layout = s.layout_out
    final = plan.output_layout
    steps = {s.factor: s for s in plan.steps}
    flatten = stop == len(plan.steps)
    final_reads_mid = False
    if flatten and stop > start and plan.steps[stop - 1].out_mid:
        end = plan.steps[stop - 1]
        outer, inner = (end.added, end.rows) if end.transposed else (end.rows, end.added)
        runs = copy_runs(layout, final) if layout != final else ((),)
        final_reads_mid = _within_groups(runs, (outer, end.batch, inner))
    return Program(
        input_shape=plan.shape(first),
        kernels=tuple(kernels),
        final=Copy.of(plan, layout, final) if layout != final and flatten else None,
        final_shape=plan.shape(final) if flatten else plan.shape(layout),
        padded_in=math.prod(plan.sizes[a] for a in first if a != Z),
        padded_out=math.prod(plan.sizes[a] for a in final if a != Z) if flatten else 0,
        weight_shapes=tuple(
            tuple(plan.sizes[a] for a in steps[i].weight_axes) for i in range(len(steps))
        ),
        max_live=max(
            math.prod(plan.sizes[a] for a in lay if a != Z)
            for lay in (first, final, *(st.layout_out for st in plan.steps[start:stop]))
        ),
        chunkable=flatten and _worth_chunking(plan),
        macs=sum(s.macs for s in plan.steps[start:stop]),
        block=min(
            (
                min(s.weight_matrix[1:])
                for s in plan.steps[start:stop]
                if s.z_batch or s.weight_matrix[0] > 1
            ),
            default=0,
        ),
        dense_equation=_dense_equation(plan) if flatten and start == 0 else None,
        final_reads_mid=final_reads_mid,
    )


def _dense_equation(plan: ExecutionPlan) -> str | None:
    """The einsum of the stored factors giving the matrix ``(input classes, output classes)``
    (layout order, size-1 classes summed away), or None when a class is both or in no factor."""
    ins = [a for a in plan.input_layout if a != Z]
    outs = [a for a in plan.output_layout if a != Z]
    steps = sorted(plan.steps, key=lambda s: s.factor)
    held = {a for s in steps for a in s.weight_axes}
    if set(ins) & set(outs) or not set(ins + outs) <= held:
        return None
    letters = "abcdefghijklmnopqrstuvwxyz"
    terms = ["".join(letters[a] for a in s.weight_axes) for s in steps]
    return ",".join(terms) + "->" + "".join(letters[a] for a in ins + outs)


def _worth_chunking(plan: ExecutionPlan) -> bool:
    """Chunks pay off when the plan copies or holds an intermediate larger than its input
    and output; a chain of plain GEMMs (low rank) runs fastest whole."""

    def elems(lay: Layout) -> int:
        return math.prod(plan.sizes[a] for a in lay if a != Z)

    ends = max(elems(plan.input_layout), elems(plan.output_layout))
    inner = [elems(s.layout_out) for s in plan.steps[:-1]]
    return plan.copies > 0 or any(e > ends for e in inner)


#: The plan runs on chunks of tokens whose largest live tensor has about this many elements
#: (2 MB in float32, about a core's L2 cache): intermediates then stay in cache instead of
#: streaming through memory. Measured on a 2-core CPU (fwd + bwd, median of 12): Monarch at
#: d = 1024, batch 4096 takes 19 ms in such chunks, 35 ms in 8 MB chunks and ~2× that
#: unchunked; at d = 4096, batch 256, 7.7 ms against 9.5 ms.
LIVE_BUDGET = 1 << 19


def token_chunks(program: Program, tokens: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` splitting ``tokens`` into balanced cache-sized chunks, sized
    off multiples of 4 where they hold at least :data:`SKEW_FROM` tokens (:func:`chunk_sizes`).

    Examples:
        >>> from einspace import Structure
        >>> from einspace.plan import ExecutionPlan
        >>> monarch = Structure.named("monarch").realize(4096, 4096)
        >>> token_chunks(compile_program(ExecutionPlan.compile(monarch)), 256)
        [(0, 129), (129, 256)]
    """
    if tokens == 0:
        return []
    if not program.chunkable:
        return [(0, tokens)]
    size = max(64, LIVE_BUDGET // max(1, program.max_live))
    n = -(-tokens // size)
    sizes = chunk_sizes(tokens, n, skew=tokens >= SKEW_FROM * n)
    return list(itertools.pairwise(itertools.accumulate(sizes, initial=0)))


#: Chunks of at least this many tokens are sized off multiples of 4 (:func:`chunk_sizes`).
#: Below it the products' odd column count costs more than the cache sets save: at 64
#: tokens per chunk (BTT n_ρ = 2, d = 4096) a ``W @ Tᵀ`` product with 65 columns took
#: 2.5 ms per 128 tokens against 2.0 with 64 (1 thread), and the layer was no faster.
SKEW_FROM = 96


def chunk_sizes(tokens: int, n: int, skew: bool = True) -> list[int]:
    """``n`` balanced sizes summing to ``tokens``; with ``skew``, each moved by a token or
    two off a multiple of 4 where the total allows.

    Why: the plan's strided reads and writes step over the tokens of a chunk, and with
    power-of-two blocks a chunk of a multiple of 8 tokens makes that step a multiple of
    4 KiB; the accesses then fall into a few sets of the L1 cache and evict each other.
    Measured on this project's 2-core CPU (1 thread, per 128 tokens, 64 × 64 blocks):
    the product reading the strided intermediate took 1.16–1.23 ms with 64 or 128 tokens
    per chunk, 0.80–0.84 ms with 63, 65, 127 or 129 (0.77–0.85 on a contiguous copy);
    the tile transpose read straight from the strided product 1.45 ms against 0.29–0.31.

    Examples:
        >>> chunk_sizes(256, 2), chunk_sizes(256, 4), chunk_sizes(7, 2)
        ([129, 127], [65, 63, 65, 63], [5, 2])
        >>> chunk_sizes(256, 4, skew=False)
        [64, 64, 64, 64]
    """
    q, r = divmod(tokens, n)
    sizes = [q + 1] * r + [q] * (n - r)
    if not skew:
        return sizes
    for i in range(n - 1):
        if sizes[i] % 4 == 0 and sizes[i + 1] > 1:
            sizes[i] += 1
            sizes[i + 1] -= 1
    if n > 1 and sizes[-1] % 4 == 0:
        for step in (1, -1, 2, -2):
            prev, last = sizes[-2] + step, sizes[-1] - step
            if prev % 4 and last % 4 and min(prev, last) >= 1:
                sizes[-2:] = [prev, last]
                break
    return sizes


#: Block size from which a plan's small products run about as efficiently per MAC as one
#: large GEMM; below it, per MAC cost grows as (BLOCK_FULL / block)². Measured on a 2-core
#: CPU with Monarch and BTT (n_ρ = 2, 4) at d = 64 … 512 and 2048 rows (blocks 8 … 23),
#: fwd + bwd, plan against dense path: the rule picks the faster one at 11 of 12 points
#: (e.g. BTT n_ρ = 2 at d = 256: plan 3.6 ms, dense path 4.2 ms; n_ρ = 4: 6.5 against 4.5);
#: at the twelfth (BTT n_ρ = 4, d = 512) it picks the plan, 12 % slower.
BLOCK_FULL = 30


def prefers_dense(program: Program, tokens: int) -> bool:
    """Whether ``tokens`` rows run faster through the materialized matrix than the plan.

    The dense path contracts the factors into the ``(padded_out, padded_in)`` matrix (cheap
    next to the rows' work once ``tokens ≥ padded_in``) and runs one GEMM. It wins when the
    plan's batched products are so small (``block``) that BLAS runs them far below its
    peak: ``macs · (BLOCK_FULL / block)² > padded_in · padded_out``. A plan of plain GEMMs
    (low rank) never switches.

    Examples:
        >>> from einspace import Structure
        >>> from einspace.plan import ExecutionPlan
        >>> def program(d):
        ...     monarch = Structure.named("monarch").realize(d, d)
        ...     return compile_program(ExecutionPlan.compile(monarch))
        >>> small, big = program(64), program(4096)
        >>> prefers_dense(small, 2048), prefers_dense(small, 16), prefers_dense(big, 2048)
        (True, False, False)
    """
    if program.dense_equation is None or tokens < program.padded_in or not program.block:
        return False
    slow = (BLOCK_FULL / program.block) ** 2 if program.block < BLOCK_FULL else 1.0
    return program.macs * slow > program.padded_in * program.padded_out


def dense_weight(program: Program, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``(padded_out, padded_in)`` matrix of the stored factors (differentiable)."""
    assert program.dense_equation is not None
    w = torch.einsum(program.dense_equation, *weights)
    return w.reshape(program.padded_in, program.padded_out).t()


def compute_dtype(x: torch.Tensor, param: torch.Tensor, layer: str) -> torch.dtype | None:
    """The dtype a layer computes in when it differs from its parameters': autocast's
    lower precision on ``x``'s device when autocast is on there (as for ``nn.Linear``),
    None otherwise. The caller casts x and the parameters to it and runs with autocast off.

    Raises:
        EinspaceError: ``x`` has another dtype than the parameters and autocast does not
            reconcile them (``nn.Linear`` fails there too).

    Examples:
        >>> w = torch.zeros(2)
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     compute_dtype(torch.zeros(2), w, "layer")
        torch.bfloat16
        >>> compute_dtype(torch.zeros(2), w, "layer") is None
        True
    """
    device = x.device.type
    floats = x.is_floating_point() and param.is_floating_point()
    if floats and x.dtype != torch.float64 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    if x.dtype != param.dtype:
        raise EinspaceError(
            f"input of dtype {x.dtype} given to {layer}, whose parameters are "
            f"{param.dtype}; cast the input (x.to({param.dtype})), convert the layer "
            f"(layer.to({x.dtype})), or run under torch.autocast"
        )
    return None


def _batch_ready(t: torch.Tensor) -> torch.Tensor:
    """``t`` if torch's CPU ``bmm`` can hand its matrices to one batched GEMM, else a
    contiguous copy: otherwise bmm clones every matrix of the batch separately (seen with
    one token, where a size-1 dimension carries an odd stride)."""
    if t.is_contiguous():
        return t
    _, r, c = t.shape
    _, s1, s2 = t.stride()
    if (s2 == 1 and (r == 1 or s1 >= c)) or (s1 == 1 and (c == 1 or s2 >= r)):
        return t
    return t.contiguous()


def _bmm(
    a: torch.Tensor,
    b: torch.Tensor,
    mid: bool,
    accumulate: torch.Tensor | None = None,
    strided: bool = False,
) -> torch.Tensor:
    """``a (nb, r, k) @ b (nb, k, c)`` in memory ``(nb, r, c)``, or ``(r, nb, c)`` when ``mid``
    (``strided``: the ``(r, nb, c)`` view of the ``(nb, r, c)`` product, for a copy that
    reads it in place).

    A mid result is a contiguous product plus a row move: ``bmm(out=)`` into the strided
    view would save the move, but torch's CPU bmm then loops over matrices and was measured
    up to 30× slower. ``accumulate`` (same shape as the result, not mid) is added to in
    place and returned.
    """
    a, b = _batch_ready(a), _batch_ready(b)
    if accumulate is not None:
        if a.shape[0] == 1:
            accumulate[0].addmm_(a[0], b[0])
        else:
            accumulate.baddbmm_(a, b)
        return accumulate
    if not mid:
        if a.shape[0] == 1:
            return torch.mm(a[0], b[0]).unsqueeze(0)
        return torch.bmm(a, b)
    if strided:
        return torch.bmm(a, b).transpose(0, 1)
    return torch.bmm(a, b).transpose(0, 1).contiguous()


def _product(kn: Kernel, t3: torch.Tensor, w: torch.Tensor, strided: bool = False) -> torch.Tensor:
    """The step's product in its output layout (``kn.out_shape``); with ``strided``, a mid
    product comes as a view of the bmm output (its batch outermost in memory).

    With one row per matrix (one token), ``W @ Tᵀ`` and ``T @ Wᵀ`` have the same memory;
    the second runs as a vector-matrix product, measured ~1.5-2× faster than the
    matrix-vector one on CPU."""
    if kn.z_batch:
        w = w.expand(t3.shape[0], -1, -1)
    if kn.transposed and t3.shape[1] == 1 and not kn.out_mid:
        return _bmm(t3, w.transpose(1, 2), False).view(kn.out_shape)
    a, b = (w, t3.transpose(1, 2)) if kn.transposed else (t3, w)
    return _bmm(a, b, kn.out_mid, strided=strided).view(kn.out_shape)


def _run(
    program: Program,
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    saved: list[torch.Tensor] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One pass over ``x`` (a chunk of tokens); step inputs go to ``saved``; the flat result
    is written into ``out`` when given."""
    t = x.reshape(program.input_shape)
    # the last product may stay strided for the output copy to read (one copy, not two)
    strided_last = program.final_reads_mid and (
        reads_strided(x.shape[0]) or (program.final is None and out is not None)
    )
    last = len(program.kernels) - 1
    for i, kn in enumerate(program.kernels):
        if kn.copy is not None:
            t = kn.copy.forward(t)
        if kn.view_perm is not None:
            t = t.permute(kn.view_perm)
        t3 = t.reshape(kn.view_shape)  # (nb, m, c), a view
        if saved is not None:
            saved.append(t3)
        w = weights[kn.factor].reshape(kn.matrix)
        t = _product(kn, t3, w, strided=strided_last and i == last)
    if not program.padded_out:  # a sub-program: the live tensor, in its layout
        return t
    if out is not None:
        if program.final is not None:
            program.final.into(t, out)
        else:
            out.view(t.shape).copy_(t)
        return out
    if program.final is not None:
        t = program.final.forward(t)
    return t.reshape(-1, program.padded_out)


def run_program(
    program: Program, x: torch.Tensor, weights: Sequence[torch.Tensor], chunked: bool = False
) -> torch.Tensor:
    """Execution with plain ops: ``x`` (tokens, padded_in) → (tokens, padded_out).

    Autograd can run through it (that is what ``torch.compile`` traces). ``chunked=True``
    (inference only) runs cache-sized chunks of tokens and writes in place.
    """
    if not chunked or not program.padded_out:
        return _run(program, x, weights)
    chunks = token_chunks(program, x.shape[0])
    if len(chunks) <= 1:
        return _run(program, x, weights)
    y = x.new_empty((x.shape[0], program.padded_out))
    for z0, z1 in chunks:
        _run(program, x[z0:z1], weights, out=y[z0:z1])
    return y


class PlanFunction(torch.autograd.Function):
    """The plan with a layout-preserving backward pass (``apply(program, x, *weights)``).

    Full programs run in cache-sized chunks of tokens (:func:`token_chunks`), forward and
    backward; the factors' gradients accumulate over chunks in place.
    """

    @staticmethod
    def forward(
        ctx: Any, program: Program, x: torch.Tensor, *weights: torch.Tensor
    ) -> torch.Tensor:
        saved: list[torch.Tensor] = []
        # a sub-program (padded_out == 0) runs whole
        chunks = token_chunks(program, x.shape[0]) if program.padded_out else [(0, 0)]
        if len(chunks) == 1:
            y = _run(program, x, weights, saved)
        else:
            y = x.new_empty((x.shape[0], program.padded_out))
            for z0, z1 in chunks:
                _run(program, x[z0:z1], weights, saved, out=y[z0:z1])
        ctx.program = program
        ctx.x_shape = x.shape
        ctx.chunks = chunks
        ctx.save_for_backward(*saved, *weights)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        program: Program = ctx.program
        n = len(program.kernels)
        chunks: list[tuple[int, int]] = ctx.chunks
        saved = ctx.saved_tensors
        inputs, weights = saved[: n * len(chunks)], saved[n * len(chunks) :]
        grads: list[torch.Tensor | None] = [None] * len(weights)
        need_x = ctx.needs_input_grad[1]
        single = len(chunks) == 1
        gx = None if single or not need_x else gy.new_empty(ctx.x_shape)
        for c, (z0, z1) in enumerate(chunks):
            g_chunk = gy if single else gy[z0:z1]
            out = None if gx is None else gx[z0:z1]
            g = _backward_chunk(
                program, ctx, g_chunk, inputs[c * n : (c + 1) * n], weights, grads, need_x, out
            )
            if need_x and g is not None:
                if single:
                    gx = g.reshape(ctx.x_shape)
                elif g is not out:
                    assert out is not None
                    out.copy_(g.reshape(z1 - z0, -1))
        return (None, gx, *grads)


def _backward_chunk(
    program: Program,
    ctx: Any,
    gy: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    grads: list[torch.Tensor | None],
    need_x: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Backward over one chunk: accumulates into ``grads``; returns the input gradient in
    the input layout (None when not needed), written into ``out`` (the chunk's rows of the
    whole input gradient) when the first step's mirror copy can write it there."""
    n = len(program.kernels)
    last = program.kernels[-1]
    if program.final is not None:
        g = program.final.backward(gy)  # the mirror of the forward's final copy
    else:
        g = gy.contiguous().view(last.out_shape)
    for s in range(n - 1, -1, -1):
        kn, t3 = program.kernels[s], inputs[s]
        w = weights[kn.factor].reshape(kn.matrix)
        nb, m = t3.shape[0], t3.shape[1]
        n_out = kn.matrix[1] if kn.transposed else kn.matrix[2]
        rows, cols = (n_out, m) if kn.transposed else (m, n_out)
        # the output's memory is (nb, rows, cols), or (rows, nb, cols) when mid
        g3 = g.reshape(rows, nb, cols).transpose(0, 1) if kn.out_mid else g.reshape(nb, rows, cols)
        if ctx.needs_input_grad[2 + kn.factor]:
            acc = grads[kn.factor]
            acc3 = None if acc is None else acc.view(kn.matrix)
            if kn.z_batch:  # Σ over tokens: (c, n) or (n, c)
                if kn.transposed:
                    gw = torch.tensordot(g3, t3, dims=([0, 2], [0, 1]))
                else:
                    gw = torch.tensordot(t3, g3, dims=([0, 1], [0, 1]))
                gw = gw.unsqueeze(0) if acc3 is None else acc3.add_(gw)
            else:  # (nb, n, m) @ (nb, m, c), or (nb, c, m) @ (nb, m, n)
                a, b = (g3, t3) if kn.transposed else (t3.transpose(1, 2), g3)
                if m == 1 and acc3 is None:  # outer products: a broadcast multiply
                    gw = torch.mul(a, b, out=a.new_empty(kn.matrix))  # the factor's layout
                else:
                    gw = _bmm(a, b, False, acc3)
            grads[kn.factor] = gw.reshape(weights[kn.factor].shape)
        if s == 0 and not need_x:
            return None
        if kn.z_batch:
            w = w.expand(nb, -1, -1)
        # the input gradient (nb, m, c) = lhs @ rhs, computed in the orientation whose
        # output is closest to the input's layout, then viewed in that layout (strided
        # when the batch sits in the middle: the next product reads it in place if it can,
        # and a reshape copies it otherwise)
        lhs = g3.transpose(1, 2) if kn.transposed else g3  # (nb, m, n)
        rhs = w if kn.transposed else w.transpose(1, 2)  # (nb, n, c)
        if kn.grad_mode in ("bmc", "mbc") or m == 1:  # one row: both orders share memory
            gt = _bmm(lhs, rhs, False)
        else:  # the contracted group before the rows: compute the transpose
            gt = _bmm(rhs.transpose(1, 2), lhs.transpose(1, 2), False)
            gt = gt.transpose(1, 2)
        g = gt.reshape(kn.group_shape)
        if kn.inverse_perm is not None:
            g = g.permute(kn.inverse_perm)
        if kn.copy is not None:
            fuse = s == 0 and reads_strided(gy.shape[0])
            g = kn.copy.backward(g, out if s == 0 else None, strided=fuse)
    return g
