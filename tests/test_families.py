"""Family enumeration: counts, validity rules and canonical forms, checked two ways."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import numpy as np
import pytest

from einspace import EinspaceError, Family, enumerate_families, sample_families
from einspace.enumeration import _valid, count_families
from einspace.index_classes import X, Y, factor_bit, universe

TENSORS = ("x", "y", "A", "B", "C")


def naive_valid(classes: tuple[int, ...], k: int) -> bool:
    """docs/theory.md §1 rules 1–4 with sets and a networkx graph (not the bitmask code)."""
    members = [
        {
            t
            for b, t in zip([X, Y, *(factor_bit(i) for i in range(k))], TENSORS, strict=False)
            if m & b
        }
        for m in classes
    ]
    if not any("x" in s for s in members) or not any("y" in s for s in members):
        return False
    factors = TENSORS[2 : 2 + k]
    having = {f: {i for i, s in enumerate(members) if f in s} for f in factors}
    if any(not h for h in having.values()):
        return False
    if any(having[a] <= having[b] for a, b in itertools.permutations(factors, 2)):
        return False
    g = nx.Graph()
    g.add_nodes_from(["x", "y", *factors])
    for i, s in enumerate(members):
        for t in s:
            g.add_edge(("class", i), t)
    return nx.is_connected(g)


def naive_families(k: int, diagonal: bool, modulo_transpose: bool) -> set[frozenset[str]]:
    """Orbits under renaming (and transposition) by brute force, as sets of class strings."""
    uni = universe(k, diagonal)
    orbits: set[frozenset[str]] = set()
    for r in range(1, len(uni) + 1):
        for subset in itertools.combinations(uni, r):
            if not naive_valid(subset, k):
                continue
            images = []
            for perm in itertools.permutations(range(k)):
                for t in (False, True) if modulo_transpose else (False,):
                    images.append(frozenset(str(Family(k, subset).relabel(perm, t)).split(",")))
            orbits.add(min(images, key=sorted))
    return orbits


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("modulo_transpose", [False, True])
def test_enumeration_matches_brute_force(k: int, diagonal: bool, modulo_transpose: bool) -> None:
    fams = enumerate_families(k, diagonal, modulo_transpose)
    expected = naive_families(k, diagonal, modulo_transpose)
    assert len(fams) == len(expected) == count_families(k, diagonal, modulo_transpose)
    got = set()
    for f in fams:
        images = [
            frozenset(str(f.relabel(p, t)).split(","))
            for p in itertools.permutations(range(k))
            for t in ((False, True) if modulo_transpose else (False,))
        ]
        got.add(min(images, key=sorted))
    assert got == expected


def test_self_check_counts() -> None:
    assert len(enumerate_families(1)) == 1
    assert len(enumerate_families(2)) == 39
    assert str(enumerate_families(1)[0]) == "xA,Ay"


def test_vectorized_rules_agree_with_naive_on_random_k3_subsets() -> None:
    uni = universe(3, diagonal=True)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1 << len(uni), size=3000, dtype=np.int64).astype(np.uint32)
    fast = _valid(codes, 3, uni)
    for code, ok in zip(codes, fast, strict=True):
        subset = tuple(m for j, m in enumerate(uni) if int(code) >> j & 1)
        assert bool(ok) == naive_valid(subset, 3), subset


def test_k3_count_by_burnside() -> None:
    """Orbit count = average number of valid labelled families fixed by each renaming."""
    uni = universe(3)
    index = {m: j for j, m in enumerate(uni)}
    codes = np.arange(1 << len(uni), dtype=np.uint32)
    valid = codes[_valid(codes, 3, uni)]
    fixed = 0
    for perm in itertools.permutations(range(3)):
        target = np.array([index[Family(3, (m,)).relabel(perm).classes[0]] for m in uni])
        mapped = np.zeros_like(valid)
        for j in range(len(uni)):
            mapped |= ((valid >> j) & 1) << target[j].astype(np.uint32)
        fixed += int((mapped == valid).sum())
    assert fixed % 6 == 0
    assert count_families(3) == fixed // 6 == len(enumerate_families(3))


def test_every_family_is_valid_and_canonical() -> None:
    for k in (1, 2):
        for diagonal in (False, True):
            for mt in (False, True):
                fams = enumerate_families(k, diagonal, mt)
                assert len(set(fams)) == len(fams)
                for f in fams:
                    assert f.is_valid
                    assert f.canonical(mt) == f
    sample = random.Random(1).sample(enumerate_families(3), 300)
    for f in sample:
        assert f.is_valid and f.canonical() == f
        perm = (2, 0, 1)
        assert f.relabel(perm).canonical() == f


def test_canonical_form_is_stable_and_documented() -> None:
    assert str(Family.parse("xB,xAB,Ay,ABy").canonical()) == "xA,xAB,By,ABy"
    assert Family.parse("xA,xAB,By,ABy,AB").greek == "α γ ε φ ρ"
    names = {f.name for f in enumerate_families(2)} - {None}
    assert names == {"low_rank", "kronecker", "tt", "monarch", "btt"}
    assert enumerate_families(1)[0].name == "dense"
    diag = [f.name for f in enumerate_families(1, diagonal=True) if f.name]
    assert diag == ["dense", "block_diagonal"]


def test_validity_rules_name_the_problem() -> None:
    assert Family.parse("xA,By").violations() == [
        "the hypergraph is disconnected: x and y are not linked"
    ]
    assert "redundant" in " ".join(Family.parse("xAB,ABy").violations())
    assert "in no class" in " ".join(Family.of(["xA", "Ay"], k=2).violations())
    assert "must contain x" in " ".join(Family.parse("AB,By").violations())


def test_k4_exhaustive_is_refused_with_alternative() -> None:
    with pytest.raises(EinspaceError, match=r"k = 4.*sample_families\(4"):
        enumerate_families(4)
    with pytest.raises(EinspaceError, match="k = 0"):
        enumerate_families(0)


def test_sampling_is_seeded_valid_and_distinct() -> None:
    a = sample_families(4, 20, seed=3)
    assert a == sample_families(4, 20, seed=3)
    assert a != sample_families(4, 20, seed=4)
    assert len(set(a)) == 20
    assert all(f.k == 4 and f.is_valid and f.canonical() == f for f in a)
    with pytest.raises(EinspaceError, match="exceeds the 39 families"):
        sample_families(2, 40)
    small = sample_families(2, 39, seed=0, max_tries=100_000)
    assert set(small) == set(enumerate_families(2))


def test_parse_errors() -> None:
    with pytest.raises(EinspaceError, match="unexpected character 'q'"):
        Family.parse("xq")
    with pytest.raises(EinspaceError, match="single tensor"):
        Family.parse("A,xAy")
    with pytest.raises(EinspaceError, match="no factor"):
        Family.parse("xy")
    with pytest.raises(EinspaceError, match="empty"):
        Family.parse(" , ")
