"""einspace.moe: the sparse specs parse, refuse bad input by name, and count as by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einspace import EinspaceError
from einspace.moe import MoESpec, is_moe_spec, parse_spec
from einspace.structure import Structure


def test_paper_count_at_1024() -> None:
    r = MoESpec.parse("btt_moe:e=8,k=2").realize(1024, 1024)
    # experts: Monarch 32·32·32 per factor; all 8 experts: 2 · 32³ · 8 = 524,288
    assert r.btt_macs == 524_288 and r.params == 524_288
    assert r.expert_macs == 131_072  # k = 2 of 8
    assert r.gate_macs == r.gate_params == 8_192
    assert r.active_macs == 139_264  # the paper's number
    assert r.total_params == 532_480 and r.active_params == 139_264
    assert r.dense_macs == r.dense_params == 1_048_576
    assert r.btt.sizes == {"α": 32, "γ": 32, "ε": 32, "φ": 32, "ρ": 8}


def test_rectangular_hand_count() -> None:
    # 64 → 256: Monarch α = γ = 8, ε = φ = 16; one expert 8·8·16 + 8·16·16 = 3072 MACs
    r = MoESpec.parse("btt_moe(e=4, k=1)").realize(64, 256)
    assert r.expert.sizes == {"α": 8, "γ": 8, "ε": 16, "φ": 16}
    assert r.active_macs == 3072 + 64 * 4
    assert r.total_params == 4 * 3072 + 256
    assert r.summary()["active_macs"] == 3328


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([16, 36, 64, 100, 256]), st.integers(1, 16), st.integers(1, 16))
def test_active_counts_scale_with_k_over_e(d: int, e: int, k: int) -> None:
    if k > e:
        with pytest.raises(EinspaceError, match=f"k={k} exceeds e={e}"):
            MoESpec.parse(f"btt_moe:e={e},k={k}")
        return
    r = MoESpec.parse(f"btt_moe:e={e},k={k}").realize(d, d)
    root = round(d**0.5)  # square widths: every Monarch class is √d
    assert r.expert_macs * e == r.btt_macs * k == 2 * root**3 * e * k
    assert r.active_macs - r.expert_macs == d * e
    assert r.total_params == e * 2 * root**3 + d * e


def test_parse_forms_and_round_trip() -> None:
    assert MoESpec.parse("btt_moe:e=8") == MoESpec("btt_moe", 8, 2)
    assert MoESpec.parse(" BTT-MoE( e=8 , k=1 ) ") == MoESpec("btt_moe", 8, 1)
    spec = MoESpec.parse("moe:e=4,k=1")
    assert MoESpec.parse(str(spec)) == spec
    assert is_moe_spec("moe:e=2") and not is_moe_spec("monarch") and not is_moe_spec(3)
    assert isinstance(parse_spec("monarch"), Structure)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("btt_moe:e=0,k=1", "e = 0 must be an integer ≥ 1"),
        ("btt_moe:e=x", "e = 'x' must be an integer ≥ 1"),
        ("btt_moe:k=2", "give the number of experts"),
        ("btt_moe:e=8,r=0.5", "parameter 'r=0.5'"),
        ("bt_moe:e=8", "did you mean 'btt_moe'"),
        ("low_rank_moe:e=8", "rank-1 matrices"),
        ("tt_moe:e=8", "Kronecker"),
    ],
)
def test_bad_specs(text: str, match: str) -> None:
    with pytest.raises(EinspaceError, match=match):
        MoESpec.parse(text)


def test_block_spec_is_not_a_layer() -> None:
    with pytest.raises(EinspaceError, match="not a linear layer"):
        MoESpec.parse("moe:e=8,k=2").realize(64, 64)
    with pytest.raises(EinspaceError, match="pad_tol"):
        MoESpec.parse("btt_moe:e=8").realize(1000, 1000, pad_tol=0.01)


def test_structure_apis_point_to_the_sparse_layer() -> None:
    with pytest.raises(EinspaceError, match="is a sparse spec, not a structure"):
        Structure.parse("btt_moe:e=8,k=2")


def test_integral_float_counts_become_ints() -> None:
    spec = MoESpec("moe", 4.0, 1.0)  # type: ignore[arg-type]
    assert (type(spec.experts), type(spec.top_k)) == (int, int)
    assert spec == MoESpec("moe", 4, 1)
    with pytest.raises(EinspaceError, match="moe: k = 0 must be an integer ≥ 1"):
        MoESpec("moe", 4, 0)
    with pytest.raises(
        EinspaceError, match=r"moe: e = 2\.5 must be an integer ≥ 1; e\.g\. moe: e = 8"
    ):
        MoESpec("moe", 2.5)  # type: ignore[arg-type]
