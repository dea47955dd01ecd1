"""Execution plans: MACs equal the core's, copies for named structures, layouts and
the table."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from einspace import Structure
from einspace.nn import EinsumLinear
from einspace.plan import ExecutionPlan, Z

# (structure, copies of the live tensor per forward pass) at 1024 × 1024
COPIES = [
    ("dense", 0),
    ("low_rank:r=0.5", 0),  # two plain GEMMs
    ("kronecker", 0),  # per token Aᵀ(δ, α) @ x_z(α, β), then one GEMM over β
    ("tt:r=0.25", 0),  # one GEMM over β, then per token A (δ, αρ) @ (αρ, ε)
    # x in and y out as batches of small tile transposes, plus a row move after the last
    # product (its batch in the middle); bmm reads the rest in place
    ("monarch", 3),
    ("btt:r=0.25", 3),
    ("block_diagonal", 3),
]


@pytest.mark.parametrize(("name", "copies"), COPIES)
def test_named_plans(name: str, copies: int) -> None:
    r = Structure.parse(name).realize(1024, 1024)
    plan = ExecutionPlan.compile(r)
    assert plan.copies == copies
    assert plan.macs == r.macs()
    assert sum(s.macs for s in plan.steps) == r.macs()
    assert sorted(s.factor for s in plan.steps) == list(range(r.k))
    for s in plan.steps:  # each step's weight matrix holds exactly its factor's entries
        nb, a, b = s.weight_matrix
        assert nb * a * b == math.prod(r.factor_shapes[s.factor])
    assert sum(math.prod(s.weight_matrix) for s in plan.steps) == r.params


def test_btt_layout() -> None:
    r = Structure.named("btt", r=0.25).realize(1024, 1024)  # α γ ε φ ρ = 0 1 2 3 4
    plan = ExecutionPlan.compile(r)
    first, second = plan.steps
    assert (first.factor, first.batch, first.contracted) == (0, (1,), (0,))
    assert (second.factor, second.batch, second.contracted) == (1, (3,), (1, 4))
    assert not second.copy  # bmm reads step 1's output with φ as the batch, in place
    assert plan.input_layout == (Z, 0, 1) and plan.output_layout == (Z, 2, 3)
    # stored factors hold every class of the factor
    assert sorted(first.weight_axes) == [0, 1, 3, 4] and sorted(second.weight_axes) == [1, 2, 3, 4]


def test_copies_are_tile_transposes() -> None:
    """The input is copied (z, α, γ) → (z, γ, α): one small (α, γ) tile per token, which
    stays in cache, instead of one (z·α, γ) → (γ, z·α) transpose (measured ~3× slower);
    the first bmm then reads γ as its batch from the middle of the layout."""
    r = Structure.named("monarch").realize(4096, 4096)  # α γ ε φ = 0 1 2 3
    first, second = ExecutionPlan.compile(r).steps
    assert first.copy and first.layout_in == (Z, 1, 0) and first.batch == (1,)
    assert second.out_mid and second.layout_out == (Z, 3, 2)  # then (z, φ, ε) → (z, ε, φ)


def test_size_one_classes_are_dropped() -> None:
    from einspace import realize_sizes

    r = realize_sizes("xA,xAB,By,ABy,AB", (4, 4, 4, 4, 1), 16, 16)
    plan = ExecutionPlan.compile(r)
    assert all(4 not in s.layout_in and 4 not in s.layout_out for s in plan.steps)
    assert all(4 in s.weight_axes for s in plan.steps)


def test_describe() -> None:
    r = Structure.named("btt", r=0.25).realize(1024, 1024)
    text = ExecutionPlan.compile(r).describe(r.family.names)
    assert "final copy: yes; copied elements per token: 3072" in text  # in, mid, out
    assert text.splitlines()[1].split()[:2] == ["1", "A"]


def _op_counts(fn: Callable[[], object]) -> dict[str, int]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages()}


@pytest.mark.parametrize(("name", "copies"), [("monarch", 6), ("btt:r=0.25", 7)])
@pytest.mark.parametrize("tokens", [1, 64])
def test_training_step_copies(name: str, copies: int, tokens: int) -> None:
    """Counted, not timed: a forward + backward pass copies the live tensor only where
    BLAS cannot read it (x in, the row move after the last product, y out, and their
    mirrors; BTT's backward also regroups (ρ, φ)), and torch's bmm never clones matrices one
    by one (it did with one token)."""
    layer = EinsumLinear(1024, 1024, name, bias=False)
    assert layer.plan.copies == 3
    x = torch.randn(tokens, 1024, requires_grad=True)
    gy = torch.randn(tokens, 1024)

    def step() -> None:
        layer(x).backward(gy)

    step()
    ops = _op_counts(step)
    products = ops.get("aten::bmm", 0) + ops.get("aten::mm", 0)
    # with one token the factors' gradients are outer products: broadcast multiplies
    assert products + (ops.get("aten::mul", 0) if tokens == 1 else 0) == 6
    # a one-token step also makes its few size-1 strides BLAS-ready (tiny copies)
    assert ops.get("aten::copy_", 0) <= copies + (4 if tokens == 1 else 0)
