"""Tables of families with their exponents, vectorized over canonical family codes.

Each family is placed at its balanced point (:meth:`Family.balanced_theta`: each side's
exponent shared equally, rank classes at ``rank``). ν, ω and ψ there are computed with bit
operations on whole arrays of family codes — the sequential steps, factor sets and x–y cuts
are all masks of the code — so the 40,378 three-factor families take well under a second.

Examples:
    >>> t = family_table(2)
    >>> len(t), list(t.loc[t["name"] == "btt", ["nu", "omega", "psi"]].iloc[0])
    (39, [0.75, 0.0, 1.0])
    >>> t.loc[t["name"] == "btt", "nu_symbolic"].iloc[0]
    'Max(-α + ρ + 2, -ε + ρ + 2) - 1'
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from einspace.enumeration import check_k, too_many_message
from einspace.errors import EinspaceError
from einspace.exponent_text import exponent_texts
from einspace.index_classes import X, Y, factor_bit, universe

__all__ = ["balanced_exponents", "family_listing", "family_table"]

Floats = npt.NDArray[np.float64]


def _has(bit: int, mask: int) -> bool:
    return bool(mask & bit)


def _straddles(side: int, mask: int) -> bool:
    """Whether a class has tensors on both sides of a bipartition."""
    return bool(mask & side and mask & ~side)


def balanced_exponents(
    codes: npt.NDArray[np.uint32], k: int, diagonal: bool, rank: float = 0.25
) -> dict[str, Floats]:
    """ν, ω, ψ at each family's balanced point, for an array of family codes.

    Families without a balanced point (see :meth:`Family.balanced_theta`) get NaN.
    """
    classes = universe(k, diagonal)
    c = codes.astype(np.uint32)

    def mask(pred: Callable[[int], object]) -> np.uint32:
        return np.uint32(sum(1 << j for j, m in enumerate(classes) if pred(m)))

    m_in = mask(lambda m: m & X and not m & Y)
    m_out = mask(lambda m: m & Y and not m & X)
    m_diag = mask(lambda m: m & X and m & Y)
    m_rank = mask(lambda m: not m & (X | Y))
    n_in = np.bitwise_count(c & m_in).astype(float)
    n_out = np.bitwise_count(c & m_out).astype(float)
    n_diag = np.bitwise_count(c & m_diag).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_diag = np.where(n_diag > 0, 1.0 / (np.maximum(n_in, n_out) + n_diag), 0.0)
        t_in = (1.0 - n_diag * t_diag) / n_in
        t_out = (1.0 - n_diag * t_diag) / n_out
    bad = ((n_in > 0) & (t_in <= 0)) | ((n_out > 0) & (t_out <= 0))

    def total(s: npt.NDArray[np.uint32]) -> Floats:
        out = np.bitwise_count(s & m_diag) * t_diag + np.bitwise_count(s & m_rank) * rank
        with np.errstate(invalid="ignore"):
            out = out + np.where(n_in > 0, np.bitwise_count(s & m_in) * t_in, 0.0)
            out = out + np.where(n_out > 0, np.bitwise_count(s & m_out) * t_out, 0.0)
        return np.asarray(out, dtype=float)

    t_x = mask(lambda m: m & X)
    t_y = mask(lambda m: m & Y)
    t_f = [mask(functools.partial(_has, factor_bit(i))) for i in range(k)]
    nu = np.full(len(c), np.inf)
    for order in itertools.permutations(range(k)):
        live = c & t_x
        worst = np.zeros(len(c))
        for t, f in enumerate(order):
            later = t_y
            for g in order[t + 1 :]:
                later = later | t_f[g]
            present = live | (c & t_f[f])
            worst = np.maximum(worst, total(present))
            live = present & later
        nu = np.minimum(nu, worst)
    nu = nu - 1.0
    biggest = np.max([total(c & tf) for tf in t_f], axis=0)
    omega = 1.0 + nu - biggest
    psi = np.ones(len(c))
    for side in range(1 << k):
        xs = X | (side << 2)
        cut = mask(functools.partial(_straddles, xs))
        psi = np.minimum(psi, total(c & cut))
    out = {"nu": nu, "omega": omega, "psi": psi}
    for v in out.values():
        v[bad] = np.nan
    return {key: np.round(v, 12) + 0.0 for key, v in out.items()}


def family_table(
    k: int,
    diagonal: bool = False,
    modulo_transpose: bool = False,
    symbolic: bool | None = None,
    rank: float = 0.25,
) -> pd.DataFrame:
    """One row per valid family: ``family_id``, ``family`` (canonical string), ``greek``,
    ``name``, ``n_classes``, ν/ω/ψ at the balanced point, and (``symbolic=True``, the
    default for k ≤ 2) the piecewise-linear forms as text in ``nu_symbolic``,
    ``omega_symbolic``, ``psi_symbolic`` — what ``str(family.symbolic()[…])`` prints, built
    without sympy (:mod:`einspace.exponent_text`; about 0.1 ms a family). Row order and ids
    match :func:`einspace.enumerate_families`."""
    k = check_k(k)
    if k > 3:
        raise EinspaceError(too_many_message(k, diagonal))
    if symbolic is None:
        symbolic = k <= 2
    from einspace.enumeration import enumerate_families

    fams = enumerate_families(k, diagonal, modulo_transpose)
    classes = universe(k, diagonal)
    index = {m: j for j, m in enumerate(classes)}
    codes = np.array([sum(1 << index[m] for m in f.classes) for f in fams], dtype=np.uint32)
    ex = balanced_exponents(codes, k, diagonal, rank)
    table = pd.DataFrame(
        {
            "family_id": np.arange(len(fams)),
            "family": [str(f) for f in fams],
            "greek": [f.greek for f in fams],
            "name": [f.name for f in fams] if k <= 2 else [None] * len(fams),
            "n_classes": [len(f.classes) for f in fams],
            "nu": ex["nu"],
            "omega": ex["omega"],
            "psi": ex["psi"],
        }
    )
    if symbolic:
        texts = exponent_texts(fams)
        for key in ("nu", "omega", "psi"):
            table[f"{key}_symbolic"] = texts[key]
    return table


def family_listing(
    k: int = 2,
    diagonal: bool = False,
    modulo_transpose: bool = False,
    d_in: int | None = None,
    d_out: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    symbolic: bool = True,
) -> tuple[pd.DataFrame, str]:
    """What ``einspace enumerate`` lists, ready to print, and its title.

    With ``d_in`` (and optionally ``d_out``): every exact realization at those widths
    (:func:`~einspace.realizations_table.enumerate_realizations`). With ``sample``: that many
    random families of any ``k``, with ν, ω, ψ at their balanced points. Otherwise: every
    valid family (:func:`family_table`), with the symbolic forms when ``symbolic`` (fast for
    every k ≤ 3: they are built as text, see :mod:`einspace.exponent_text`). Floats are
    rounded to 6 significant digits (:func:`~einspace.display.round_floats`).

    Examples:
        >>> frame, title = family_listing(2)
        >>> title
        "39 valid families, k = 2 (ν, ω, ψ at each family's balanced point)"
        >>> list(frame.loc[frame["name"] == "tt", ["nu", "omega", "psi"]].iloc[0])
        [0.75, 0.5, 1.0]
    """
    from einspace.display import round_floats

    if d_in is not None or d_out is not None:
        if d_in is None:
            raise EinspaceError("--d-out needs --d-in as well, e.g. --d-in 1024 --d-out 1024")
        from einspace.realizations_table import enumerate_realizations

        frame = enumerate_realizations(d_in, d_out, k=k, diagonal=diagonal)
        title = f"{len(frame)} exact realizations, k = {k}, {d_in} → {d_out or d_in}"
    elif sample is not None:
        from einspace.enumeration import sample_families

        fams = sample_families(k, sample, seed, diagonal, modulo_transpose)
        points = [f.balanced_theta() for f in fams]
        nan = float("nan")
        frame = pd.DataFrame(
            {
                "family": [str(f) for f in fams],
                "n_classes": [len(f.classes) for f in fams],
                **{
                    key: [
                        getattr(f.forms, key)(t) if t is not None else nan
                        for f, t in zip(fams, points, strict=True)
                    ]
                    for key in ("nu", "omega", "psi")
                },
            }
        )
        title = f"{len(frame)} sampled families, k = {k} (seed {seed})"
    else:
        frame = family_table(k, diagonal, modulo_transpose, symbolic=symbolic)
        title = (
            f"{len(frame)} valid families, k = {k}"
            f"{', extended' if diagonal else ''}{', modulo transpose' if modulo_transpose else ''}"
            " (ν, ω, ψ at each family's balanced point)"
        )
    return round_floats(frame), title
