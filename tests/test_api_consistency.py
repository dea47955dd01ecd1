"""The API speaks one way: objectives in one registry, one argument order for macs."""

from __future__ import annotations

import pytest

from einspace import Structure
from einspace.errors import EinspaceError
from search.budget import TUNABLE
from search.scoring import OBJECTIVES, score

CANDIDATES = ["dense", "btt", "monarch", "low_rank", "kronecker"]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_registered_objective_ranks(name: str) -> None:
    budget = "1/2" if name == "fill" else None  # fill ranks by closeness to a budget
    cands = [c if c not in TUNABLE else f"{c}:r=0.25" for c in CANDIDATES] if budget else CANDIDATES
    table = score(cands, 64, 64, objective=name, budget_macs=budget)
    assert sorted(table["candidate"]) == sorted(str(Structure.parse(c)) for c in cands)
    assert list(table["position"]) == list(range(1, len(CANDIDATES) + 1))
    assert not [c for c in table.columns if str(c).startswith("_")]


def test_prior_is_the_registered_default() -> None:
    assert "prior" in OBJECTIVES
    default = score(CANDIDATES, 64, 64)
    named = score(CANDIDATES, 64, 64, objective="prior")
    assert list(default["candidate"]) == list(named["candidate"])
    with pytest.raises(EinspaceError, match="did you mean 'prior'"):
        score(CANDIDATES, 64, 64, objective="priro")


def test_macs_takes_order_then_batch_everywhere() -> None:
    from einspace.nn import EinsumLinear

    layer = EinsumLinear(64, 64, "btt")
    r = layer.realization
    for order in ("sequential", "optimal"):
        for batch in (1, 7, 64):
            assert layer.macs(order, batch) == r.macs(order, batch)
            assert layer.macs(order=order, batch=batch) == r.macs(order, batch)
