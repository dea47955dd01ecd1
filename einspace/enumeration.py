"""Enumerating valid families with bitmasks (docs/theory.md §1).

A candidate family over ``k`` factors is a bitmask over :func:`~einspace.index_classes.universe`
(bit j = class j). The four validity rules are bit operations on whole numpy arrays of
candidates, and canonicalization applies each factor renaming through byte lookup tables, so
no graph is built in the hot loop. Exhaustive listing covers k ≤ 3 (2**25 candidates in the
extended space); for larger k use :func:`sample_families`.

Examples:
    >>> [len(enumerate_families(k)) for k in (1, 2)]
    [1, 39]
    >>> len(enumerate_families(2, modulo_transpose=True))
    23
    >>> [str(f) for f in enumerate_families(1, diagonal=True)]
    ['xAy', 'xA,Ay', 'xA,xAy', 'Ay,xAy', 'xA,Ay,xAy']
"""

from __future__ import annotations

import itertools
import random
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from einspace.errors import EinspaceError
from einspace.family import Family
from einspace.index_classes import X, Y, factor_bit, permute_class, transpose_class, universe
from einspace.validation import check_int

__all__ = [
    "MAX_EXHAUSTIVE_K",
    "check_k",
    "count_families",
    "enumerate_families",
    "sample_families",
    "too_many_message",
]

MAX_EXHAUSTIVE_K = 3
_CHUNK = 1 << 22

Codes = npt.NDArray[np.uint32]


def check_k(k: object) -> int:
    """Validate a number of factors: an integer ≥ 1."""
    return check_int(k, "k", example=2, what="a number of factors")


def _tensor_masks(k: int, classes: tuple[int, ...]) -> list[int]:
    """For x, y, A, B, …: the bitmask of class positions containing that tensor."""
    bits = [X, Y] + [factor_bit(i) for i in range(k)]
    return [sum(1 << j for j, m in enumerate(classes) if m & b) for b in bits]


def _valid(codes: Codes, k: int, classes: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """Vectorized rules 1–4 of docs/theory.md §1 for an array of candidate codes."""
    tm = [codes.dtype.type(t) for t in _tensor_masks(k, classes)]
    ok = ((codes & tm[0]) != 0) & ((codes & tm[1]) != 0)
    f = tm[2:]
    for i in range(k):
        ok &= (codes & f[i]) != 0
        for j in range(k):
            if i != j:
                ok &= (codes & f[i] & ~f[j]) != 0
    cand = codes[ok]
    # connectivity: each tensor's neighbourhood (a tensor bitmask), then grow from x
    n_tensors = k + 2
    adj = [np.zeros(cand.shape, dtype=codes.dtype) for _ in range(n_tensors)]
    for j, m in enumerate(classes):
        present = (cand >> j) & 1
        spread = present * codes.dtype.type(m)
        for t in range(n_tensors):
            if m >> t & 1:
                adj[t] |= spread
    reach = adj[0] | X
    for _ in range(n_tensors - 2):
        grown = reach.copy()
        for t in range(1, n_tensors):
            grown |= ((reach >> t) & 1) * adj[t]
        reach = grown
    everything = (1 << n_tensors) - 1
    idx = np.flatnonzero(ok)
    ok[idx[reach != everything]] = False
    return ok


@lru_cache(maxsize=32)
def _perm_tables(k: int, diagonal: bool, modulo_transpose: bool) -> list[Codes]:
    """For each renaming (× transposition): byte tables mapping codes to renamed codes."""
    classes = universe(k, diagonal)
    index = {m: j for j, m in enumerate(classes)}
    n_bytes = (len(classes) + 7) // 8
    out = []
    for perm in itertools.permutations(range(k)):
        for t in (False, True) if modulo_transpose else (False,):
            target = []
            for m in classes:
                pm = permute_class(m, perm)
                target.append(index[transpose_class(pm) if t else pm])
            table = np.zeros((n_bytes, 256), dtype=np.uint32)
            for b in range(n_bytes):
                for v in range(256):
                    table[b, v] = sum(
                        1 << target[8 * b + i]
                        for i in range(8)
                        if v >> i & 1 and 8 * b + i < len(classes)
                    )
            out.append(table)
    return out


def _canonical_codes(codes: Codes, k: int, diagonal: bool, modulo_transpose: bool) -> Codes:
    best = np.zeros_like(codes)
    for table in _perm_tables(k, diagonal, modulo_transpose):
        mapped = np.zeros_like(codes)
        for b in range(table.shape[0]):
            mapped |= table[b][(codes >> (8 * b)) & 255]
        np.maximum(best, mapped, out=best)
    return best


def _decode(code: int, k: int, classes: tuple[int, ...]) -> Family:
    return Family(k, tuple(m for j, m in enumerate(classes) if code >> j & 1))


@lru_cache(maxsize=16)
def _canonical_set(k: int, diagonal: bool, modulo_transpose: bool) -> Codes:
    """Sorted canonical codes of every valid family (k ≤ 3: at most 25 classes, uint32)."""
    classes = universe(k, diagonal)
    total = 1 << len(classes)
    seen = np.zeros(total, dtype=bool)  # a bitmap beats sorting: codes are < 2**25
    for start in range(0, total, _CHUNK):
        codes = np.arange(start, min(total, start + _CHUNK), dtype=np.uint32)
        valid = codes[_valid(codes, k, classes)]
        seen[_canonical_codes(valid, k, diagonal, modulo_transpose)] = True
    return np.flatnonzero(seen).astype(np.uint32)


def count_families(k: int, diagonal: bool = False, modulo_transpose: bool = False) -> int:
    """The number of valid families, without building them (k ≤ 3).

    Examples:
        >>> count_families(3)
        40378
    """
    k = check_k(k)
    if k > MAX_EXHAUSTIVE_K:
        raise EinspaceError(too_many_message(k, diagonal))
    return len(_canonical_set(k, bool(diagonal), bool(modulo_transpose)))


def too_many_message(k: int, diagonal: bool) -> str:
    """Why k is beyond exhaustive listing, and what to do instead."""
    n = len(universe(k, diagonal))
    return (
        f"k = {k}: exhaustive listing covers k ≤ {MAX_EXHAUSTIVE_K} (k = {k} has 2^{n} "
        f"candidate class sets); draw a seeded sample instead with "
        f"sample_families({k}, n=100, seed=0) or "
        f"`einspace enumerate --factors {k} --sample 100`"
    )


@lru_cache(maxsize=16)
def _enumerate(k: int, diagonal: bool, modulo_transpose: bool) -> tuple[Family, ...]:
    classes = universe(k, diagonal)
    unique = _canonical_set(k, diagonal, modulo_transpose)
    fams = [_decode(int(c), k, classes) for c in unique]
    fams.sort(key=lambda f: (len(f.classes), [universe(k, True).index(m) for m in f.classes]))
    return tuple(fams)


def enumerate_families(
    k: int, diagonal: bool = False, modulo_transpose: bool = False
) -> list[Family]:
    """Every valid family with ``k`` factors, one canonical representative per class.

    Args:
        k: number of factors (1, 2 or 3; larger k is refused, see :func:`sample_families`).
        diagonal: use the extended space (block-diagonal classes holding x and y).
        modulo_transpose: also identify families that differ by swapping x and y.

    Returns:
        Families sorted by number of classes, then class order. Each has ``str(f)`` (the
        canonical string), ``f.name`` and ``f.symbolic()``.

    Examples:
        >>> fams = enumerate_families(2)
        >>> [f.name for f in fams if f.name]
        ['low_rank', 'kronecker', 'monarch', 'tt', 'btt']
    """
    k = check_k(k)
    if k > MAX_EXHAUSTIVE_K:
        raise EinspaceError(too_many_message(k, diagonal))
    return list(_enumerate(k, bool(diagonal), bool(modulo_transpose)))


def sample_families(
    k: int,
    n: int,
    seed: int = 0,
    diagonal: bool = False,
    modulo_transpose: bool = False,
    max_tries: int = 1_000_000,
) -> list[Family]:
    """Draw ``n`` distinct valid families, canonicalized, by seeded rejection sampling.

    Every subset of the class universe is equally likely to be proposed, so the sample is
    uniform over valid *labelled* families (a family with more distinct renamings is
    proportionally likelier). Works for any k.

    Examples:
        >>> fams = sample_families(4, n=3, seed=1)
        >>> len(fams), all(f.is_valid and f.k == 4 for f in fams)
        (3, True)
        >>> fams == sample_families(4, n=3, seed=1)
        True
    """
    k = check_k(k)
    n = check_int(n, "n", example=100, what="a sample size")
    classes = universe(k, diagonal)
    if k <= MAX_EXHAUSTIVE_K and n > len(enumerate_families(k, diagonal, modulo_transpose)):
        count = len(enumerate_families(k, diagonal, modulo_transpose))
        raise EinspaceError(f"n = {n} exceeds the {count} families with k = {k}; use n ≤ {count}")
    rng = random.Random(check_int(seed, "seed", low=0))
    seen: dict[Family, None] = {}
    for _ in range(max_tries):
        bits = rng.getrandbits(len(classes))
        fam = _decode(bits, k, classes)
        if fam.is_valid:
            seen.setdefault(fam.canonical(modulo_transpose), None)
            if len(seen) == n:
                return list(seen)
    raise EinspaceError(
        f"found only {len(seen)} of {n} valid families in {max_tries} draws; lower n"
    )
