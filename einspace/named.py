"""Named points of the space (docs/theory.md §1): dense, low rank, Kronecker, TT, Monarch, BTT.

Each entry maps its parameters to class exponents; :meth:`Structure.named
<einspace.structure.Structure.named>` builds the structure and :attr:`Family.name
<einspace.family.Family.name>` finds a family's name. This module is data: it imports
neither. Registering a
name twice raises, and an unknown name's error lists the valid names.

Defaults: ``low_rank`` has ``r = 0.5``, ``tt`` and ``btt`` have ``r = 0.25`` (rank d^r), and
``block_diagonal`` (extended space) has ``b = 0.5`` (d^b blocks of size d^(1-b)).

Examples:
    >>> sorted(NAMED)
    ['block_diagonal', 'btt', 'dense', 'kronecker', 'low_rank', 'monarch', 'tt']
    >>> named_theta("btt", r=0.5)
    (0.5, 0.0, 0.5, 0.0, 0.5, 0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from einspace.errors import EinspaceError, suggest

__all__ = [
    "NAMED",
    "NamedStructure",
    "check_params",
    "lookup",
    "named_classes",
    "named_theta",
    "register_named",
]


@dataclass(frozen=True)
class NamedStructure:
    """A registered named structure.

    Attributes:
        name: registry key.
        classes: builds the class → exponent mapping from the parameters.
        defaults: parameter names and default values.
        bounds: allowed (low, high) per parameter, inclusive.
        description: one line for help texts.
    """

    name: str
    classes: Callable[..., dict[str, float]]
    defaults: dict[str, float]
    bounds: dict[str, tuple[float, float]]
    description: str


NAMED: dict[str, NamedStructure] = {}


def register_named(entry: NamedStructure) -> None:
    """Add a named structure; a name can be registered once."""
    if entry.name in NAMED:
        raise EinspaceError(f"named structure {entry.name!r} is already registered")
    NAMED[entry.name] = entry


def _paper(t: tuple[float, ...]) -> dict[str, float]:
    return dict(zip(("α", "β", "γ", "δ", "ε", "φ", "ρ"), t, strict=True))


_H = 0.5
for _entry in (
    NamedStructure(
        "dense", lambda: _paper((1, 0, 0, 1, 0, 0, 0)), {}, {}, "the unstructured matrix"
    ),
    NamedStructure(
        "low_rank",
        lambda r: _paper((1, 0, 0, 0, 1, 0, r)),
        {"r": 0.5},
        {"r": (1e-9, 1.0)},
        "U V with rank d^r",
    ),
    NamedStructure(
        "kronecker", lambda: _paper((_H, _H, 0, _H, _H, 0, 0)), {}, {}, "A ⊗ B, two √d blocks"
    ),
    NamedStructure(
        "tt",
        lambda r: _paper((_H, _H, 0, _H, _H, 0, r)),
        {"r": 0.25},
        {"r": (0.0, 1.0)},
        "tensor train with rank d^r",
    ),
    NamedStructure(
        "monarch", lambda: _paper((_H, 0, _H, 0, _H, _H, 0)), {}, {}, "two block-diagonal factors"
    ),
    NamedStructure(
        "btt",
        lambda r: _paper((_H, 0, _H, 0, _H, _H, r)),
        {"r": 0.25},
        {"r": (0.0, 1.0)},
        "block tensor train with rank d^r",
    ),
    NamedStructure(
        "block_diagonal",
        lambda b: {"xA": 1 - b, "Ay": 1 - b, "xAy": b},
        {"b": 0.5},
        {"b": (1e-9, 1.0 - 1e-9)},
        "d^b dense blocks on the diagonal (extended space)",
    ),
):
    register_named(_entry)


def check_params(entry: NamedStructure, params: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(params) - set(entry.defaults))
    if unknown:
        expected = ", ".join(entry.defaults) or "no parameters"
        raise EinspaceError(
            f"{entry.name!r} got unknown parameter(s) {unknown}; it takes {expected}"
        )
    values = {**entry.defaults, **params}
    for key, value in values.items():
        low, high = entry.bounds[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not low <= value <= high:
            clipped = (
                min(max(value, low), high) if ok and math.isfinite(value) else entry.defaults[key]
            )
            raise EinspaceError(
                f"{entry.name!r}: parameter {key} = {value!r} must be a number in "
                f"[{low:g}, {high:g}]; nearest valid value: {clipped:g}"
            )
    return values


def lookup(name: str) -> NamedStructure:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    key = name.strip().lower().replace("-", "_")
    if key not in NAMED and key.endswith("moe"):
        raise EinspaceError(
            f"{name!r} is a sparse spec, not a structure: a single structured matrix cannot "
            "route tokens. Build it with einspace.moe.MoESpec / einspace.nn.BTTMoE, or give it "
            "to replace_linear, show or score, which accept both"
        )
    if key not in NAMED:
        raise EinspaceError(f"unknown structure name {name!r}; {suggest(key, NAMED)}")
    return NAMED[key]


def named_classes(name: str, **params: float) -> dict[str, float]:
    """The class → exponent mapping of a named structure."""
    entry = lookup(name)
    return {k: float(v) for k, v in entry.classes(**check_params(entry, params)).items()}


def named_theta(name: str, **params: float) -> tuple[float, ...]:
    """The paper's 7-vector (α, β, γ, δ, ε, φ, ρ) of a 2-factor paper-space named point."""
    classes = named_classes(name, **params)
    order = ("α", "β", "γ", "δ", "ε", "φ", "ρ")
    if set(classes) - set(order):
        raise EinspaceError(f"{name!r} is not a point of the 2-factor paper space")
    return tuple(classes.get(g, 0.0) for g in order)
