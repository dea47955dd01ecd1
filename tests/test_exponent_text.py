"""exponent_text: the symbolic forms as text without sympy, checked against sympy itself (same
string, and equal values at random θ on the box) and against the numeric forms."""

from __future__ import annotations

import random

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from einspace.display import round_floats
from einspace.enumeration import enumerate_families
from einspace.exponent_text import exponent_text, exponent_texts
from einspace.family import Family
from einspace.family_table import family_listing, family_table

KEYS = ("nu", "omega", "psi")


def parse(text: str, family: Family) -> sympy.Expr:
    names = {str(s): s for s in family.symbols()}
    return sympy.sympify(text, locals={**names, "Max": sympy.Max, "Min": sympy.Min})


def check_against_sympy(family: Family, rng: random.Random) -> None:
    mine = exponent_text(family)
    ref = family.symbolic()
    for key in KEYS:
        assert mine[key] == str(ref[key]), (str(family), key)
        parsed = parse(mine[key], family)
        for _ in range(3):  # equal on the box θ ∈ [0, 1]
            point = {s: rng.random() for s in family.symbols()}
            assert float(parsed.subs(point)) == pytest.approx(float(ref[key].subs(point)))


@pytest.mark.parametrize("diagonal", [False, True])
def test_every_k2_family_matches_sympy(diagonal: bool) -> None:
    rng = random.Random(0)
    fams = enumerate_families(2, diagonal)
    assert len(fams) == (39 if not diagonal else 439)
    for f in fams[:: 1 if not diagonal else 40]:
        check_against_sympy(f, rng)


def test_sampled_k3_families_match_sympy() -> None:
    rng = random.Random(1)
    for f in rng.sample(enumerate_families(3), 5):
        check_against_sympy(f, rng)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(1, 3), pick=st.integers(0, 10**6), diagonal=st.booleans())
def test_text_agrees_with_the_numeric_forms(k: int, pick: int, diagonal: bool) -> None:
    """On the constraint surface, at the balanced point, the text evaluates to ν, ω, ψ."""
    fams = enumerate_families(k, diagonal and k < 3)
    family = fams[pick % len(fams)]
    theta = family.balanced_theta()
    if theta is None:
        return
    point = dict(zip(family.symbols(), theta, strict=True))
    text = exponent_text(family)
    for key in KEYS:
        assert float(parse(text[key], family).subs(point)) == pytest.approx(
            getattr(family.forms, key)(theta), abs=1e-9
        )


def test_named_forms() -> None:
    assert exponent_text(Family.parse("xA,xAB,By,ABy,AB")) == {  # BTT
        "nu": "Max(-α + ρ + 2, -ε + ρ + 2) - 1",
        "omega": "0",
        "psi": "Min(1, -α - ε + ρ + 2)",
    }
    assert exponent_text(Family.parse("xA,xB,By,ABy,AB"))["omega"] == (
        "Max(-α + ρ + 2, -ε + ρ + 2) - Max(-α + ρ + 2, α - ε + ρ + 1)"
    )
    assert exponent_text(Family.parse("xA,xAB,By,ABy"))["omega"] == "0"  # Monarch


def test_k3_listing_has_every_row_with_rounded_floats() -> None:
    frame, title = family_listing(3)
    assert len(frame) == 40378 and title.startswith("40378 valid families, k = 3")
    texts = exponent_texts(enumerate_families(3)[:500])
    for key in KEYS:
        assert frame[f"{key}_symbolic"].isna().sum() == 0
        assert list(frame[f"{key}_symbolic"][:500]) == texts[key]
    csv = frame.head(2000).to_csv(index=False)
    assert "0.3333333333" not in csv and "0.0833333" in csv


def test_family_table_columns_are_sympys() -> None:
    table = family_table(2)
    fams = enumerate_families(2)
    assert list(table["omega_symbolic"]) == [str(f.symbolic()["omega"]) for f in fams]


def test_round_floats() -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": [0.09999999999999999, 1 / 3, -2.5e-9 / 3], "s": ["a", "b", "c"]})
    out = round_floats(frame)
    assert list(out["x"]) == [0.1, 0.333333, -8.33333e-10]
    assert list(out["s"]) == ["a", "b", "c"] and frame["x"][0] == 0.09999999999999999
    sampled, _ = family_listing(4, sample=3, seed=1)
    for v in sampled[["nu", "omega", "psi"]].to_numpy().ravel():
        assert len(repr(float(v)).lstrip("-0.").replace(".", "")) <= 6 or v != v
