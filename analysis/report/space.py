"""Report section 1, the space: family counts, the family tables and the k = 3 summary.

ν, ω and ψ at each family's balanced point come from the core's vectorized
:func:`einspace.family_table.family_table` (no sympy, so all 40 378 three-factor families
take about a second). Only the tables of families with up to two factors add the symbolic
forms; those are cached here because sympy needs about 0.1 s per family.

Examples:
    >>> t = family_table(2)
    >>> btt = t[t["family"] == "xA,xAB,By,ABy,AB"].iloc[0]
    >>> btt["named"], [float(btt[c]) for c in ("nu_at_theta", "omega_at_theta", "psi_at_theta")]
    ('btt', [0.75, 0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import pandas as pd

from einspace import Family, enumerate_families
from einspace.enumeration import count_families
from einspace.family_table import family_table as core_family_table

__all__ = [
    "OMEGA_BINS",
    "PSI_BINS",
    "RANK_EXPONENT",
    "family_counts",
    "family_table",
    "k3_summary",
    "symbolic_text",
]

RANK_EXPONENT = 0.25
"""θ of rank classes at a family's balanced point (:meth:`einspace.Family.balanced_theta`)."""

_SPACES = (
    ("paper", False, False),
    ("paper, mod x↔y", False, True),
    ("extended", True, False),
    ("extended, mod x↔y", True, True),
)


def family_counts(max_extended_k: int = 2) -> pd.DataFrame:
    """Valid family counts for k = 1, 2, 3 in the paper and extended spaces.

    Columns: ``k`` and one per space (``paper``, ``paper, mod x↔y``, ``extended``,
    ``extended, mod x↔y``). The k = 3 extended space (5.5 million families, about 20 s to
    count) is counted only when ``max_extended_k`` ≥ 3; otherwise its cells read
    ``"not computed"``.

    Examples:
        >>> family_counts().to_dict("records")[1]
        {'k': 2, 'paper': 39, 'paper, mod x↔y': 23, 'extended': 439, 'extended, mod x↔y': 251}
    """
    rows = []
    for k in (1, 2, 3):
        row: dict[str, object] = {"k": k}
        for label, diagonal, transpose in _SPACES:
            if diagonal and k > max_extended_k:
                row[label] = "not computed"
            else:
                row[label] = count_families(k, diagonal, transpose)
        rows.append(row)
    return pd.DataFrame(rows, columns=["k", *(s[0] for s in _SPACES)])


@lru_cache(maxsize=256)
def _symbolic(family: Family) -> tuple[str, str, str]:
    sym = family.symbolic()
    return str(sym["nu"]), str(sym["omega"]), str(sym["psi"])


def symbolic_text(family: Family) -> tuple[str, str, str]:
    """ν, ω, ψ of a family as sympy text (cached: sympy takes ~0.1 s per family).

    Examples:
        >>> symbolic_text(Family.parse("xA,By,AB"))
        ('ρ', '0', 'ρ')
    """
    return _symbolic(family)


def _theta_text(theta: tuple[float, ...] | None) -> str:
    return "—" if theta is None else "(" + ", ".join(f"{t:.4g}" for t in theta) + ")"


def family_table(k: int) -> pd.DataFrame:
    """Every valid paper-space family with ``k`` ≤ 2 factors, with exact symbolic forms.

    Columns: ``family`` (canonical form), ``greek``, ``named``, ``classes`` (count),
    ``nu``, ``omega``, ``psi`` (sympy text), ``theta`` (the balanced point) and
    ``nu_at_theta``, ``omega_at_theta``, ``psi_at_theta``.

    Examples:
        >>> t = family_table(1)
        >>> t[["family", "named", "nu", "omega", "psi"]].to_dict("records")
        [{'family': 'xA,Ay', 'named': 'dense', 'nu': '1', 'omega': '0', 'psi': '1'}]
    """
    fams = enumerate_families(k)
    core = core_family_table(k, symbolic=False, rank=RANK_EXPONENT)
    forms = [symbolic_text(f) for f in fams]
    return pd.DataFrame(
        {
            "family": core["family"],
            "greek": core["greek"],
            "named": core["name"],
            "classes": core["n_classes"],
            "nu": [f[0] for f in forms],
            "omega": [f[1] for f in forms],
            "psi": [f[2] for f in forms],
            "theta": [_theta_text(f.balanced_theta(RANK_EXPONENT)) for f in fams],
            "nu_at_theta": core["nu"],
            "omega_at_theta": core["omega"],
            "psi_at_theta": core["psi"],
        }
    )


# --------------------------------------------------------------------------- k = 3


def _bins(values: pd.Series, edges: Sequence[float], labels: Sequence[str]) -> pd.Series:
    return pd.cut(values, bins=list(edges), labels=list(labels), include_lowest=True, right=False)


# ψ = 1 (full rank) gets a bin of its own: it is what the prior asks for.
OMEGA_BINS = (
    (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0 + 1e-9),
    ("0 ≤ ω < ⅛", "⅛ ≤ ω < ¼", "¼ ≤ ω < ⅜", "⅜ ≤ ω < ½", "½ ≤ ω < ¾", "¾ ≤ ω ≤ 1"),
)
"""Edges and labels of the ω bins of the k = 3 summary."""

PSI_BINS = ((0.0, 0.5, 0.75, 1.0 - 1e-9, 1.0 + 1e-9), ("ψ < ½", "½ ≤ ψ < ¾", "¾ ≤ ψ < 1", "ψ = 1"))
"""Edges and labels of the ψ bins of the k = 3 summary."""


def k3_summary() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The k = 3 paper-space families, summarized (no sympy).

    Returns:
        ``(full, by_name, by_classes, omega_psi)``: every family with its balanced-point
        exponents; counts by named match; counts by number of classes with how many are
        full rank and sharing-free; and a count table of ω bins (rows) × ψ bins (columns).

    Examples:
        >>> full, by_name, by_classes, grid = k3_summary()  # doctest: +SKIP
        >>> len(full), int(grid.drop(columns="omega").to_numpy().sum())  # doctest: +SKIP
        (40378, 40378)
    """
    core = core_family_table(3, symbolic=False, rank=RANK_EXPONENT)
    full = pd.DataFrame(
        {
            "family": core["family"],
            "named": core["name"],
            "n_classes": core["n_classes"],
            "nu": core["nu"],
            "omega": core["omega"],
            "psi": core["psi"],
        }
    )
    by_name = (
        full.assign(named=full["named"].fillna("(unnamed)"))
        .groupby("named", sort=True)
        .size()
        .rename("families")
        .reset_index()
    )
    by_classes = (
        full.groupby("n_classes")
        .agg(
            families=("family", "size"),
            full_rank=("psi", lambda s: int((s >= 1 - 1e-9).sum())),
            omega_zero=("omega", lambda s: int((s.abs() < 1e-9).sum())),
        )
        .reset_index()
    )
    omega_bin = _bins(full["omega"].clip(lower=0.0), *OMEGA_BINS).rename("ω bin")
    psi_bin = _bins(full["psi"], *PSI_BINS).rename("ψ bin")
    grid = pd.crosstab(omega_bin, psi_bin, dropna=False)
    grid.columns = [str(c) for c in grid.columns]
    grid = grid.reset_index().rename(columns={"ω bin": "omega"})
    grid["omega"] = grid["omega"].astype(str)
    return full, by_name, by_classes, grid
