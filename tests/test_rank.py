"""True ranks of realizations: proofs, SVD and bounds, against the SVD of the matrix."""

from __future__ import annotations

import functools
import json
import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from einspace import (
    Realization,
    Structure,
    enumerate_families,
    enumerate_realizations,
    realize_sizes,
)
from einspace.cases import random_k3_realization, random_round_realization
from einspace.cli import app
from einspace.rank import SVD_MAX_ENTRIES, packing_lower_bound, prefix_boxes
from search import score

GREEK = ["α", "β", "γ", "δ", "ε", "φ", "ρ"]


def svd_rank(r: Realization, seed: int = 7) -> int:
    """Independent measurement: numpy's rank of the materialized matrix, another seed."""
    return int(np.linalg.matrix_rank(r.materialize(seed=seed)))


def test_issue_example_output_classes_multiply_to_924() -> None:
    r = Structure.parse("(0.52|0.14|0.34|0.35|0.48|0.17|0.46)").realize(1024, 1024, pad_tol=0.2)
    n = r.sizes
    assert n["δ"] * n["ε"] * n["φ"] == 11 * 28 * 3 == 924 == r.padded_out
    assert r.padded_in == 37 * 3 * 11 == 1221  # x is padded: only 1024 of 1221 columns used
    # the min-cut {δ, ε, φ} is 924; the rank cannot exceed the 924 rows the einsum produces
    assert r.rank_bound == 924
    # 1024 × 1024 is beyond SVD_MAX_ENTRIES: every door reports the bound, which the SVD meets
    assert r.rank == 924 == svd_rank(r)
    assert r.rank_is_bound and r.rank_method == "bound" and not r.full_rank
    assert r.psi_eff == pytest.approx(math.log(924) / math.log(1024))


def test_issue_example_47_to_49_is_not_full_rank() -> None:
    theta = "(0.650038|0.349962|0|0.52242|0.26424|0.21334|0)"
    r = Structure.parse(theta).realize(47, 49)  # default pad_tol = 0.15
    assert r.sizes == {"α": 12, "β": 4, "δ": 8, "ε": 3, "φ": 2}
    assert r.padding == {"input": 1, "output": -1}
    assert r.rank_bound == 47
    assert r.rank == 40 == svd_rank(r)
    assert (r.rank_method, r.full_rank) == ("svd", False)
    row = score([theta], 47, 49).iloc[0]
    assert not row["full_rank"] and row["rank"] == 40 and row["rank_bound"] == 47
    assert row["psi_eff"] == pytest.approx(math.log(40) / math.log(47))
    assert "rank 40 < 47" in row["why"]


def test_exact_k2_realizations_can_fall_below_the_min_cut() -> None:
    """The min-cut is only a bound even for exact k = 2 layers: two stacked Kronecker
    blocks A_φ ⊗ B_φ (row spaces U_φ ⊗ V_φ meet in (U_0 ∩ U_1) ⊗ (V_0 ∩ V_1), of dimension
    (8+8−12)·(3+3−4) = 8) have rank 24 + 24 − 8 = 40; a rank-2 tensor train 15 → 15 has 14."""
    stacked = realize_sizes("xA,xB,Ay,By,ABy", {"α": 12, "β": 4, "δ": 8, "ε": 3, "φ": 2}, 48, 48)
    assert stacked.is_exact and stacked.rank_bound == 48
    assert stacked.rank == 40 == svd_rank(stacked)
    tt = realize_sizes("xA,xB,Ay,By,AB", {"α": 3, "β": 5, "δ": 5, "ε": 3, "ρ": 2}, 15, 15)
    assert tt.rank_bound == 15
    assert tt.rank == 14 == svd_rank(tt)


@pytest.mark.parametrize(
    ("name", "params", "d"),
    [
        ("btt", {"r": 0.25}, 4096),
        ("monarch", {}, 4096),
        ("dense", {}, 4096),
        ("kronecker", {}, 4096),
    ],
)
def test_named_square_layers_are_proven_full_rank_without_svd(
    name: str, params: dict[str, float], d: int
) -> None:
    r = Structure.named(name, **params).realize(d, d)
    assert r.true_rank.method == "proof" and r.rank == d and r.full_rank


def test_packing_bound_hand_values() -> None:
    # Monarch 16 → 16 with 4 × 4 blocks: p = q = 1, fibers = min(4·1·4, 4·4·1, 4·4·1) = 16
    assert int(packing_lower_bound(4, 1, 4, 1, 4, 4, 1)) == 16
    # Kronecker 6×4 ⊗ 3×5 (rows δε, cols αβ): rank(A)·rank(B) = 4·3
    assert int(packing_lower_bound(6, 5, 1, 4, 3, 1, 1)) == 12
    # rank-2 tensor train (3, 2, 2, 3, 2): true rank 6 but a partial permutation reaches 4
    assert int(packing_lower_bound(3, 2, 1, 2, 3, 1, 2)) == 4
    assert prefix_boxes([37, 3, 11], 1024) == [[31, 3, 11], [1, 3, 11], [1, 1, 11]]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=7, max_size=7), st.integers(0, 2**16))
def test_packing_bound_never_exceeds_the_svd_rank(sizes: list[int], seed: int) -> None:
    a, b, g, d, e, f, rho = sizes
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((a, g, d, f, rho))
    B = rng.standard_normal((b, g, e, f, rho))
    w = np.einsum("agdfr,bgefr->defabg", A, B).reshape(d * e * f, a * b * g)
    assert int(packing_lower_bound(a, b, g, d, e, f, rho)) <= np.linalg.matrix_rank(w)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_round_mode_rank_equals_svd_rank(seed: int) -> None:
    """Random round-mode realizations (x padded or truncated, y truncated or zero-filled)."""
    r = random_round_realization(random.Random(seed), max_width=40)
    rep = r.true_rank
    assert not rep.is_bound  # small: proven or measured
    assert rep.rank == svd_rank(r)
    assert rep.lower <= rep.rank <= rep.upper == r.rank_bound <= min(r.d_in, r.d_out)
    assert r.full_rank == (svd_rank(r) == min(r.d_in, r.d_out))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
def test_k3_rank_is_proven_or_bounds_the_svd_rank(seed: int, pad: bool) -> None:
    r = random_k3_realization(random.Random(seed), max_size=3, pad=pad)
    """k = 3 ranks are not measured (einspace.rank.SVD_MAX_FACTORS): proven or the bound."""
    if r.rank_method == "proof":
        assert r.rank == svd_rank(r) == r.rank_bound
    else:
        assert (r.rank, r.rank_method, r.full_rank) == (r.rank_bound, "bound", False)
        assert svd_rank(r) <= r.rank


def test_too_large_to_measure_reports_the_bound_in_words() -> None:
    sizes = {"α": 32, "β": 3, "δ": 24, "ε": 2, "φ": 2}
    small = realize_sizes("xA,xB,Ay,By,ABy", sizes, 96, 96)
    assert 96 * 96 <= SVD_MAX_ENTRIES < 97 * 97 * 2
    assert (small.rank, small.rank_method) == (80, "svd") and small.rank == svd_rank(small)
    big = realize_sizes("xA,xB,Ay,By,ABy", dict(sizes, α=64, δ=48), 192, 192)
    assert big.d_in * big.d_out > SVD_MAX_ENTRIES
    assert (big.rank, big.rank_is_bound, big.rank_method) == (192, True, "bound")
    assert not big.full_rank  # a bound never claims full rank
    assert svd_rank(big) < 192  # …rightly: the SVD finds it below


@pytest.mark.parametrize(("d_in", "d_out"), [(48, 48), (36, 60), (64, 64)])
def test_table_ranks_match_svd(d_in: int, d_out: int) -> None:
    table = enumerate_realizations(d_in, d_out)
    assert not table["rank_is_bound"].any()
    rng = np.random.default_rng(0)
    rows = np.unique(
        np.concatenate(
            [np.flatnonzero(table["rank_method"] == "svd")[:60], rng.choice(len(table), 60)]
        )
    )
    for i in rows:
        row = table.iloc[int(i)]
        sizes = {g: int(row[g]) for g in GREEK if row[g] > 1}
        r = realize_sizes(row["family"], sizes, d_in, d_out)
        assert row["rank"] == r.rank == svd_rank(r)
        assert row["rank_method"] == r.rank_method


def test_table_proves_every_rank_at_powers_of_two() -> None:
    """The partial-permutation lower bound meets the min-cut on every exact k = 2 row."""
    for d_in, d_out in ((256, 256), (1024, 1024), (256, 4096)):
        table = enumerate_realizations(d_in, d_out)
        assert (table["rank_method"] == "proof").all()
        assert (table["rank"] == table["rank_bound"]).all()


# ---------------------------------------------------------------- every door, one rank
DOOR_WIDTHS = [(12, 12), (16, 24), (36, 60), (48, 48), (64, 64), (96, 96), (192, 192)]


@functools.cache
def _table(d_in: int, d_out: int, diagonal: bool) -> pd.DataFrame:
    return enumerate_realizations(d_in, d_out, diagonal=diagonal)


def _doors(row: pd.Series, d_in: int, d_out: int, diagonal: bool) -> Realization:
    """Check one table row against the realization of its sizes, `score([structure])` and
    `score([family])`; returns the realization."""
    fam = enumerate_families(2, diagonal)[int(row["family_id"])]
    r = realize_sizes(fam, [int(row[n]) for n in fam.names], d_in, d_out)
    table_says = (int(row["rank"]), bool(row["rank_is_bound"]), row["rank_method"])
    assert table_says == (r.rank, r.rank_is_bound, r.rank_method)
    by_structure = score([r.structure], d_in, d_out).iloc[0]
    assert by_structure["sizes"] == " ".join(f"{n}={v}" for n, v in r.sizes.items())
    assert (by_structure["rank"], by_structure["rank_is_bound"]) == table_says[:2]
    if d_in * d_out <= 64 * 64:  # every realization of the family: affordable when small
        by_family = score([fam], d_in, d_out)
        match = by_family[by_family["sizes"] == by_structure["sizes"]].iloc[0]
        assert (match["rank"], match["rank_is_bound"]) == table_says[:2]
    return r


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(DOOR_WIDTHS), st.booleans(), st.integers(0, 2**20), st.booleans())
def test_every_door_reports_the_same_rank(
    widths: tuple[int, int], diagonal: bool, pick: int, unproven: bool
) -> None:
    """A table row, the realization of its sizes, score by structure and score by family
    agree; the rank agrees with an SVD of the matrix at another seed where one is taken and
    bounds it where not (every width here is small enough to materialize)."""
    d_in, d_out = widths
    if diagonal and d_in * d_out > 64 * 64:
        d_in = d_out = 48  # keep the diagonal tables small
    table = _table(d_in, d_out, diagonal)
    rows = table[table["rank_method"] != "proof"] if unproven else table
    if rows.empty:
        rows = table
    r = _doors(rows.iloc[pick % len(rows)], d_in, d_out, diagonal)
    if r.rank_method == "bound":
        assert d_in * d_out > SVD_MAX_ENTRIES and svd_rank(r) <= r.rank
    else:
        assert r.rank == svd_rank(r)


def test_the_96_example_is_ranked_alike_by_every_door() -> None:
    """Issue 17: at 96 → 96 the table said 96 (bound) where the realization says 80 (svd)."""
    sizes = {"α": 32, "β": 3, "δ": 24, "ε": 2, "φ": 2}
    r = realize_sizes("xA,xB,Ay,By,ABy", sizes, 96, 96)
    assert (r.rank, r.rank_method) == (80, "svd") and svd_rank(r) == 80
    table = _table(96, 96, False)
    hit = table[(table["family"] == str(r.family)) & (table["α"] == 32) & (table["β"] == 3)]
    hit = hit[(hit["δ"] == 24) & (hit["ε"] == 2) & (hit["φ"] == 2)]
    assert len(hit) == 1 and (int(hit.iloc[0]["rank"]), hit.iloc[0]["rank_method"]) == (80, "svd")
    label = f"{r.family} [α=32 β=3 δ=24 ε=2 φ=2]"
    everything = score("all", 96, 96)
    one = score([r.structure], 96, 96).iloc[0]
    row = everything[everything["candidate"] == label].iloc[0]
    assert (row["rank"], row["full_rank"], row["psi_eff"]) == (
        one["rank"],
        one["full_rank"],
        pytest.approx(one["psi_eff"]),
    )
    assert (one["rank"], one["full_rank"]) == (80, False)
    assert "rank 80 < 96" in row["why"] and "rank 80 < 96" in one["why"]
    shown = json.loads(run_cli("show", str(r.structure), "--d-in", "96", "--format", "json"))
    assert (shown["rank"], shown["rank_method"]) == (80, "svd")


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout
