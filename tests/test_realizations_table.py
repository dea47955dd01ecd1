"""The vectorized realization table against per-row Realization objects and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from einspace import (
    EinspaceError,
    enumerate_families,
    enumerate_realizations,
    realize_sizes,
)
from einspace.index_classes import X, Y, permute_class
from einspace.sizing import divisors


def brute_force_count(d_in: int, d_out: int) -> int:
    """Orbits of exact size vectors per family, by enumerating every size tuple."""
    total = 0
    for fam in enumerate_families(2):
        choices = []
        for m in fam.classes:
            ref = d_in if m & X else d_out if m & Y else min(d_in, d_out)
            choices.append([v for v in divisors(ref) if v >= 2])
        seen = set()
        autos = fam.automorphisms()
        for sizes in itertools.product(*choices):
            p_in = math.prod(s for s, m in zip(sizes, fam.classes, strict=True) if m & X)
            p_out = math.prod(s for s, m in zip(sizes, fam.classes, strict=True) if m & Y)
            if p_in != d_in or p_out != d_out:
                continue
            orbit = []
            for perm in autos:
                image = [0] * len(sizes)
                for pos, m in enumerate(fam.classes):
                    image[fam.classes.index(permute_class(m, perm))] = sizes[pos]
                orbit.append(tuple(image))
            seen.add(max(orbit))
        total += len(seen)
    return total


@pytest.mark.parametrize(("d_in", "d_out"), [(16, 16), (8, 32), (12, 18)])
def test_row_count_matches_brute_force(d_in: int, d_out: int) -> None:
    assert len(enumerate_realizations(d_in, d_out)) == brute_force_count(d_in, d_out)


def test_rows_match_realization_objects() -> None:
    table = enumerate_realizations(256, 64)
    rng = np.random.default_rng(0)
    greek = ["α", "β", "γ", "δ", "ε", "φ", "ρ"]
    for i in rng.choice(len(table), 150, replace=False):
        row = table.iloc[int(i)]
        sizes = {g: int(row[g]) for g in greek if row[g] > 1}
        r = realize_sizes(row["family"], sizes, 256, 64)
        assert r.is_exact
        assert r.params == row["params"]
        assert r.macs("sequential") == row["macs_sequential"]
        assert r.macs("optimal") == row["macs_optimal"]
        assert r.rank_bound == row["rank_bound"]
        assert (r.rank, r.rank_is_bound, r.rank_method) == (
            row["rank"],
            row["rank_is_bound"],
            row["rank_method"],
        )
        assert r.nu_eff == pytest.approx(row["nu_eff"])
        assert r.omega_eff == pytest.approx(row["omega_eff"])
        assert r.psi_eff == pytest.approx(row["psi_eff"])
        assert r.degenerate == row["degenerate"]
        assert r.family.name == (row["name"] if isinstance(row["name"], str) else None)


def test_k3_and_extended_tables() -> None:
    t3 = enumerate_realizations(4, 8, k=3)
    assert set(t3["family_id"]) <= set(range(len(enumerate_families(3))))
    row = t3.iloc[len(t3) // 2]
    fam = enumerate_families(3)[int(row["family_id"])]
    sizes = [int(row[t]) for t in fam.tokens]
    r = realize_sizes(fam, sizes, 4, 8)
    assert (r.params, r.macs(), r.rank_bound) == (
        row["params"],
        row["macs_sequential"],
        row["rank_bound"],
    )
    ext = enumerate_realizations(16, 16, diagonal=True)
    assert ext["xAy"].max() > 1  # block-diagonal classes appear


def test_prime_width_keeps_single_class_sides_only() -> None:
    table = enumerate_realizations(7, 7)
    assert set(table["name"].dropna()) == {"low_rank"}
    with pytest.raises(EinspaceError, match="no exact realization exists at d_in = 1"):
        enumerate_realizations(1, 1)
