"""Piecewise-linear exponent forms: ν, ω and ψ of a family as functions of θ (THEORY §3).

Each exponent is a min/max of sums of θ over sets of classes. The sets are computed once per
family from its hypergraph; evaluating at a θ is then a few sums, and the same sets give
sympy ``Min``/``Max`` expressions.

Examples:
    >>> from einspace.family import Family
    >>> forms = Family.parse("xA,xAB,By,ABy,AB").forms      # BTT
    >>> forms.nu((0.5, 0.5, 0.5, 0.5, 0.25)), forms.omega((0.5, 0.5, 0.5, 0.5, 0.25))
    (0.75, 0.0)
    >>> forms.psi((0.5, 0.5, 0.5, 0.5, 0.25))
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from einspace import hypergraph

if TYPE_CHECKING:
    import sympy

__all__ = ["ExponentForms"]

Terms = tuple[frozenset[int], ...]


def _minimal(sets: Sequence[frozenset[int]]) -> Terms:
    """Drop duplicates and supersets: with θ ≥ 0 they never attain a minimum."""
    uniq = sorted(set(sets), key=lambda s: (len(s), sorted(s)))
    return tuple(s for s in uniq if not any(t < s for t in uniq))


def _maximal(sets: Sequence[frozenset[int]]) -> Terms:
    """Drop duplicates and subsets: with θ ≥ 0 they never attain a maximum."""
    uniq = sorted(set(sets), key=lambda s: (-len(s), sorted(s)))
    return tuple(s for s in uniq if not any(s < t for t in uniq))


@dataclass(frozen=True)
class ExponentForms:
    """The sets of classes whose θ-sums define ν, ω and ψ for one family.

    Attributes:
        orders: for each factor order, the class sets of its steps (ν = min over orders of
            the max over steps of the sum, minus 1).
        factors: for each factor, its class set (ω subtracts the largest sum).
        cuts: the class sets of the x–y cuts (ψ = min(1, smallest sum)).
    """

    orders: tuple[Terms, ...]
    factors: Terms
    cuts: Terms

    @classmethod
    def of(cls, classes: tuple[int, ...], k: int) -> ExponentForms:
        """Build the forms of the family with these classes."""
        per_order = [
            _maximal([s.classes for s in hypergraph.sequential_steps(classes, k, o)])
            for o in hypergraph.orders(k)
        ]
        return cls(
            orders=tuple(sorted(set(per_order), key=lambda t: [sorted(s) for s in t])),
            factors=_maximal(hypergraph.factor_class_sets(classes, k)),
            cuts=_minimal(hypergraph.cuts(classes, k)),
        )

    @staticmethod
    def _sum(theta: Sequence[float], s: frozenset[int]) -> float:
        return float(sum(theta[p] for p in s))

    def nu(self, theta: Sequence[float]) -> float:
        """Compute intensity: sequential MACs grow as d^(1+ν)."""
        return min(max(self._sum(theta, s) for s in o) for o in self.orders) - 1.0

    def omega(self, theta: Sequence[float]) -> float:
        """Parameter sharing: the exponent of MACs per parameter."""
        return 1.0 + self.nu(theta) - max(self._sum(theta, s) for s in self.factors)

    def psi(self, theta: Sequence[float]) -> float:
        """Rank exponent: the θ-weighted min-cut between x and y, at most 1."""
        return min(1.0, min(self._sum(theta, s) for s in self.cuts))

    def symbolic(
        self, symbols: Sequence[sympy.Expr], fixed: dict[int, float] | None = None
    ) -> dict[str, sympy.Expr]:
        """ν, ω, ψ as sympy expressions in ``symbols`` (one per class).

        ``fixed`` maps class positions to numbers substituted for their symbol (a lone input
        or output class has θ = 1).
        """
        import sympy

        if fixed:
            symbols = [
                sympy.nsimplify(fixed[p]) if p in fixed else s for p, s in enumerate(symbols)
            ]

        def total(s: frozenset[int]) -> sympy.Expr:
            return sympy.Add(*(symbols[p] for p in sorted(s)))

        nu = sympy.Min(*(sympy.Max(*(total(s) for s in o)) for o in self.orders)) - 1
        omega = 1 + nu - sympy.Max(*(total(s) for s in self.factors))
        psi = sympy.Min(sympy.Integer(1), *(total(s) for s in self.cuts))
        return {"nu": nu, "omega": omega, "psi": psi}
