"""Structures: named points, exponents (numeric, symbolic, closed forms) and bad input."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from einspace import EinspaceError, Family, Structure
from einspace.cases import random_structure

# docs/theory.md §1/§3: dense ν=1 ω=0 ψ=1; Monarch/BTT ν=½ ω=0 ψ=1; Kronecker ν=½ ω=½ ψ=1;
# low rank r: ν=r ω=0 ψ=r. BTT with rank d^r has ν = ½ + r.
NAMED_EXPONENTS = [
    ("dense", {}, (1.0, 0.0, 1.0)),
    ("monarch", {}, (0.5, 0.0, 1.0)),
    ("btt", {"r": 0.0}, (0.5, 0.0, 1.0)),
    ("btt", {"r": 0.25}, (0.75, 0.0, 1.0)),
    ("kronecker", {}, (0.5, 0.5, 1.0)),
    ("tt", {"r": 0.25}, (0.75, 0.5, 1.0)),
    ("low_rank", {"r": 0.25}, (0.25, 0.0, 0.25)),
    ("low_rank", {"r": 0.5}, (0.5, 0.0, 0.5)),
    ("low_rank", {"r": 1.0}, (1.0, 0.0, 1.0)),
]


@pytest.mark.parametrize(("name", "params", "expected"), NAMED_EXPONENTS)
def test_named_exponents(name: str, params: dict[str, float], expected: tuple[float, ...]) -> None:
    s = Structure.named(name, **params)
    assert (s.nu, s.omega, s.psi) == expected


def test_named_theta_and_families() -> None:
    assert Structure.named("dense").k == 1
    assert Structure.named("monarch").theta7 == (0.5, 0, 0.5, 0, 0.5, 0.5, 0)
    assert Structure.named("btt", r=0).family.name == "monarch"
    assert Structure.named("tt", r=0).family.name == "kronecker"
    bd = Structure.named("block_diagonal", b=0.25)
    assert bd.family.diagonal and bd.family.name == "block_diagonal"
    assert (bd.nu, bd.omega, bd.psi) == (0.75, 0.0, 1.0)


def closed_forms(t: tuple[float, ...]) -> tuple[float, float, float]:
    """docs/theory.md §3 closed forms, after reordering so that min(α, ε) ≥ min(β, δ)."""
    a, b, _, d, e, _, r = t
    if min(a, e) < min(b, d):
        a, b, d, e = b, a, e, d
    nu = 1 + r - min(a, e)
    omega = min(a + d, b + e) - min(a, e)
    psi = min(1, 2 + r - a - e, 2 + r - b - d)
    return nu, omega, psi


def simplex(draw: st.DrawFn, n: int) -> list[float]:
    w = [draw(st.floats(0.0, 1.0)) for _ in range(n)]
    total = sum(w)
    if total == 0:
        w, total = [1.0] + [0.0] * (n - 1), 1.0
    return [x / total for x in w]


@st.composite
def paper_theta(draw: st.DrawFn) -> tuple[float, ...]:
    ins = simplex(draw, 3)
    outs = simplex(draw, 3)
    rho = draw(st.floats(0.0, 1.0))
    return (*ins, *outs, rho)


@settings(max_examples=300, deadline=None)
@given(paper_theta())
def test_k2_exponents_equal_closed_forms(theta: tuple[float, ...]) -> None:
    try:
        s = Structure.from_theta(theta)
    except EinspaceError as err:
        assert "disconnected" in str(err)
        return
    nu, omega, psi = closed_forms(theta)
    assert s.nu == pytest.approx(nu, abs=1e-9)
    assert s.omega == pytest.approx(omega, abs=1e-9)
    assert s.psi == pytest.approx(psi, abs=1e-9)
    values = compiled(s.family)(*s.theta)
    assert values == pytest.approx([nu, omega, psi], abs=1e-9)


_COMPILED: dict[object, Callable[..., list[float]]] = {}


def compiled(family: Family) -> Callable[..., list[float]]:
    """The family's symbolic ν, ω, ψ as one numeric function of θ (sympy.lambdify)."""
    if family not in _COMPILED:
        sym = family.symbolic()
        _COMPILED[family] = sympy.lambdify(
            family.symbols(), [sym["nu"], sym["omega"], sym["psi"]], modules=["math"]
        )
    return _COMPILED[family]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([1, 2, 3]), st.booleans())
def test_symbolic_equals_numeric_for_random_structures(seed: int, k: int, diagonal: bool) -> None:
    s = random_structure(random.Random(seed), k=k, diagonal=diagonal and k < 3)
    subs = s.substitutions()
    sym = s.symbolic()
    for key in ("nu", "omega", "psi"):
        assert float(sym[key].subs(subs)) == pytest.approx(getattr(s, key), abs=1e-9)
    # ν, ψ within their ranges; ω ≥ 0
    assert 0 <= s.psi <= 1
    assert s.omega >= -1e-12


def test_symbolic_low_rank_is_rho() -> None:
    import sympy

    expr = Structure.named("low_rank").symbolic()["nu"]
    assert expr == sympy.Symbol("ρ", nonnegative=True)


def test_degenerate() -> None:
    assert not Structure.named("btt", r=0.5).degenerate
    assert Structure.named("btt", r=0.75).degenerate
    assert Structure.named("low_rank", r=1.0).degenerate is False


def test_parse_forms() -> None:
    assert Structure.parse("(0.5|0|0.5|0|0.5|0.5|0)") == Structure.named("monarch")
    assert Structure.parse("0.5, 0, 0.5, 0, 0.5, 0.5, 0") == Structure.named("monarch")
    assert Structure.parse("(1/2|0|1/2|0|1/2|1/2|1/4)") == Structure.named("btt", r=0.25)
    assert Structure.parse("btt(r=0.5)") == Structure.named("btt", r=0.5)
    assert Structure.parse("BTT:r=0.5") == Structure.named("btt", r=0.5)
    assert Structure.parse("xA=0.5,xB=0.5,Ay=0.5,By=0.5") == Structure.named("kronecker")
    assert str(Structure.named("btt", r=0.5)) == "btt(r=0.5)"
    assert Structure.from_theta((0.5, 0.5, 0, 0.5, 0.5, 0, 0)).describe_theta() == (
        "(0.5|0.5|0|0.5|0.5|0|0)"
    )


BAD_THETA = [
    ((0.5, 0.5, 0, 0.5, 0.5, 0), r"has 6 entries; expected 7 .*Monarch"),
    ((0.5, "a", 0, 0.5, 0.5, 0, 0), r"θ\[β\] = 'a' is not a number"),
    ((0.5, math.nan, 0, 0.5, 0.5, 0, 0), r"θ\[β\] = nan; exponents must be finite"),
    ((0.5, -0.5, 0, 0.5, 0.5, 0, 0), r"θ\[β\] = -0.5 is outside \[0, 1\]; nearest valid value: 0"),
    ((1.5, 0, 0, 0.5, 0.5, 0, 0), r"θ\[α\] = 1.5 is outside \[0, 1\]; nearest valid value: 1"),
    ((0.5, 0.4, 0, 0.5, 0.5, 0, 0), r"input \(x\) exponents .* sum to 0.9; expected 1"),
    ((0.5, 0.5, 0, 0.5, 0.6, 0, 0), r"output \(y\) exponents .* sum to 1.1; .*0.9091"),
    ((1, 0, 0, 0, 1, 0, 0), r"disconnected.*give the rank class ρ a positive exponent"),
    ("(0.5|0.5|zero|0.5|0.5|0|0)", r"'zero' in .* is not a number"),
    (0.5, r"not a sequence; expected 7 numbers"),
    ((True, 0, 0, 1, 0, 0, 0), r"θ\[α\] = True is not a number"),
]


@pytest.mark.parametrize(("theta", "message"), BAD_THETA)
def test_bad_theta(theta: object, message: str) -> None:
    with pytest.raises(EinspaceError, match=message):
        Structure.from_theta(theta)  # type: ignore[arg-type]


def test_sum_tolerance_accepts_rounded_thirds() -> None:
    s = Structure.from_theta((0.33, 0.33, 0.33, 0.5, 0.5, 0, 0))  # sums to 0.99
    assert s.k == 2


def test_bad_names_and_params() -> None:
    with pytest.raises(EinspaceError, match=r"unknown structure name 'bt'; did you mean 'btt'"):
        Structure.named("bt")
    with pytest.raises(EinspaceError, match=r"valid: .*'kronecker'"):
        Structure.parse("zzzz")
    with pytest.raises(EinspaceError, match=r"parameter r = 1.5 must be a number in \[0, 1\]"):
        Structure.named("btt", r=1.5)
    with pytest.raises(EinspaceError, match=r"unknown parameter\(s\) \['rank'\]; it takes r"):
        Structure.named("btt", rank=2)
    with pytest.raises(EinspaceError, match="should read key=value"):
        Structure.parse("btt:0.5")
    with pytest.raises(EinspaceError, match="class 'xq': unexpected character 'q'"):
        Structure.from_classes({"xq": 1, "Ay": 1})
    with pytest.raises(EinspaceError, match="every exponent is 0"):
        Structure.from_classes({"xA": 0, "Ay": 0})
