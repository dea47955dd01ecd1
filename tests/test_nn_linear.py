"""EinsumLinear: forward and gradients against the materialized matrix, counts, padding,
bad input, state_dict / pickle round trips, repr and torch.compile."""

from __future__ import annotations

import contextlib
import io
import pickle
import random
import re
from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einspace import EinspaceError, Realization, Structure, realize_sizes
from einspace.cases import random_realization
from einspace.family import Family
from einspace.index_classes import universe
from einspace.nn import EinsumLinear
from einspace.nn.execute import prefers_dense

NAMED = [
    "dense",
    "low_rank:r=0.5",
    "kronecker",
    "tt:r=0.25",
    "monarch",
    "btt:r=0.25",
    "block_diagonal",
]


def wide_realization(seed: int) -> Realization:
    """Random realizations beyond einspace.cases: k = 3 with block-diagonal classes (by
    rejection sampling; enumerating that space takes minutes), size-1 classes, padding."""
    rng = random.Random(seed)
    if rng.random() < 0.5:
        k = rng.choice((1, 2, 3))  # k = 3 block-diagonal families come from the branch below
        diagonal = k < 3 and rng.random() < 0.5
        r = random_realization(rng, k=k, diagonal=diagonal, max_size=3, pad=True)
        fam, sizes = r.family, list(r.class_sizes)
    else:
        k = rng.choice((2, 3))
        while True:
            fam = Family(k, tuple(m for m in universe(k, True) if rng.random() < 0.3) or (12,))
            if fam.is_valid:
                break
        sizes = [rng.randint(2, 3) for _ in fam.classes]
    for i in range(len(sizes)):  # size-1 classes are legal and must be dropped by the plan
        if rng.random() < 0.15:
            sizes[i] = 1
    probe = realize_sizes(fam, sizes, 1, 1)
    d_in = max(1, probe.padded_in + rng.randint(-(probe.padded_in // 4), probe.padded_in // 4))
    d_out = max(1, probe.padded_out + rng.randint(-(probe.padded_out // 4), probe.padded_out // 4))
    return realize_sizes(fam, sizes, d_in, d_out)


def randomized(layer: EinsumLinear, seed: int = 0) -> EinsumLinear:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


def check_against_dense(layer: EinsumLinear, rtol: float) -> None:
    """Forward = x Wᵀ + b and every gradient = the dense layer's, W from the core."""
    dtype = layer.factors[0].dtype
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, layer.d_in, generator=g, dtype=dtype, requires_grad=True)
    y = layer(x)
    assert y.shape == (3, 2, layer.d_out)
    w_core = layer.realization.materialize(
        [f.detach().double().numpy() for f in layer.core_factors()]
    )
    w = layer.materialize()
    np.testing.assert_allclose(w.detach().double().numpy(), w_core, rtol=rtol, atol=rtol)
    bias = layer.bias if layer.bias is not None else torch.zeros((), dtype=dtype)
    ref = x @ w.T + bias
    scale = max(1.0, float(ref.detach().abs().max()))
    torch.testing.assert_close(y, ref, rtol=rtol, atol=rtol * scale)
    gy = torch.randn(y.shape, generator=g, dtype=dtype)
    params = [x, *layer.parameters()]
    got = torch.autograd.grad(y, params, gy)
    want = torch.autograd.grad(ref, params, gy)
    for a, b in zip(got, want, strict=True):
        s = max(1.0, float(b.abs().max()))
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * s)


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize(("d_in", "d_out"), [(64, 64), (60, 70), (72, 50)])
def test_named_against_dense(name: str, d_in: int, d_out: int) -> None:
    """A layer that fails to build is a failure; only a structure the core cannot realize at
    these widths may be refused, and then with the core's own reason."""
    try:
        Structure.parse(name).realize(d_in, d_out, pad_tol=0.3)
    except EinspaceError as err:
        with pytest.raises(EinspaceError, match=re.escape(str(err).split(";")[0])):
            EinsumLinear(d_in, d_out, name, dtype=torch.float64, pad_tol=0.3)
        return
    layer = EinsumLinear(d_in, d_out, name, dtype=torch.float64, pad_tol=0.3)
    check_against_dense(randomized(layer), 1e-10)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_random_structures_against_dense(seed: int, dtype: torch.dtype) -> None:
    r = wide_realization(seed)
    layer = randomized(EinsumLinear(r.d_in, r.d_out, r, dtype=dtype), seed)
    for path in ("plan", "dense"):  # both execution paths, whichever the rule would pick
        with forced_path(path):
            check_against_dense(layer, 1e-10 if dtype == torch.float64 else 2e-4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6))
def test_one_token_against_dense(seed: int) -> None:
    """One token: products flip to vector × matrix and factor gradients are broadcast
    outer products; values and gradients still equal the dense layer's."""
    r = wide_realization(seed)
    layer = randomized(EinsumLinear(r.d_in, r.d_out, r, dtype=torch.float64), seed)
    x = torch.randn(1, r.d_in, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    check_against_dense_batch(layer, x)


@contextlib.contextmanager
def forced_path(path: str) -> Iterator[None]:
    """Make EinsumLinear run its plan, or its dense path wherever it has one."""
    if path == "plan":
        rule = lambda program, tokens: False  # noqa: E731
    else:
        rule = lambda program, tokens: program.dense_equation is not None  # noqa: E731
    with mock.patch("einspace.nn.linear.prefers_dense", rule):
        yield


def test_dense_path_is_chosen_for_small_blocks() -> None:
    """Small blocks and many rows take one GEMM (exact gradients, float64 gradcheck)."""
    layer = randomized(EinsumLinear(60, 70, "btt:r=0.25", dtype=torch.float64, pad_tol=0.3))
    assert prefers_dense(layer._program, 128) and not prefers_dense(layer._program, 2)
    check_against_dense_batch(layer, torch.randn(128, 60, dtype=torch.float64))
    x = torch.randn(80, 60, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    assert not prefers_dense(EinsumLinear(1024, 1024, "monarch")._program, 4096)
    assert not prefers_dense(EinsumLinear(64, 64, "low_rank:r=0.5")._program, 4096)  # GEMMs
    # a class shared by input and output (block diagonal) has no dense path
    assert EinsumLinear(64, 64, "block_diagonal")._program.dense_equation is None


@pytest.mark.parametrize("name", ["monarch", "btt:r=0.25", "kronecker", "low_rank:r=0.5"])
@pytest.mark.parametrize("tokens", [3, 300])  # the plan, and the dense path where it wins
def test_autocast_bf16(name: str, tokens: int) -> None:
    torch.manual_seed(0)
    layer = randomized(EinsumLinear(60, 72, name, pad_tol=0.3))
    x = torch.randn(tokens, 60)
    want = layer(x)
    g32 = torch.autograd.grad(want.square().sum(), list(layer.parameters()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
        ref = F.linear(x, layer.materialize().detach(), layer.bias.detach())  # nn.Linear's way
    assert got.dtype == ref.dtype == torch.bfloat16
    scale = float(want.detach().abs().max())
    torch.testing.assert_close(got.float(), want.detach(), rtol=0.05, atol=0.03 * scale)
    grads = torch.autograd.grad(got.float().square().sum(), list(layer.parameters()))
    for g, g_ref, p in zip(grads, g32, layer.parameters(), strict=True):
        assert g.dtype == p.dtype == torch.float32  # gradients reach the fp32 parameters
        s = float(g_ref.abs().max())
        torch.testing.assert_close(g, g_ref, rtol=0.1, atol=0.06 * s)


def test_autocast_off_inside_and_dtype_mismatch() -> None:
    layer = EinsumLinear(64, 64, "monarch")
    with pytest.raises(EinspaceError, match=r"dtype torch.float64 .* torch.float32; cast"):
        layer(torch.randn(3, 64, dtype=torch.float64))
    with pytest.raises(EinspaceError, match=r"dtype torch\.int64"):
        layer(torch.ones(3, 64, dtype=torch.int64))
    # a bf16 input to an fp32 layer under autocast is fine, and so is a bf16 layer
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(3, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16
    half = EinsumLinear(64, 64, "monarch", dtype=torch.bfloat16)
    assert half(torch.randn(3, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_plan_counts_match_core() -> None:
    for seed in range(40):
        r = wide_realization(seed)
        layer = EinsumLinear(r.d_in, r.d_out, r)
        assert layer.plan.macs == r.macs() == layer.macs()
        assert layer.params == r.params == sum(f.numel() for f in layer.factors)
        total = sum(p.numel() for p in layer.parameters())
        assert total == layer.params + layer.bias_params


def test_counts_by_hand() -> None:
    # BTT at 1024, r = 1/4: α = γ = ε = φ = 32, ρ = 6; each factor 32³·6 = 196608
    layer = EinsumLinear(1024, 1024, "btt:r=0.25")
    assert layer.params == 2 * 196608 == 393216
    assert layer.macs() == 393216 and layer.bias_params == 1024
    assert sum(p.numel() for p in layer.parameters()) == 393216 + 1024
    # low rank 256 → 512, r = 1/2: rank 16, params 256·16 + 512·16 = 12288 = MACs
    lr = EinsumLinear(256, 512, "low_rank:r=0.5", bias=False)
    assert (lr.params, lr.macs(), lr.bias_params) == (12288, 12288, 0)
    # Kronecker 256: two 16×16 factors, MACs 2·16³ = 8192 per token
    kr = EinsumLinear(256, 256, "kronecker")
    assert (kr.params, kr.macs(), kr.macs(order="optimal", batch=4)) == (512, 8192, 8192)


def test_structure_forms_agree() -> None:
    s = Structure.named("monarch")
    r = s.realize(64, 64)
    a = EinsumLinear(64, 64, "monarch")
    b = EinsumLinear(64, 64, s)
    c = EinsumLinear(64, 64, r)
    assert a.realization == b.realization == c.realization
    with pytest.raises(EinspaceError, match="the realization given is for"):
        EinsumLinear(64, 32, r)
    with pytest.raises(EinspaceError, match="expected a Structure"):
        EinsumLinear(64, 64, 3)  # type: ignore[arg-type]


def test_padding_and_truncation_semantics() -> None:
    # d_in = 60 pads x to 64; d_out = 70 truncates the 64·… outputs or pads with zeros
    layer = randomized(EinsumLinear(60, 70, "kronecker", dtype=torch.float64, bias=False))
    assert layer.realization.padding == {"input": 4, "output": -6}
    w = layer.materialize()
    assert torch.all(w[64:] == 0)  # appended zero outputs
    x = torch.randn(4, 60, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ w.T)


def test_bad_input_errors() -> None:
    with pytest.raises(EinspaceError, match=r"truncation, above pad_tol = 0\.15"):
        EinsumLinear(100, 64, "block_diagonal")
    layer = EinsumLinear(64, 64, "btt:r=0.25")
    with pytest.raises(EinspaceError, match="expected the last dimension to be d_in = 64"):
        layer(torch.randn(3, 65))
    with pytest.raises(EinspaceError, match="unknown structure name"):
        EinsumLinear(64, 64, "bt")
    with pytest.raises(EinspaceError, match="factor A has shape"):
        layer.load_core_factors([np.zeros((2, 2)), np.zeros((2, 2))])


def test_core_factor_round_trip() -> None:
    layer = EinsumLinear(64, 48, "btt:r=0.25", dtype=torch.float64)
    ws = layer.realization.random_weights(seed=3)
    layer.load_core_factors(ws)
    for a, b in zip(layer.core_factors(), ws, strict=True):
        np.testing.assert_array_equal(a.detach().numpy(), b)
    np.testing.assert_allclose(
        layer.materialize().detach().numpy(), layer.realization.materialize(ws), atol=1e-12
    )


def test_state_dict_and_pickle_round_trip() -> None:
    layer = randomized(EinsumLinear(60, 40, "tt:r=0.25", normalize=True))
    x = torch.randn(5, 60)
    y = layer(x)
    fresh = EinsumLinear(60, 40, "tt:r=0.25", normalize=True)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), y)
    # the state holds the factors in the core's axis order, whatever the storage layout
    state = layer.state_dict()
    shapes = [tuple(state[f"factors.{i}"].shape) for i in range(layer.k)]
    assert shapes == list(layer.realization.factor_shapes)
    for i, f in enumerate(layer.core_factors()):
        torch.testing.assert_close(state[f"factors.{i}"], f.detach())
    clone = pickle.loads(pickle.dumps(layer))
    torch.testing.assert_close(clone(x), y)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    torch.testing.assert_close(torch.load(buf, weights_only=False)(x), y)


def test_repr_echoes_constructor() -> None:
    assert repr(EinsumLinear(64, 32, "btt:r=0.25")) == (
        "EinsumLinear(d_in=64, d_out=32, structure='btt:r=0.25')"
    )
    layer = EinsumLinear(64, 64, "monarch", bias=False, zero_init=True, dtype=torch.float64)
    assert repr(layer) == (
        "EinsumLinear(d_in=64, d_out=64, structure='monarch', bias=False, zero_init=True, "
        "dtype=torch.float64)"
    )
    r = realize_sizes("xA,By,AB", (8, 8, 2), 8, 8)
    text = repr(EinsumLinear(8, 8, r))
    assert (
        eval(text, {"EinsumLinear": EinsumLinear, "realize_sizes": realize_sizes}).realization == r
    )


def test_leading_dims_and_empty_batch() -> None:
    layer = EinsumLinear(64, 32, "monarch")
    assert layer(torch.randn(64)).shape == (32,)
    assert layer(torch.randn(2, 3, 4, 64)).shape == (2, 3, 4, 32)
    assert layer(torch.randn(0, 64)).shape == (0, 32)


def test_no_grad_path_matches_training_path() -> None:
    layer = randomized(EinsumLinear(64, 64, "btt:r=0.25"))
    x = torch.randn(7, 64)
    with torch.no_grad():
        y0 = layer(x)
    torch.testing.assert_close(layer(x), y0)


def test_gradcheck_float64() -> None:
    layer = randomized(EinsumLinear(12, 10, "btt:r=0.3", dtype=torch.float64, pad_tol=0.5))
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize(
    ("structure", "rows"),
    [("btt:r=0.25", 5), ("monarch", 3), ("btt:r=0.25", 4096)],  # the last: the dense path
)
def test_torch_compile_fullgraph(structure: str, rows: int) -> None:
    """``torch.compile(layer, fullgraph=True)`` traces the layer with no graph break and
    gives eager's outputs and gradients (input, factors, bias). The default backend runs
    the traced graph without a C++ compiler; ``EINSPACE_TEST_INDUCTOR=1`` uses inductor."""
    import os

    backend = "inductor" if os.environ.get("EINSPACE_TEST_INDUCTOR") else "aot_eager"
    torch._dynamo.reset()
    layer = randomized(EinsumLinear(64, 48, structure, bias=True))
    if rows == 4096:
        assert prefers_dense(layer._program, rows)
    else:
        assert not prefers_dense(layer._program, rows)
    x = torch.randn(rows, 64, requires_grad=True)
    gy = torch.randn(rows, 48)
    compiled = torch.compile(layer, backend=backend, fullgraph=True)
    params = [x, *layer.parameters()]
    y = compiled(x)
    got = torch.autograd.grad(y, params, gy)
    y_eager = layer(x)
    want = torch.autograd.grad(y_eager, params, gy)
    torch.testing.assert_close(y, y_eager)
    for g, w in zip(got, want, strict=True):  # inductor may sum 4096 rows in another order
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-3)


def test_from_dense_layer() -> None:
    r = Structure.named("btt", r=0.25).realize(64, 64)
    w = torch.tensor(r.materialize(seed=4))
    b = torch.randn(64, dtype=torch.float64)
    layer, err = EinsumLinear.from_dense(w, "btt:r=0.25", bias=b)
    assert err < 1e-10 and layer.factors[0].dtype == torch.float64
    torch.testing.assert_close(layer.bias, b)
    assert float(torch.linalg.norm(layer.materialize().detach() - w)) < 1e-9


@pytest.mark.parametrize("seed", range(12))
def test_token_chunks(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward and backward in several token chunks (gradients accumulate over chunks)."""
    import einspace.nn.execute as execute

    monkeypatch.setattr(execute, "LIVE_BUDGET", 1)  # 64 tokens per chunk
    monkeypatch.setattr(execute, "_worth_chunking", lambda plan: True)
    r = wide_realization(1000 + seed) if seed else Structure.named("btt").realize(64, 64)
    layer = randomized(EinsumLinear(r.d_in, r.d_out, r, dtype=torch.float64), seed)
    x = torch.randn(150, r.d_in, dtype=torch.float64)
    assert len(execute.token_chunks(layer._program, 150)) == 3
    check_against_dense_batch(layer, x)


def check_against_dense_batch(layer: EinsumLinear, x: torch.Tensor) -> None:
    x = x.clone().requires_grad_(True)
    w = layer.materialize()
    ref = x @ w.T + (layer.bias if layer.bias is not None else 0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref.detach())
    y = layer(x)
    torch.testing.assert_close(y, ref)
    gy = torch.randn_like(y)
    params = [x, *layer.parameters()]
    for a, b in zip(
        torch.autograd.grad(y, params, gy), torch.autograd.grad(ref, params, gy), strict=True
    ):
        torch.testing.assert_close(a, b)


@given(tokens=st.integers(1, 5000), n=st.integers(1, 40))
@settings(max_examples=200, deadline=None)
def test_chunk_sizes(tokens: int, n: int) -> None:
    """Balanced sizes summing to the tokens, at most one (the last) a multiple of 4."""
    from einspace.nn.execute import chunk_sizes

    n = min(n, tokens)
    sizes = chunk_sizes(tokens, n)
    assert len(sizes) == n and sum(sizes) == tokens and min(sizes) >= 1
    assert all(abs(k - tokens / n) <= 4 for k in sizes)
    assert all(k % 4 for k in sizes[:-1])
    if n > 1 and tokens // n >= 4:
        assert sizes[-1] % 4, sizes


@pytest.mark.parametrize("name", ["monarch", "btt:r=0.25"])
@pytest.mark.parametrize("tokens", [7, 64, 150, 256])
def test_strided_output_copies(name: str, tokens: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks off multiples of 4 let the output copy read the last product (written with
    its batch in the middle) in place, and the input gradient's mirror copy read the
    strided gradient in place; a chunk of a multiple of 4 keeps the row move. Output and
    every gradient against a plain einsum of the core factors, on the plan itself."""
    import einspace.nn.execute as execute
    from einspace.nn.execute import PlanFunction, reads_strided, token_chunks

    layer = randomized(EinsumLinear(64, 64, name, bias=False, dtype=torch.float64), tokens)
    program, r = layer._program, layer.realization
    monkeypatch.setattr(execute, "LIVE_BUDGET", 128 * program.max_live)  # 128 per chunk
    assert program.final_reads_mid  # the paths under test run
    chunks = token_chunks(program, tokens)
    expected = {7: [(0, 7)], 64: [(0, 64)], 150: [(0, 75), (75, 150)]}
    assert chunks == expected.get(tokens, [(0, 129), (129, 256)])
    assert [reads_strided(b - a) for a, b in chunks] == [tokens != 64] * len(chunks)
    x = torch.randn(tokens, 64, dtype=torch.float64, requires_grad=True)
    y = PlanFunction.apply(program, x, *layer.factors)
    sizes = r.sizes
    x3 = x.reshape(tokens, sizes["α"], sizes["γ"])
    ref = torch.einsum(r.einsum, x3, *layer.core_factors()).reshape(tokens, 64)
    torch.testing.assert_close(y, ref)
    gy = torch.randn_like(y)
    params = [x, *layer.factors]
    for a, b in zip(
        torch.autograd.grad(y, params, gy), torch.autograd.grad(ref, params, gy), strict=True
    ):
        torch.testing.assert_close(a, b)
