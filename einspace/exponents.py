"""Piecewise-linear exponent forms: ν, ω and ψ of a family as functions of θ (docs/theory.md §3).

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

__all__ = ["ExponentForms", "prune"]

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

    def symbolic(self, symbols: Sequence[sympy.Expr]) -> dict[str, sympy.Expr]:
        """ν, ω, ψ as sympy expressions in ``symbols`` (one expression per class)."""
        import sympy

        def total(s: frozenset[int]) -> sympy.Expr:
            return sympy.Add(*(symbols[p] for p in sorted(s)))

        nu = sympy.Min(*(sympy.Max(*(total(s) for s in o)) for o in self.orders)) - 1
        omega = 1 + nu - sympy.Max(*(total(s) for s in self.factors))
        psi = sympy.Min(sympy.Integer(1), *(total(s) for s in self.cuts))
        return {key: prune(e) for key, e in {"nu": nu, "omega": omega, "psi": psi}.items()}


def _bounds(e: sympy.Expr) -> tuple[float, float]:
    """Interval bounds of an expression when every symbol lies in [0, 1] (sound, not tight
    for nested Min/Max)."""
    import sympy

    if e.is_Number:
        return float(e), float(e)
    if e.is_Symbol:
        return 0.0, 1.0
    if isinstance(e, sympy.Add):
        lo = hi = 0.0
        for a in e.args:
            alo, ahi = _bounds(a)
            lo, hi = lo + alo, hi + ahi
        return lo, hi
    if isinstance(e, sympy.Mul) and len(e.args) == 2 and e.args[0].is_Number:
        c = float(e.args[0])
        alo, ahi = _bounds(e.args[1])
        return (c * alo, c * ahi) if c >= 0 else (c * ahi, c * alo)
    if isinstance(e, sympy.Max | sympy.Min):
        pairs = [_bounds(a) for a in e.args]
        pick = max if isinstance(e, sympy.Max) else min
        return pick(p[0] for p in pairs), pick(p[1] for p in pairs)
    return -float("inf"), float("inf")


def _le(x: sympy.Expr, y: sympy.Expr) -> bool:
    """Whether x ≤ y is proven on the box θ ∈ [0, 1] (False means "not proven")."""
    import sympy

    if isinstance(x, sympy.Max):
        return all(_le(a, y) for a in x.args)
    if isinstance(y, sympy.Min):
        return all(_le(x, b) for b in y.args)
    if isinstance(x, sympy.Min) and any(_le(a, y) for a in x.args):
        return True
    if isinstance(y, sympy.Max) and any(_le(x, b) for b in y.args):
        return True
    return _bounds(sympy.expand(y - x))[0] >= 0


def prune(e: sympy.Expr) -> sympy.Expr:
    """Drop Min/Max arguments that can never attain the extremum when every θ ∈ [0, 1].

    An argument ``a`` of ``Max`` goes when some other ``b`` is provably ≥ ``a`` on the whole
    box (exact for linear arguments, recursive through nested Min/Max, interval arithmetic
    otherwise); ``Min`` likewise.
    The result is equal to ``e`` everywhere on the box, and usually much shorter.

    Examples:
        >>> import sympy
        >>> a, b = sympy.symbols("a b", nonnegative=True)
        >>> prune(sympy.Min(2, sympy.Max(2 - a, 2 - b)) - sympy.Max(2 - a, 2 - b))
        0
    """
    import sympy

    if not e.args:
        return e
    args = [prune(a) for a in e.args]
    if isinstance(e, sympy.Max | sympy.Min):
        is_max = isinstance(e, sympy.Max)

        def beats(b: sympy.Expr, a: sympy.Expr) -> bool:  # b makes a redundant
            return _le(a, b) if is_max else _le(b, a)

        kept: list[sympy.Expr] = []
        for i, a in enumerate(args):
            # an argument goes if another one always wins; of two equal ones the first stays
            if not any(
                j != i and beats(b, a) and (j < i or not beats(a, b)) for j, b in enumerate(args)
            ):
                kept.append(a)
        return e.func(*kept)
    return e.func(*args)
