"""Index classes as bitmasks over the tensors ``x``, ``y``, ``A``, ``B``, ….

A class is the set of tensors in which one einsum index appears (docs/theory.md §1). It is stored
as an ``int`` whose bit 0 is ``x``, bit 1 is ``y`` and bit ``2 + i`` is factor ``i``
(factor 0 is ``A``). Its *token* spells the tensors: ``x`` first, then factor letters,
then ``y`` — ``"xAB"`` is γ, ``"AB"`` is ρ, ``"xAy"`` a block-diagonal index.

**Class order.** Classes are ordered by group, then by the bitmask of their factors
(``A`` = 1, ``B`` = 2, ``AB`` = 3, ``C`` = 4, …). The groups are input classes (``x`` only),
output classes (``y`` only), rank classes (neither), then block-diagonal classes (both).
For k = 2 this is exactly the paper's order ``(α, β, γ, δ, ε, φ, ρ)``.

Examples:
    >>> [class_token(m) for m in universe(2)]
    ['xA', 'xB', 'xAB', 'Ay', 'By', 'ABy', 'AB']
    >>> [class_name(m, 2) for m in universe(2)]
    ['α', 'β', 'γ', 'δ', 'ε', 'φ', 'ρ']
    >>> parse_class("γ", 2) == parse_class("xAB", 2)
    True
"""

from __future__ import annotations

from functools import lru_cache

from einspace.errors import EinspaceError

__all__ = [
    "FACTOR_LETTERS",
    "GREEK",
    "X",
    "Y",
    "class_group",
    "class_name",
    "class_sort_key",
    "class_token",
    "factor_bit",
    "factor_indices",
    "factors_mask",
    "parse_class",
    "permute_class",
    "transpose_class",
    "universe",
]

X = 1
Y = 2
FACTOR_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVW"
MAX_FACTORS = len(FACTOR_LETTERS)

#: The paper's Greek names of the seven 2-factor paper-space classes.
GREEK: dict[str, str] = {
    "xA": "α",
    "xB": "β",
    "xAB": "γ",
    "Ay": "δ",
    "By": "ε",
    "ABy": "φ",
    "AB": "ρ",
}
_GREEK_TO_TOKEN = {v: k for k, v in GREEK.items()}

#: Group numbers, in class order.
INPUT, OUTPUT, RANK, DIAGONAL = 0, 1, 2, 3


def factor_bit(i: int) -> int:
    """The bit of factor ``i`` (0 = ``A``)."""
    return 1 << (2 + i)


def factors_mask(mask: int) -> int:
    """The factors of a class as a bitmask with ``A`` = 1, ``B`` = 2, ``C`` = 4, …."""
    return mask >> 2


def factor_indices(mask: int) -> tuple[int, ...]:
    """The factor numbers in a class, ascending."""
    f = mask >> 2
    return tuple(i for i in range(f.bit_length()) if f >> i & 1)


def class_group(mask: int) -> int:
    """0 for input, 1 for output, 2 for rank and 3 for block-diagonal classes."""
    has_x, has_y = bool(mask & X), bool(mask & Y)
    if has_x and has_y:
        return DIAGONAL
    if has_x:
        return INPUT
    if has_y:
        return OUTPUT
    return RANK


def class_sort_key(mask: int) -> tuple[int, int]:
    """Sort key implementing the documented class order."""
    return class_group(mask), factors_mask(mask)


@lru_cache(maxsize=1 << 16)
def class_token(mask: int) -> str:
    """Spell a class: ``x``, factor letters, ``y``."""
    letters = "".join(FACTOR_LETTERS[i] for i in factor_indices(mask))
    return ("x" if mask & X else "") + letters + ("y" if mask & Y else "")


@lru_cache(maxsize=1 << 16)
def class_name(mask: int, k: int) -> str:
    """The paper's Greek letter for 2-factor paper-space classes, else the token."""
    token = class_token(mask)
    if k == 2:
        return GREEK.get(token, token)
    return token


def parse_class(text: str, k: int | None = None) -> int:
    """Parse a class token (``"xAB"``, letters in any order) or, for k = 2, a Greek name.

    Raises EinspaceError for anything that is not a valid class: unknown letters, no factor,
    fewer than two tensors, or a factor letter beyond ``k``.
    """
    token = text.strip()
    if token in _GREEK_TO_TOKEN and (k is None or k == 2):
        token = _GREEK_TO_TOKEN[token]
    mask = 0
    for ch in token:
        if ch == "x":
            bit = X
        elif ch == "y":
            bit = Y
        elif ch in FACTOR_LETTERS:
            bit = factor_bit(FACTOR_LETTERS.index(ch))
        else:
            raise EinspaceError(
                f"class {text!r}: unexpected character {ch!r}; a class is spelled with 'x', "
                f"'y' and factor letters A, B, C, … (e.g. 'xAB'), or for k = 2 a Greek name "
                f"({', '.join(GREEK.values())})"
            )
        if mask & bit:
            raise EinspaceError(f"class {text!r}: tensor {ch!r} appears twice")
        mask |= bit
    if factors_mask(mask) == 0:
        raise EinspaceError(
            f"class {text!r} contains no factor; every index class needs at least one "
            f"factor (e.g. {'x' if mask & X else ''}A{'y' if mask & Y else ''!s})"
        )
    if mask.bit_count() < 2:
        raise EinspaceError(
            f"class {text!r} contains a single tensor; an index class joins at least two "
            f"(e.g. 'x{token}' or '{token}y')"
        )
    if k is not None and factors_mask(mask) >> k:
        raise EinspaceError(
            f"class {text!r} names a factor beyond the {k} factors {', '.join(FACTOR_LETTERS[:k])}"
        )
    return mask


def transpose_class(mask: int) -> int:
    """Swap the roles of ``x`` and ``y``."""
    return (mask & ~3) | ((mask & X) << 1) | ((mask & Y) >> 1)


def permute_class(mask: int, perm: tuple[int, ...]) -> int:
    """Rename factors: factor ``i`` becomes factor ``perm[i]``."""
    out = mask & 3
    for i in factor_indices(mask):
        out |= factor_bit(perm[i])
    return out


@lru_cache(maxsize=64)
def universe(k: int, diagonal: bool = False) -> tuple[int, ...]:
    """Every admissible class for ``k`` factors, in class order.

    Paper space: a class has at least one factor, at least two tensors and never both
    ``x`` and ``y``. The extended space (``diagonal=True``) adds classes holding ``x`` and
    ``y`` with at least one factor.

    Examples:
        >>> len(universe(3)), len(universe(3, diagonal=True))
        (18, 25)
    """
    if not 1 <= k <= MAX_FACTORS:
        raise EinspaceError(f"k = {k!r}: the number of factors must be in 1..{MAX_FACTORS}")
    out = []
    for fm in range(1, 1 << k):
        f = fm << 2
        out.append(f | X)
        out.append(f | Y)
        if fm.bit_count() >= 2:
            out.append(f)
        if diagonal:
            out.append(f | X | Y)
    return tuple(sorted(out, key=class_sort_key))
