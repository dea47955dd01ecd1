"""ν, ω and ψ of a family as text, without sympy: what ``str(family.symbolic()[key])`` says.

The forms of :mod:`einspace.exponents` are a min/max of θ-sums over sets of classes. After the
side constraints eliminate one symbol per side (as :meth:`Family.symbolic` does: the last input
class is ``1 −`` the other input exponents, likewise on the output side), every sum is a linear
form ``c + Σ θ_p − Σ θ_q`` with coefficients ±1, stored as three integers: the constant, the
bitmask of the ``+1`` classes and the bitmask of the ``−1`` classes. Comparing two forms on the
box θ ∈ [0, 1] is then a few bit operations.

Min/Max nodes over such forms are simplified as :func:`einspace.exponents.prune` and sympy's
own ``Min``/``Max`` constructors simplify them — drop an argument that another one dominates on
the box (exact for linear arguments) or for all θ ≥ 0, absorb ``Min(a, Max(a, …))`` into ``a``,
factor common arguments out (``Min(Max(a, b), Max(a, c)) = Max(a, Min(b, c))``) — and printed
in sympy's order (sympy's ``default_sort_key`` and ``ordered`` rebuilt on these forms). The
text is what sympy prints, parses back with ``sympy.sympify``, and takes microseconds per
family instead of tens of milliseconds; :func:`exponent_texts` does a whole list.

Examples:
    >>> from einspace.family import Family
    >>> btt = Family.parse("xA,xAB,By,ABy,AB")
    >>> exponent_text(btt)["nu"]
    'Max(-α + ρ + 2, -ε + ρ + 2) - 1'
    >>> exponent_text(Family.parse("xA,xB,Ay,By"))["psi"]
    'Min(1, -α + δ + 1, α - δ + 1)'
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from einspace.index_classes import X, Y, class_name, class_token, factor_bit, universe

if TYPE_CHECKING:
    from einspace.family import Family

__all__ = ["exponent_text", "exponent_texts"]

# A linear form (constant, plus-mask, minus-mask); a node ("Max" | "Min", frozenset of
# arguments). Both are plain tuples; a node starts with a str. sympy's argument order is
# computed only where it matters: for printing and to break ties in pruning.
Lin = tuple[int, int, int]
Expr = tuple[Any, ...]


def _is_node(e: Expr) -> bool:
    return type(e[0]) is str


def _bad(a: Lin, b: Lin) -> int:
    """Σ over classes of max(0, −coefficient of a − b): what the box costs a − b at worst."""
    neg, pos_a, pos_b = a[2] | b[1], a[1], b[2]
    both = a[2] & b[1]
    return 2 * both.bit_count() + ((a[2] ^ b[1]) & ~(pos_a | pos_b) & neg).bit_count()


def _nonneg_ge(a: Expr, b: Expr) -> bool:
    """a ≥ b for every θ ≥ 0 (what sympy's assumptions prove for linear forms)."""
    if _is_node(a) or _is_node(b):
        return False
    return a[0] >= b[0] and _bad(a, b) == 0


def _lo(e: Expr) -> int:
    if _is_node(e):
        los = [_lo(a) for a in e[1]]
        return max(los) if e[0] == "Max" else min(los)
    return int(e[0]) - int(e[2]).bit_count()


def _hi(e: Expr) -> int:
    if _is_node(e):
        his = [_hi(a) for a in e[1]]
        return max(his) if e[0] == "Max" else min(his)
    return int(e[0]) + int(e[1]).bit_count()


def _le(x: Expr, y: Expr) -> bool:
    """x ≤ y proven on the box (the rules of :func:`einspace.exponents._le`)."""
    xn, yn = type(x[0]) is str, type(y[0]) is str
    if not xn and not yn:
        return y[0] - x[0] - _bad(y, x) >= 0
    return _le_nodes(x, y, xn, yn)


@functools.lru_cache(maxsize=1 << 18)
def _le_nodes(x: Expr, y: Expr, xn: bool, yn: bool) -> bool:
    if xn and x[0] == "Max":
        return all(_le(a, y) for a in x[1])
    if yn and y[0] == "Min":
        return all(_le(x, b) for b in y[1])
    if xn and x[0] == "Min" and any(_le(a, y) for a in x[1]):
        return True
    if yn and y[0] == "Max" and any(_le(x, b) for b in y[1]):
        return True
    return x == y or _lo(y) - _hi(x) >= 0


@functools.lru_cache(maxsize=1 << 16)
def _nodes(e: Expr) -> int:
    """sympy's ``_nodes`` (the size of the expression tree); it does not depend on names."""
    if _is_node(e):
        return 1 + sum(_nodes(a) for a in e[1])
    c, plus, minus = e
    n_terms = (plus | minus).bit_count() + (c != 0)
    if n_terms <= 1:
        return 3 if minus else 1
    return 1 + plus.bit_count() + 3 * minus.bit_count() + (c != 0)


class _Context:
    """One family's symbols: sympy's sort keys, node counts and text for its expressions."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.by_name = sorted(range(len(names)), key=lambda p: names[p])
        self.rank = {p: r for r, p in enumerate(self.by_name)}
        self._keys: dict[Expr, tuple[Any, ...]] = {}
        self._terms: dict[Lin, list[tuple[int, int]]] = {}
        self._text: dict[Expr, str] = {}

    def terms(self, e: Lin) -> list[tuple[int, int]]:
        """``(position, or −1 for the constant; coefficient)`` in sympy's term order."""
        got = self._terms.get(e)
        if got is not None:
            return got
        c, plus, minus = e
        out = [(p, 1 if plus >> p & 1 else -1) for p in self.by_name if (plus | minus) >> p & 1]
        if c:
            if len(out) == 1 and out[0][1] < 0 and c > 0:
                out = [(-1, c), out[0]]  # sympy prints 2 - α, not -α + 2
            else:
                out.append((-1, c))
        self._terms[e] = out
        return out

    def key(self, e: Expr) -> tuple[Any, ...]:
        """An order-preserving stand-in for sympy's ``default_sort_key``."""
        got = self._keys.get(e)
        if got is None:
            if _is_node(e):
                args = tuple(self.key(a) for a in self.ordered(e[1]))
                got = (5, e[0], len(args), args)
            else:
                ts = [(0, c) if p < 0 else (1, self.rank[p], c) for p, c in self.terms(e)]
                if not ts:
                    got = (1, 0)
                elif len(ts) == 1:
                    got = (1, ts[0][1]) if ts[0][0] == 0 else (2, *ts[0][1:])
                else:
                    got = (3, len(ts), tuple(ts))
            self._keys[e] = got
        return got

    def ordered(self, args: Iterable[Expr]) -> list[Expr]:
        """sympy's ``ordered``: fewest nodes first, then ``default_sort_key``."""
        return sorted(args, key=lambda a: (_nodes(a), self.key(a)))

    def _term(self, p: int, c: int) -> str:
        if p < 0:
            return str(c)
        name = self.names[p]
        return name if c == 1 else f"-{name}" if c == -1 else f"{c}*{name}"

    def text(self, e: Expr) -> str:
        got = self._text.get(e)
        if got is None:
            if _is_node(e):
                args = sorted(e[1], key=self.key)
                got = f"{e[0]}({', '.join(self.text(a) for a in args)})"
            else:
                got = _join([self._term(p, c) for p, c in self.terms(e)])
            self._text[e] = got
        return got

    def sum_text(self, coefs: list[int], const: int, nodes: dict[Expr, int]) -> str:
        """An ``Add`` of a linear part (any integer coefficients) and multiples of nodes."""
        parts = [self._term(p, coefs[p]) for p in self.by_name if coefs[p]]
        for node in sorted(nodes, key=self.key):
            c, t = nodes[node], self.text(node)
            parts.append(t if c == 1 else f"-{t}" if c == -1 else f"{c}*{t}")
        if const:
            if len(parts) == 1 and parts[0].startswith("-") and const > 0:
                return f"{const} - {parts[0][1:]}"
            parts.append(str(const))
        return _join(parts)


class _Simplifier:
    """sympy's ``Min``/``Max`` constructor and :func:`~einspace.exponents.prune` on these
    expressions, over the universe of classes of ``k`` factors (bit j of a mask is class j of
    :func:`~einspace.index_classes.universe`, named as :meth:`Family.symbols` names it). A
    class has the same symbol in every family, so one cache serves a whole enumeration:
    families meet the same sub-expressions again and again."""

    def __init__(self, k: int) -> None:
        classes = universe(k, diagonal=True)
        self.index = {m: j for j, m in enumerate(classes)}
        names = [class_name(m, k) for m in classes]
        self.ctx = _Context(
            [n if n != class_token(m) else f"θ_{n}" for n, m in zip(names, classes, strict=True)]
        )
        self._made: dict[tuple[str, frozenset[Expr], bool], Expr] = {}
        self._pruned: dict[Expr, Expr] = {}

    def make(self, op: str, args: Iterable[Expr], evaluate: bool = True) -> Expr:
        """``Max``/``Min`` with the simplifications of sympy's constructor."""
        given = frozenset(args)
        got = self._made.get((op, given, evaluate))
        if got is None:
            got = self._made[op, given, evaluate] = self._make(op, given, evaluate)
        return got

    def _make(self, op: str, args: frozenset[Expr], evaluate: bool) -> Expr:
        flat: set[Expr] = set()
        for a in args:
            if evaluate and _is_node(a) and a[0] == op:
                flat.update(a[1])
            else:
                flat.add(a)
        if evaluate and len(flat) > 1:
            ordered = list(flat)
            if any(_is_node(a) for a in ordered):
                ordered = sorted(ordered, key=_nodes)
                for i, a in enumerate(ordered):  # Min(a, Max(a, …)) → a
                    ordered[i + 1 :] = [self._absorb(op, b, a) for b in ordered[i + 1 :]]
                ordered = self._factor(op, ordered)
            keep: list[Expr] = []  # sympy's local zeros: comparable for θ ≥ 0
            big = op == "Max"
            for v in ordered:
                if v in keep or any(_nonneg_ge(z, v) if big else _nonneg_ge(v, z) for z in keep):
                    continue
                keep = [z for z in keep if not (_nonneg_ge(v, z) if big else _nonneg_ge(z, v))]
                keep.append(v)
            flat = set(keep)
        if len(flat) == 1:
            return next(iter(flat))
        return (op, frozenset(flat))

    def _absorb(self, op: str, b: Expr, a: Expr) -> Expr:
        """sympy's ``do``: drop ``a`` from same-kind nodes, collapse opposite ones holding it."""
        if not _is_node(b):
            return b
        if a in b[1]:
            if b[0] != op:
                return a
            return self.make(b[0], (self._absorb(op, c, a) for c in b[1] if c != a), False)
        if not any(_is_node(c) for c in b[1]):
            return b
        return self.make(b[0], (self._absorb(op, c, a) for c in b[1]), False)

    def _factor(self, op: str, args: list[Expr]) -> list[Expr]:
        """``Min(Max(x, y), Max(x, z)) → Max(x, Min(y, z))`` when all opposite nodes share x."""
        other = "Min" if op == "Max" else "Max"
        others = [a for a in args if _is_node(a) and a[0] == other]
        if len(args) < 2 or not others:
            return args
        sets = [set(a[1]) for a in others]
        common = set.intersection(*sets)
        if not common:
            return args
        rest = [a for a in args if not (_is_node(a) and a[0] == other)]
        new = list(common)
        diffs = [s - common for s in sets]
        if all(diffs):
            inner = [self.make(other, d, False) for d in diffs]
            new.append(self.make(op, inner, False))
        return [*rest, self.make(other, new, False)]

    def prune(self, e: Expr, ctx: _Context) -> Expr:
        """:func:`einspace.exponents.prune` on a node: drop arguments another always beats.

        Only a tie (two arguments equal on the box) depends on the names (sympy keeps the
        first in its order); results without one are cached."""
        return self._prune(e, ctx)[0]

    def _prune(self, e: Expr, ctx: _Context) -> tuple[Expr, bool]:
        if not _is_node(e):
            return e, False
        got = self._pruned.get(e)
        if got is not None:
            return got, False
        pairs = [self._prune(a, ctx) for a in e[1]]
        args = [a for a, _ in pairs]
        tied = any(t for _, t in pairs)
        is_max = e[0] == "Max"

        def beats(b: Expr, a: Expr) -> bool:
            return _le(a, b) if is_max else _le(b, a)

        beaten = [
            [j for j, b in enumerate(args) if j != i and beats(b, a)] for i, a in enumerate(args)
        ]
        if any(i in beaten[j] for i, bs in enumerate(beaten) for j in bs):
            # two arguments equal on the box: the first in sympy's order stays
            tied = True
            order = {a: r for r, a in enumerate(ctx.ordered(args))}
            kept = [
                a
                for i, a in enumerate(args)
                if not any(order[args[j]] < order[a] or i not in beaten[j] for j in beaten[i])
            ]
        else:
            kept = [a for i, a in enumerate(args) if not beaten[i]]
        out = self.make(e[0], kept)
        if not tied:
            self._pruned[e] = out
        return out, tied


def _join(parts: list[str]) -> str:
    if not parts:
        return "0"
    out = parts[0]
    for t in parts[1:]:
        out += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
    return out


def _maximal(sets: Iterable[int]) -> set[int]:
    """Drop duplicates and subsets (bitmasks): with θ ≥ 0 they never attain a maximum."""
    uniq = set(sets)
    return {s for s in uniq if not any(s & t == s and s != t for t in uniq)}


def _minimal(sets: Iterable[int]) -> set[int]:
    uniq = set(sets)
    return {s for s in uniq if not any(s & t == t and s != t for t in uniq)}


def _texts(classes: tuple[int, ...], k: int, simp: _Simplifier) -> tuple[str, str, str]:
    """ν, ω, ψ of the family with these classes, over ``simp``'s universe of classes."""
    ctx = simp.ctx
    n = len(ctx.names)
    tensor = [X, Y] + [factor_bit(i) for i in range(k)]
    touch = [sum(1 << simp.index[m] for m in classes if m & b) for b in tensor]
    xm, ym, fm = touch[0], touch[1], touch[2:]
    # the side constraints: the last class of each side is 1 − the others (no diagonal class)
    elim: list[tuple[int, int]] = []
    if not xm & ym:
        for side in (xm, ym):
            last = side.bit_length() - 1
            elim.append((last, side & ~(1 << last)))
    elim_mask = sum(1 << p for p, _ in elim)

    def form(s: int) -> Lin:
        c, plus, minus = 0, s & ~elim_mask, 0
        for p, others in elim:
            if s >> p & 1:
                c += 1
                minus |= others & ~s
                plus &= ~others
        return (c, plus, minus)

    steps = []
    for order in itertools.permutations(range(k)):
        live, sets = xm, []
        for t, f in enumerate(order):
            later = ym
            for g in order[t + 1 :]:
                later |= fm[g]
            present = live | fm[f]
            sets.append(present)
            live = present & later
        steps.append(frozenset(_maximal(sets)))
    cuts = []
    for side in range(1 << k):
        on = xm
        off = ym
        for i in range(k):
            if side >> i & 1:
                on |= fm[i]
            else:
                off |= fm[i]
        cuts.append(on & off)

    one: Lin = (1, 0, 0)
    orders = [simp.make("Max", (form(s) for s in o)) for o in set(steps)]
    nu = simp.prune(simp.make("Min", orders), ctx)
    biggest = simp.prune(simp.make("Max", (form(s) for s in _maximal(fm))), ctx)
    psi = simp.prune(simp.make("Min", [one, *(form(s) for s in _minimal(cuts))]), ctx)

    def add(terms: list[tuple[int, Expr]]) -> str:
        coefs, const = [0] * n, 0
        nodes: dict[Expr, int] = {}
        for c, t in terms:
            if _is_node(t):
                nodes[t] = nodes.get(t, 0) + c
                continue
            const += c * t[0]
            for p in range(n):
                coefs[p] += c * ((t[1] >> p & 1) - (t[2] >> p & 1))
        nodes = {e: v for e, v in nodes.items() if v}
        if len(nodes) == 1 and not const and not any(coefs) and 1 in nodes.values():
            return ctx.text(next(iter(nodes)))
        return ctx.sum_text(coefs, const, nodes)

    return (
        add([(1, nu), (1, (-1, 0, 0))]),
        add([(1, nu), (-1, biggest)]),
        add([(1, psi)]),
    )


def exponent_text(family: Family) -> dict[str, str]:
    """ν, ω and ψ of ``family`` as text: ``str`` of :meth:`Family.symbolic`, without sympy.

    Examples:
        >>> from einspace.family import Family
        >>> exponent_text(Family.parse("xA,By,AB"))      # low rank
        {'nu': 'ρ', 'omega': '0', 'psi': 'ρ'}
    """
    nu, omega, psi = _texts(family.classes, family.k, _Simplifier(family.k))
    return {"nu": nu, "omega": omega, "psi": psi}


def exponent_texts(families: Sequence[Family]) -> dict[str, list[str]]:
    """:func:`exponent_text` for many families, as columns ``nu``, ``omega``, ``psi``.

    Examples:
        >>> from einspace.enumeration import enumerate_families
        >>> cols = exponent_texts(enumerate_families(2))
        >>> len(cols["nu"]), cols["omega"][:3]
        (39, ['0', '2 - Max(2 - α, α + 1)', '0'])
    """
    simps: dict[int, _Simplifier] = {}
    rows = []
    for f in families:
        simp = simps.get(f.k)
        if simp is None:
            simp = simps[f.k] = _Simplifier(f.k)
        rows.append(_texts(f.classes, f.k, simp))
    return {key: [r[i] for r in rows] for i, key in enumerate(("nu", "omega", "psi"))}
