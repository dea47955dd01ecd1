"""Exact sizes for proxy layers: factor the width when it factors well, pad only otherwise.

In round mode a width that does not factor as the structure asks is padded or truncated:
Monarch at 128 → 128 rounds to 11 × 11 = 121, so 7 input features are ignored and 7
outputs stay zero, a silent handicap against dense. :func:`proxy_realization` takes the exact
realization (the prime factors of ``d_in`` and ``d_out`` split among the classes, the split
closest to ``d_ref ** θ_c`` in log space, i.e. the most balanced one) whenever it exists and
every class stays within a factor ``balance`` of its target size; otherwise it falls back
to round mode (within ``pad_tol``). Rank classes (touching neither x nor y) are rounded in
both modes. :func:`padding_record` turns a model's realizations into the per-layer record a
run stores.

Examples:
    >>> from einspace import Structure
    >>> r = proxy_realization(Structure.named("monarch"), 128, 128)
    >>> r.mode, r.sizes, r.padding
    ('exact', {'α': 8, 'γ': 16, 'ε': 8, 'φ': 16}, {'input': 0, 'output': 0})
    >>> r = proxy_realization(Structure.named("monarch"), 122, 122)  # 2 × 61: too lopsided
    >>> r.mode, r.sizes, r.padding
    ('round', {'α': 11, 'γ': 11, 'ε': 11, 'φ': 11}, {'input': -1, 'output': -1})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, Literal

from einspace.errors import EinspaceError
from einspace.index_classes import X, Y
from einspace.realization import Realization
from einspace.sizing import reference_dim
from einspace.structure import Structure

__all__ = ["DEFAULT_LAYER_SIZING", "LayerSizing", "padding_record", "proxy_realization"]

LayerSizing = Literal["auto", "round", "exact"]
"""How a model's structured layers are sized: ``"auto"`` (exact and most balanced where the
width factors, :func:`proxy_realization`; round otherwise), or one of
:data:`einspace.sizing.SizingMode` (``"round"``, ``"exact"``) for
:meth:`einspace.Structure.realize`. The one alias of the proxy runs, the θ space and the LM."""

DEFAULT_LAYER_SIZING: Final[LayerSizing] = "auto"
"""The default everywhere a model's layers are sized (``--mode`` of the search, the LM, the θ
space)."""


def proxy_realization(
    structure: Structure | str,
    d_in: int,
    d_out: int,
    pad_tol: float = 0.15,
    balance: float = 2.0,
) -> Realization:
    """The exact realization of ``structure`` at ``d_in → d_out`` when it is balanced, else
    the round one.

    Args:
        structure: the structure (or a spec string such as ``"btt:r=0.25"``).
        d_in: input width.
        d_out: output width.
        pad_tol: the largest relative padding accepted when falling back to round mode.
        balance: the exact realization is used when every input/output class size is within
            this factor of its target ``d_ref ** θ_c``.

    Raises:
        EinspaceError: neither an acceptable exact realization nor a round one within
            ``pad_tol`` exists (the message is round mode's, naming widths that work).

    Examples:
        >>> proxy_realization("btt", 32, 128).sizes  # exact: 4·8 = 32, 8·16 = 128
        {'α': 4, 'γ': 8, 'ε': 8, 'φ': 16, 'ρ': 2}
        >>> proxy_realization("dense", 127, 127).mode
        'exact'
    """
    if isinstance(structure, str):
        structure = Structure.parse(structure)
    if isinstance(balance, bool) or not isinstance(balance, int | float) or not balance >= 1:
        raise EinspaceError(f"balance = {balance!r} must be a number >= 1, e.g. 2")
    try:
        exact = structure.realize(d_in, d_out, mode="exact")
    except EinspaceError:
        exact = None
    if exact is not None and _balanced(exact, balance):
        return exact
    return structure.realize(d_in, d_out, mode="round", pad_tol=pad_tol)


def _balanced(r: Realization, balance: float) -> bool:
    """Every class that touches x or y is within ``balance`` of ``d_ref ** θ_c``."""
    limit = math.log(balance) + 1e-12
    classes, theta = r.structure.family.classes, r.structure.theta
    for mask, t, size in zip(classes, theta, r.class_sizes, strict=True):
        if mask & (X | Y):
            target = t * math.log(reference_dim(mask, r.d_in, r.d_out))
            if abs(math.log(size) - target) > limit:
                return False
    return True


def padding_record(layers: Mapping[str, Realization]) -> dict[str, dict[str, object]]:
    """Per layer: the realization mode, its class sizes and its input/output padding
    (positive: zero features added; negative: features dropped), JSON-ready.

    Examples:
        >>> from einspace import Structure
        >>> s = Structure.named("kronecker")
        >>> padding_record({"fc": s.realize(128, 128), "proj": proxy_realization(s, 128, 128)})
        ... # doctest: +NORMALIZE_WHITESPACE
        {'fc': {'mode': 'round', 'sizes': {'α': 11, 'β': 11, 'δ': 11, 'ε': 11},
                'input': -7, 'output': -7},
         'proj': {'mode': 'exact', 'sizes': {'α': 8, 'β': 16, 'δ': 8, 'ε': 16},
                  'input': 0, 'output': 0}}
    """
    return {
        name: {"mode": r.mode, "sizes": dict(r.sizes), **r.padding} for name, r in layers.items()
    }
