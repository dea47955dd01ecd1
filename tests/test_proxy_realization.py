"""Tests of einspace.proxy_realization: exact sizes where the width factors, round otherwise."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einspace import Structure
from einspace.errors import EinspaceError
from einspace.proxy_realization import padding_record, proxy_realization

NAMED = ["dense", "btt", "monarch", "kronecker", "low_rank", "tt"]


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("width", [32, 64, 128, 256])
def test_powers_of_two_are_exact_without_padding(name: str, width: int) -> None:
    for d_in, d_out in ((width, width), (width, 4 * width), (4 * width, width)):
        r = proxy_realization(Structure.named(name), d_in, d_out)
        assert r.mode == "exact" and r.padding == {"input": 0, "output": 0}
        assert (r.padded_in, r.padded_out) == (d_in, d_out)


def test_round_mode_handicap_is_removed_at_128() -> None:
    s = Structure.named("monarch")
    assert s.realize(128, 128).padding == {"input": -7, "output": -7}  # 11 × 11 = 121
    r = proxy_realization(s, 128, 128)
    assert sorted(r.sizes.values()) == [8, 8, 16, 16]  # 8 · 16 = 128 on each side


def test_lopsided_or_impossible_factorizations_fall_back_to_round() -> None:
    s = Structure.named("monarch")
    assert s.realize(122, 122, mode="exact").sizes["α"] == 2  # 122 = 2 · 61
    assert proxy_realization(s, 122, 122).mode == "round"
    assert proxy_realization(s, 122, 122, balance=40.0).mode == "exact"
    assert proxy_realization(s, 127, 127).mode == "round"  # a prime: no exact split
    with pytest.raises(EinspaceError, match="pad_tol"):
        proxy_realization(s, 127, 127, pad_tol=0.001)
    with pytest.raises(EinspaceError, match=r"balance = 0\.5"):
        proxy_realization(s, 64, 64, balance=0.5)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(NAMED),
    d_in=st.integers(16, 300),
    d_out=st.integers(16, 300),
    balance=st.sampled_from([1.5, 2.0, 3.0]),
)
def test_choice_rule(name: str, d_in: int, d_out: int, balance: float) -> None:
    s = Structure.named(name)
    try:
        exact = s.realize(d_in, d_out, mode="exact")
    except EinspaceError:
        exact = None
    try:
        r = proxy_realization(s, d_in, d_out, pad_tol=0.3, balance=balance)
    except EinspaceError:
        r = None

    def ref(mask: int) -> int:  # x-only classes use d_in, y-only d_out, the rest the min
        return {1: d_in, 2: d_out}.get(mask & 3, min(d_in, d_out))

    ok = exact is not None and all(
        abs(math.log(n) - t * math.log(ref(c))) <= math.log(balance) + 1e-12
        for c, t, n in zip(s.family.classes, s.theta, exact.class_sizes, strict=True)
        if c & 3
    )
    if ok:
        assert exact is not None and r is not None
        assert r.mode == "exact" and r.class_sizes == exact.class_sizes
    elif r is not None:
        assert r.mode == "round"
        assert r.class_sizes == s.realize(d_in, d_out, pad_tol=0.3).class_sizes


def test_padding_record_is_json_ready() -> None:
    import json

    s = Structure.named("btt")
    record = padding_record({"q": s.realize(32, 32), "fc": proxy_realization(s, 32, 128)})
    assert json.loads(json.dumps(record)) == record
    assert record["q"]["input"] == 36 - 32 and record["q"]["output"] == 36 - 32
    assert record["fc"] == {
        "mode": "exact",
        "sizes": {"α": 4, "γ": 8, "ε": 8, "φ": 16, "ρ": 2},
        "input": 0,
        "output": 0,
    }
