"""Execution plans: MACs equal the core's, copies for named structures, layouts and
the table."""

from __future__ import annotations

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
    ("monarch", 2),  # x in and y out (2D transposes); bmm reads the middle in place
    ("btt:r=0.25", 2),
    ("block_diagonal", 2),
]


@pytest.mark.parametrize(("name", "copies"), COPIES)
def test_named_plans(name: str, copies: int) -> None:
    r = Structure.parse(name).realize(1024, 1024)
    plan = ExecutionPlan.compile(r)
    assert plan.copies == copies
    assert plan.macs == r.macs()
    assert sum(s.macs for s in plan.steps) == r.macs()
    assert sorted(s.factor for s in plan.steps) == list(range(r.k))
    for s in plan.steps:
        nb, a, b = s.weight_matrix
        assert nb * a * b == r.params // r.k or r.k == 1 or nb * a * b > 0


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


def test_size_one_classes_are_dropped() -> None:
    from einspace import Realization

    r = Realization.from_sizes("xA,xAB,By,ABy,AB", (4, 4, 4, 4, 1), 16, 16)
    plan = ExecutionPlan.compile(r)
    assert all(4 not in s.layout_in and 4 not in s.layout_out for s in plan.steps)
    assert all(4 in s.weight_axes for s in plan.steps)


def test_describe() -> None:
    r = Structure.named("btt", r=0.25).realize(1024, 1024)
    text = ExecutionPlan.compile(r).describe(r.family.names)
    assert "final copy: yes; copied elements per token: 2048" in text
    assert text.splitlines()[1].split()[:2] == ["1", "A"]


def _op_counts(fn: Callable[[], object]) -> dict[str, int]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages()}


@pytest.mark.parametrize(("name", "copies"), [("monarch", 4), ("btt:r=0.25", 5)])
@pytest.mark.parametrize("tokens", [1, 64])
def test_training_step_copies(name: str, copies: int, tokens: int) -> None:
    """Counted, not timed: a forward + backward pass copies the live tensor only where
    BLAS cannot read it (x in, y out, and their mirrors; BTT's backward also regroups
    (ρ, φ)), and torch's bmm never clones matrices one by one (it did with one token)."""
    layer = EinsumLinear(1024, 1024, name, bias=False)
    assert layer.plan.copies == 2
    x = torch.randn(tokens, 1024, requires_grad=True)
    gy = torch.randn(tokens, 1024)

    def step() -> None:
        layer(x).backward(gy)

    step()
    ops = _op_counts(step)
    assert ops.get("aten::bmm", 0) + ops.get("aten::mm", 0) == 6
    # a one-token step also makes its few size-1 strides BLAS-ready (tiny copies)
    assert ops.get("aten::copy_", 0) <= copies + (4 if tokens == 1 else 0)
