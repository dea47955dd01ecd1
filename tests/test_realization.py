"""Realizations: exact counts checked against hand integers, opt_einsum, SVD and numel."""

from __future__ import annotations

import math
import random

import numpy as np
import opt_einsum as oe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einspace import EinspaceError, Structure, enumerate_realizations, realize_sizes
from einspace.cases import random_realization
from einspace.realization import Realization as _R


def shapes_for(r: _R, batch: int) -> list[tuple[int, ...]]:
    x = (batch, *(r.class_sizes[p] for p in r.input_positions))
    return [x, *r.factor_shapes]


def step_products(info: oe.contract.PathInfo) -> list[int]:
    """MACs of each pairwise step opt_einsum reports: Π of the sizes of every index in it."""
    out = []
    for step in info.contraction_list:
        operands = step[2].split("->")[0]
        letters = set(operands.replace(",", ""))
        out.append(math.prod(info.size_dict[c] for c in letters))
    return out


def opt_einsum_sequential(r: _R) -> int:
    """Independent sequential count: opt_einsum evaluates x·F1·F2… for every factor order."""
    best = None
    shapes = shapes_for(r, 1)
    for order in __import__("itertools").permutations(range(r.k)):
        # operands: [x, F0, F1, …]; contract x with factor order[0], then the result with the
        # next, … ; opt_einsum appends each result at the end of the list.
        current = list(range(r.k + 1))
        path = []
        for f in order:
            i, j = sorted((current.index(0 if not path else -1), current.index(f + 1)))
            path.append((i, j))
            rest = [c for c in current if c not in (current[i], current[j])]
            current = [*rest, -1]
        _, info = oe.contract_path(r.einsum, *shapes, shapes=True, optimize=path)
        total = sum(step_products(info))
        best = total if best is None else min(best, total)
    assert best is not None
    return best


def check_realization(r: _R, rank_too: bool = True) -> None:
    weights = r.random_weights(seed=1)
    assert r.params == sum(w.size for w in weights)
    assert r.macs("sequential") == opt_einsum_sequential(r)
    for batch in (1, 7):
        p = r.optimal_path(batch)
        _, info = oe.contract_path(
            r.einsum, *shapes_for(r, batch), shapes=True, optimize=list(p.path)
        )
        products = step_products(info)
        assert sum(products) == p.total
        removed = [bool(step[1]) for step in info.contraction_list]
        assert info.opt_cost == sum(
            q * (2 if rm else 1) for q, rm in zip(products, removed, strict=True)
        )
        assert p.total <= batch * r.macs("sequential")
        # opt_einsum's own optimal path never beats ours on MACs
        _, own = oe.contract_path(r.einsum, *shapes_for(r, batch), shapes=True, optimize="optimal")
        assert p.total <= sum(step_products(own))
    dense = r.materialize(weights)
    assert dense.shape == (r.d_out, r.d_in)
    x = np.random.default_rng(2).standard_normal((5, r.d_in))
    xp = np.zeros((5, r.padded_in))
    n = min(r.d_in, r.padded_in)
    xp[:, :n] = x[:, :n]
    y = oe.contract(r.einsum, xp.reshape(shapes_for(r, 5)[0]), *weights).reshape(5, r.padded_out)
    expected = np.zeros((5, r.d_out))
    m = min(r.d_out, r.padded_out)
    expected[:, :m] = y[:, :m]
    np.testing.assert_allclose(x @ dense.T, expected, rtol=1e-10, atol=1e-10)
    if rank_too:
        assert r.numeric_rank(seed=3) <= r.rank_bound
        svals = np.linalg.svd(r.materialize(seed=3), compute_uv=False)
        tol = svals.max() * max(dense.shape) * np.finfo(float).eps
        measured = int((svals > tol).sum())
        if r.rank_is_bound:  # k = 3 or too large to measure: the bound, never claimed full
            assert r.rank_method == "bound" and measured <= r.rank == r.rank_bound
            assert not r.full_rank
        else:
            assert measured == r.rank <= r.rank_bound


def test_every_k2_realization_at_16_is_exact_in_every_count() -> None:
    table = enumerate_realizations(16, 16)
    assert len(table) > 300
    greek = ["α", "β", "γ", "δ", "ε", "φ", "ρ"]
    for row in table.itertuples(index=False):
        sizes = {g: int(getattr(row, g)) for g in greek if getattr(row, g) > 1}
        r = realize_sizes(row.family, sizes, 16, 16)
        assert r.params == row.params
        assert r.macs("sequential") == row.macs_sequential
        assert r.macs("optimal") == row.macs_optimal
        assert r.rank_bound == row.rank_bound
        check_realization(r)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([1, 2, 3]), st.booleans(), st.booleans())
def test_random_realizations(seed: int, k: int, diagonal: bool, pad: bool) -> None:
    r = random_realization(
        random.Random(seed), k=k, diagonal=diagonal and k < 3, max_size=3, pad=pad
    )
    check_realization(r)


def test_k3_numeric_rank_never_exceeds_the_bound() -> None:
    """For k ≥ 3 loops can make the generic rank smaller than the min-cut (docs/theory.md §2), so
    only the inequality is a theorem; both numbers are reported."""
    rng = random.Random(5)
    for _ in range(60):
        r = random_realization(rng, k=3, max_size=3)
        assert r.numeric_rank(seed=0) <= r.rank_bound <= min(r.d_in, r.d_out)


# Hand-computed integers (see docs/theory.md §2): sizes are d^θ with d^(1/2) = 32 or 64,
# 1024^(1/4) = 5.66 → 6 and 4096^(1/4) = 8.
HAND = [
    ("dense", {}, 1024, 1_048_576, 1_048_576, 1024),
    ("low_rank", {"r": 0.5}, 1024, 65_536, 65_536, 32),
    ("kronecker", {}, 1024, 2_048, 65_536, 1024),
    ("tt", {"r": 0.25}, 1024, 12_288, 393_216, 1024),
    ("monarch", {}, 1024, 65_536, 65_536, 1024),
    ("btt", {"r": 0.25}, 1024, 393_216, 393_216, 1024),
    ("dense", {}, 4096, 16_777_216, 16_777_216, 4096),
    ("low_rank", {"r": 0.5}, 4096, 524_288, 524_288, 64),
    ("kronecker", {}, 4096, 8_192, 524_288, 4096),
    ("tt", {"r": 0.25}, 4096, 65_536, 4_194_304, 4096),
    ("monarch", {}, 4096, 524_288, 524_288, 4096),
    ("btt", {"r": 0.25}, 4096, 4_194_304, 4_194_304, 4096),
]


@pytest.mark.parametrize(("name", "params", "d", "n_params", "macs", "rank"), HAND)
def test_hand_computed_counts(
    name: str, params: dict[str, float], d: int, n_params: int, macs: int, rank: int
) -> None:
    r = Structure.named(name, **params).realize(d, d)
    assert r.is_exact
    assert r.params == n_params
    assert r.macs() == macs
    assert r.flops() == 2 * macs
    assert r.rank_bound == rank


def test_effective_exponents_and_fans() -> None:
    r = Structure.named("btt", r=0.25).realize(4096, 4096)
    assert r.nu_eff == pytest.approx(22 / 12 - 1)  # 2 steps × 64³·8 = 2^22 MACs, d = 2^12
    assert r.omega_eff == pytest.approx(0.0)
    assert r.psi_eff == pytest.approx(1.0)
    assert r.fans == ((64, 512), (512, 64))  # A: n_α → n_φ·n_ρ; B: n_γ·n_ρ → n_ε
    k = Structure.named("kronecker").realize(4096, 4096)
    assert k.omega_eff == pytest.approx(0.5)
    lr = Structure.named("low_rank", r=0.5).realize(4096, 4096)
    assert lr.psi_eff == pytest.approx(0.5)
    assert lr.fans == ((4096, 64), (64, 4096))


def test_optimal_batch_amortizes_weight_steps() -> None:
    r = realize_sizes("xA,By,AB", {"α": 4, "ε": 4, "ρ": 8}, 4, 4)
    assert r.macs("sequential") == 64
    # batch 1: x·A (32) then ·B (32); a weight-first path would cost 128 + 16
    assert r.macs("optimal", 1) == 64
    # batch 100: A·B once (4·8·4 = 128) + 100 × 16 → 17.28 per vector
    assert r.macs("optimal", 100) == pytest.approx(17.28)


def test_exact_mode() -> None:
    r = Structure.named("btt", r=0.25).realize(1000, 1000, mode="exact")
    assert r.is_exact and r.padded_in == 1000
    assert sorted([r.sizes["α"], r.sizes["γ"]]) == [25, 40]
    rect = Structure.named("monarch").realize(512, 2048, mode="exact")
    assert (rect.padded_in, rect.padded_out) == (512, 2048)
    bd = Structure.named("block_diagonal").realize(64, 256, mode="exact")
    assert bd.padded_in == 64 and bd.padded_out == 256 and bd.sizes["xAy"] == 8
    with pytest.raises(EinspaceError, match=r"d_in = 1021 has 1 prime factor.*1020, 1022"):
        Structure.named("monarch").realize(1021, 1024, mode="exact")


def test_round_mode_pads_and_truncates_within_tolerance() -> None:
    r = Structure.named("btt", r=0.25).realize(1000, 1000)
    assert r.padding == {"input": 24, "output": 24}
    assert r.materialize().shape == (1000, 1000)
    with pytest.raises(EinspaceError, match=r"3 × 3 = 9 for d_in = 12: 25.0% truncation.*width 9"):
        Structure.named("kronecker").realize(12, 12)
    assert Structure.named("kronecker").realize(12, 12, pad_tol=0.3).padding["input"] == -3


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (0, r"d_in = 0 must be a width ≥ 1; the nearest valid value is d_in = 1$"),
        (-4, r"d_in = -4 must be a width ≥ 1; the nearest valid value is d_in = 1$"),
        (1.5, r"d_in = 1.5 must be a width ≥ 1; e.g. d_in = 1024"),
        ("64", r"d_in = '64' must be a width ≥ 1; e.g. d_in = 1024"),
        (True, r"d_in = True must be a width ≥ 1; e.g. d_in = 1024"),
        (math.nan, r"d_in = nan must be a width ≥ 1; e.g. d_in = 1024"),
    ],
)
def test_bad_widths(d: object, message: str) -> None:
    with pytest.raises(EinspaceError, match=message):
        Structure.named("btt").realize(d, 64)  # type: ignore[arg-type]


def test_bad_modes_and_sizes() -> None:
    s = Structure.named("btt")
    with pytest.raises(EinspaceError, match="mode = 'exactly'; expected 'round' or 'exact'"):
        s.realize(64, 64, mode="exactly")  # type: ignore[arg-type]
    with pytest.raises(EinspaceError, match=r"pad_tol = 2 must be a number in \[0, 1\)"):
        s.realize(64, 64, pad_tol=2)
    with pytest.raises(EinspaceError, match="order = 'best'"):
        s.realize(64, 64).macs("best")  # type: ignore[arg-type]
    with pytest.raises(EinspaceError, match="'ζ', which is not a class"):
        realize_sizes("xA,xB,Ay,By", {"ζ": 2}, 4, 4)
    with pytest.raises(EinspaceError, match="factor A has shape"):
        s.realize(64, 64).materialize([np.zeros(3), np.zeros(3)])
