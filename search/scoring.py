"""Analytic candidate scoring: rank structures for a layer before training any of them.

The default objective, ``"prior"``, encodes the papers' finding (docs/theory.md §3): structures with
full rank (ψ = 1) and no parameter sharing (small ω) scale best per unit of compute. Rows are
ordered by

1. within the MAC budget (if one is given) first,
2. full rank first (a proven or measured rank equal to min(d_in, d_out); a rank that is only
   the min-cut bound never counts as full, see :attr:`einspace.Realization.rank`),
3. smaller effective ω (``omega_eff``),
4. more parameters per MAC,
5. fewer MACs (ties),

and every row reports the quantities the rule used plus a one-line ``why``. A sparse layer
(``btt_moe:e=8,k=2``, :mod:`einspace.moe`) is scored at what a token runs: ``macs`` are its
active MACs (k of E experts plus the gate), ``params`` every trained weight (all experts and
the gate) and ``active_params`` the weights a token uses (for dense structures
``active_params = params``). The objective
``"fill"`` ranks the candidates whose MACs come closest to the budget first (within budget
and full rank first), for a layer that should spend what it is given. Other objectives are
pluggable: a registered name, a callable ``f(df) -> scores`` (higher is
better), or a fitted model with ``predict(df)`` such as :class:`ExponentModel`, which regresses
measured scaling exponents on (ω, ψ, ν).

Examples:
    >>> df = score(["dense", "btt:r=0", "low_rank:r=0.5", "kronecker"], 1024, 1024)
    >>> list(df["candidate"])
    ['btt(r=0)', 'dense', 'kronecker', 'low_rank(r=0.5)']
    >>> int(df.iloc[0]["macs"]), bool(df.iloc[0]["full_rank"])
    (65536, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd

from einspace.errors import EinspaceError, suggest
from einspace.family import Family
from einspace.index_classes import class_name, universe
from einspace.moe import MoERealization, MoESpec, is_moe_spec
from einspace.realization import Realization, check_width
from einspace.realizations_table import enumerate_realizations, family_size_grid
from einspace.sizing import SizingMode
from einspace.structure import Structure, realize_sizes
from search.budget import TUNABLE, parse_budget, tune_to_budget

__all__ = [
    "OBJECTIVES",
    "ExponentModel",
    "Predictor",
    "register_objective",
    "register_ranking",
    "score",
]

Scores = npt.NDArray[np.float64]


@runtime_checkable
class Predictor(Protocol):
    """A fitted model that scores candidate rows (higher is better)."""

    def predict(self, frame: pd.DataFrame) -> Sequence[float] | npt.NDArray[np.float64]:
        """One score per row of ``frame``."""
        ...


ScoreFn = Callable[[pd.DataFrame], Sequence[float] | npt.NDArray[np.float64]]
Objective = str | ScoreFn | Predictor

Ranking = Callable[[pd.DataFrame, int], tuple[list[str], list[bool]]]
"""How a named objective orders a candidate table: called with the table and the layer's
full rank, it fills the ``score`` and ``why`` columns (helper columns start with ``_``) and
returns the sort keys and whether each is ascending."""

OBJECTIVES: dict[str, Ranking] = {}
"""Every named objective, ``"prior"`` (the default) included."""


def register_ranking(name: str, ranking: Ranking) -> None:
    """Register a named objective given as a :data:`Ranking` (for lexicographic rules such
    as the prior); a name can be registered once."""
    if name in OBJECTIVES:
        raise EinspaceError(f"objective {name!r} is already registered")
    OBJECTIVES[name] = ranking


def register_objective(name: str, fn: ScoreFn) -> None:
    """Register a named objective by its scores (higher ranks first, within the budget
    first); a name can be registered once.

    Examples:
        >>> register_objective("fewest_params", lambda df: -df["params"].to_numpy(dtype=float))
        >>> list(score(["dense", "monarch"], 64, 64, objective="fewest_params")["candidate"])
        ['monarch', 'dense']
        >>> del OBJECTIVES["fewest_params"]
    """
    register_ranking(name, _by_scores(fn))


def _by_scores(fn: ScoreFn | Predictor) -> Ranking:
    """The ranking of a score function or fitted model: within budget first, then score."""

    def ranking(t: pd.DataFrame, full_rank: int) -> tuple[list[str], list[bool]]:
        values = fn.predict(t) if isinstance(fn, Predictor) else fn(t)
        scores = np.asarray(values, dtype=float)
        if scores.shape != (len(t),) or not np.isfinite(scores).all():
            raise EinspaceError(
                f"objective returned {scores.shape} scores with non-finite values "
                f"{int((~np.isfinite(scores)).sum()) if scores.shape == (len(t),) else '?'}; "
                f"expected {len(t)} finite numbers"
            )
        t["score"] = scores
        t["why"] = [f"objective score {s:.4g}" for s in scores]
        return ["within_budget", "score"], [False, False]

    return ranking


def _rank_words(full: bool, rank: int, is_bound: bool, most: int) -> str:
    if full:
        return "full rank"
    if is_bound:
        return f"rank ≤ {int(rank)} (min-cut bound; not proven or measured)"
    return f"rank {int(rank)} < {most}"


def _prior(t: pd.DataFrame, full_rank: int) -> tuple[list[str], list[bool]]:
    """The papers' prior (module docstring): budget, full rank, small ω, params per MAC."""
    t["score"] = t["psi_eff"] - t["omega_eff"]
    t["_omega"] = t["omega_eff"].round(9)  # exact ties despite float noise
    t["why"] = [
        f"{_rank_words(fr, rk, bd, full_rank)}, "
        f"ω_eff={om:.3f}, {ppm:.3g} params/MAC" + ("" if wb else f", over budget ({int(mc)} MACs)")
        for fr, rk, bd, om, ppm, wb, mc in zip(
            t["full_rank"],
            t["rank"],
            t["rank_is_bound"],
            t["omega_eff"],
            t["params_per_mac"],
            t["within_budget"],
            t["macs"],
            strict=True,
        )
    ]
    keys = ["within_budget", "full_rank", "_omega", "params_per_mac", "macs"]
    return keys, [False, False, True, False, True]


def _fill(t: pd.DataFrame, full_rank: int) -> tuple[list[str], list[bool]]:
    """Closest to the budget first: within budget, full rank, the smallest gap between the
    MACs and the budget, then the prior's small ω and params per MAC."""
    if t["budget_used"].isna().all():
        raise EinspaceError(
            "objective 'fill' ranks by closeness to the budget; give one "
            "(budget_macs=, or --budget on the command line, e.g. --budget 1/8)"
        )
    t["score"] = -(1.0 - t["budget_used"]).abs()
    t["_gap"] = (1.0 - t["budget_used"]).abs().round(9)
    t["_omega"] = t["omega_eff"].round(9)
    t["why"] = [
        f"{_rank_words(fr, rk, bd, full_rank)}, spends {used:.1%} of the budget, "
        f"ω_eff={om:.3f}" + ("" if wb else " (over budget)")
        for fr, rk, bd, used, om, wb in zip(
            t["full_rank"],
            t["rank"],
            t["rank_is_bound"],
            t["budget_used"],
            t["omega_eff"],
            t["within_budget"],
            strict=True,
        )
    ]
    keys = ["within_budget", "full_rank", "_gap", "_omega", "params_per_mac"]
    return keys, [False, False, True, True, False]


register_ranking("prior", _prior)
register_ranking("fill", _fill)
register_objective("fewest_macs", lambda df: -df["macs"].to_numpy(dtype=float))
register_objective("params_per_mac", lambda df: df["params_per_mac"].to_numpy(dtype=float))
register_objective("rank_per_mac", lambda df: (df["rank"] / df["macs"]).to_numpy(dtype=float))


@dataclass(frozen=True)
class ExponentModel:
    """Linear model of a measured scaling exponent m ≈ c0 + c_ω ω + c_ψ ψ + c_ν ν.

    Fit it on per-structure fitted laws (columns ``omega``, ``psi``, ``nu``, ``m``) and pass
    it as ``objective=``: candidates with a larger predicted exponent rank first.

    Examples:
        >>> table = pd.DataFrame({"omega": [0, .5, 0, 0], "psi": [1, 1, .5, 1],
        ...                       "nu": [1, .5, .5, .5], "m": [.30, .25, .20, .35]})
        >>> model = ExponentModel.fit(table)
        >>> round(model.coef["omega"], 2), round(model.coef["psi"], 2)
        (-0.2, 0.3)
        >>> round(model.coef["nu"], 2), round(model.coef["intercept"], 2)
        (-0.1, 0.1)
    """

    coef: dict[str, float]

    @classmethod
    def fit(cls, table: pd.DataFrame) -> ExponentModel:
        """Least squares on rows with finite m (ridge 1e-9 keeps degenerate designs solvable)."""
        needed = ["omega", "psi", "nu", "m"]
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise EinspaceError(f"ExponentModel.fit needs columns {needed}; missing {missing}")
        rows = table[needed].astype(float).dropna()
        if len(rows) < 2:
            raise EinspaceError(f"ExponentModel.fit needs ≥ 2 rows with finite m, got {len(rows)}")
        x = np.column_stack([np.ones(len(rows)), rows[["omega", "psi", "nu"]].to_numpy()])
        y = rows["m"].to_numpy()
        beta = np.linalg.solve(x.T @ x + 1e-9 * np.eye(4), x.T @ y)
        return cls(dict(zip(["intercept", "omega", "psi", "nu"], map(float, beta), strict=True)))

    def predict(self, frame: pd.DataFrame) -> Scores:
        """Predicted exponent from the effective ω, ψ, ν columns of a score table."""
        c = self.coef
        return (
            c["intercept"]
            + c["omega"] * frame["omega_eff"].to_numpy(dtype=float)
            + c["psi"] * frame["psi_eff"].to_numpy(dtype=float)
            + c["nu"] * frame["nu_eff"].to_numpy(dtype=float)
        )


def _structure_rows(
    items: Iterable[Structure | str],
    d_in: int,
    d_out: int,
    mode: SizingMode,
    pad_tol: float,
    budget_macs: float | None,
    skipped: list[str] | None,
) -> pd.DataFrame:
    rows, failures = [], []
    for item in items:
        try:
            tunable = _tunable(item) if budget_macs is not None else None
            if tunable is not None and budget_macs is not None:
                tuned = tune_to_budget(tunable, d_in, d_out, budget_macs, mode, pad_tol)
                note = "tuned to budget" if tuned.fits else "smallest r; over budget"
                rows.append(_row(tuned.realization, f"{tuned.structure} ({note})"))
                continue
            if is_moe_spec(item):
                counts = MoESpec.parse(str(item)).realize(d_in, d_out, mode, pad_tol)
                rows.append(_moe_row(counts))
                continue
            s = Structure.parse(item) if isinstance(item, str) else item
            if not isinstance(s, Structure):
                raise EinspaceError(
                    f"candidate {item!r} is not a Structure, name or θ string; "
                    "e.g. 'btt:r=0.25' or Structure.named('monarch')"
                )
            r = s.realize(d_in, d_out, mode=mode, pad_tol=pad_tol)
        except EinspaceError as err:
            failures.append(f"{item}: {err}")
            continue
        rows.append(_row(r, str(s)))
    if failures and skipped is not None:
        skipped.extend(failures)
    elif failures:
        raise EinspaceError(
            f"{len(failures)} candidate(s) cannot be scored at d_in = {d_in}, d_out = {d_out}:\n  "
            + "\n  ".join(failures)
        )
    return pd.DataFrame(rows)


def _tunable(item: object) -> str | None:
    """The name of a bare tunable named structure (``"btt"``, not ``"btt:r=0.5"``)."""
    if not isinstance(item, str):
        return None
    key = item.strip().lower().replace("-", "_")
    return key if key in TUNABLE else None


def _row(r: Realization, label: str) -> dict[str, object]:
    return {
        "candidate": label,
        "family": str(r.family),
        "name": r.family.name,
        "k": r.k,
        "sizes": " ".join(f"{n}={v}" for n, v in r.sizes.items()),
        "params": r.params,
        "active_params": r.params,
        "macs": r.macs("sequential"),
        "macs_optimal": r.macs("optimal"),
        "rank": r.rank,
        "rank_bound": r.rank_bound,
        "rank_is_bound": r.rank_is_bound,
        "nu_eff": r.nu_eff,
        "omega_eff": r.omega_eff,
        "psi_eff": r.psi_eff,
        "padding_in": r.padding["input"],
        "padding_out": r.padding["output"],
    }


def _moe_row(r: MoERealization) -> dict[str, object]:
    """A sparse layer's row (:mod:`einspace.moe`): ``params`` counts every expert and the
    gate, ``active_params`` and ``macs`` what one token uses (k experts and the gate); the
    rank is one expert's (a Monarch), the effective exponents are of those counts."""
    log_d = math.log(math.sqrt(r.d_in * r.d_out))
    e = r.expert
    return {
        **_row(e, str(r.spec)),
        "family": str(r.btt.family),
        "name": r.spec.kind,
        "sizes": " ".join(f"{n}={v}" for n, v in r.btt.sizes.items()),
        "params": r.total_params,
        "active_params": r.active_params,
        "macs": r.active_macs,
        "macs_optimal": r.active_macs,
        "nu_eff": math.log(r.active_macs) / log_d - 1,
        "omega_eff": math.log(r.active_macs / r.total_params) / log_d,
    }


def _realization_rows(table: pd.DataFrame, k: int) -> pd.DataFrame:
    names = [class_name(m, k) for m in universe(k, True)]
    size_cols = [c for c in names if c in table.columns]
    sizes = table[size_cols].to_numpy()
    labels = [
        " ".join(f"{n}={v}" for n, v in zip(size_cols, row, strict=True) if v > 1) for row in sizes
    ]
    return pd.DataFrame(
        {
            "candidate": [f"{f} [{s}]" for f, s in zip(table["family"], labels, strict=True)],
            "family": table["family"],
            "name": table["name"],
            "k": k,
            "sizes": labels,
            "params": table["params"],
            "active_params": table["params"],
            "macs": table["macs_sequential"],
            "macs_optimal": table["macs_optimal"],
            "rank": table["rank"],
            "rank_bound": table["rank_bound"],
            "rank_is_bound": table["rank_is_bound"],
            "nu_eff": table["nu_eff"],
            "omega_eff": table["omega_eff"],
            "psi_eff": table["psi_eff"],
            "padding_in": 0,
            "padding_out": 0,
        }
    )


def _family_rows(fams: Sequence[Family], d_in: int, d_out: int) -> pd.DataFrame:
    rows = []
    for fam in fams:
        if not fam.is_valid:
            raise EinspaceError(f"family {fam} is not valid: {'; '.join(fam.violations())}")
        for sizes in family_size_grid(fam, d_in, d_out):
            r = realize_sizes(fam, [int(v) for v in sizes], d_in, d_out)
            rows.append(_row(r, f"{fam} [{' '.join(f'{n}={v}' for n, v in r.sizes.items())}]"))
    if not rows:
        raise EinspaceError(
            f"none of the {len(fams)} families has an exact realization at d_in = {d_in}, "
            f"d_out = {d_out}; try widths with more prime factors (e.g. powers of 2)"
        )
    return pd.DataFrame(rows)


def score(
    candidates: str | Iterable[Structure | str | Family],
    d_in: int,
    d_out: int | None = None,
    budget_macs: float | str | None = None,
    objective: Objective = "prior",
    mode: SizingMode = "round",
    k: int = 2,
    pad_tol: float = 0.15,
    skipped: list[str] | None = None,
) -> pd.DataFrame:
    """Rank candidate structures for a ``d_in → d_out`` layer, best first.

    Args:
        candidates: ``"all"`` (every exact realization of every valid ``k``-factor family,
            see :func:`einspace.enumerate_realizations`), or an iterable of Structures,
            structure strings (``"btt:r=0.25"``, θ strings) or Families (all their exact
            realizations).
        d_in: input width.
        d_out: output width (defaults to ``d_in``).
        budget_macs: MACs per input vector allowed (a number, or text such as ``"1/8"``,
            ``"0.125x"``, ``"5.6M"``, ``"2e9 flops"``: see :func:`search.budget.parse_budget`);
            rows above it rank last and have ``within_budget = False``, and ``budget_used``
            is each row's MACs over it. Named ``btt``, ``tt`` and ``low_rank`` given without
            ``r`` are tuned to the largest ``r`` that fits (:func:`search.budget.tune_to_budget`;
            the candidate label says so).
        objective: a registered name in :data:`OBJECTIVES` (default ``"prior"``, see the
            module docstring), a callable on the table returning scores, or a fitted model
            with ``predict``.
        mode: ``"round"`` or ``"exact"`` for structure candidates.
        k: factors for ``"all"``.
        pad_tol: largest relative padding a ``"round"`` candidate may have.
        skipped: if given, candidates that cannot be scored (a bad name, a width they do
            not realize at) are appended to it as ``"candidate: reason"`` lines and left
            out, instead of raising; if no candidate is left, EinspaceError is raised.

    Returns:
        One row per candidate with ``position`` (1 = best), ``score`` (the objective's value;
        for the prior, ψ_eff − ω_eff as a summary), the metrics and ``why``.

    Examples:
        >>> top = score("all", 64, 64, budget_macs=1024).iloc[0]
        >>> bool(top["full_rank"]), bool(top["within_budget"]), int(top["macs"]) <= 1024
        (True, True, True)
    """
    d_in = check_width(d_in, "d_in")
    d_out = d_in if d_out is None else check_width(d_out, "d_out")
    if budget_macs is not None:
        budget_macs = parse_budget(budget_macs, d_in, d_out)
    if isinstance(candidates, str):
        if candidates.strip().lower() not in ("all", "all realizations", "all_realizations"):
            candidates = [candidates]
        else:
            table = _realization_rows(enumerate_realizations(d_in, d_out, k=k), k)
            return _rank(table, d_in, d_out, budget_macs, objective)
    items = list(candidates)
    if not items:
        raise EinspaceError(
            "the candidate list is empty; give structures (e.g. ['dense', 'btt']), "
            "families, or 'all'"
        )
    fams = [c for c in items if isinstance(c, Family)]
    others = [c for c in items if not isinstance(c, Family)]
    parts = []
    if others:
        rows = _structure_rows(others, d_in, d_out, mode, pad_tol, budget_macs, skipped)
        if not rows.empty:
            parts.append(rows)
    if fams:
        parts.append(_family_rows(fams, d_in, d_out))
    if not parts:
        raise EinspaceError(
            f"none of the {len(items)} candidates can be scored at d_in = {d_in}, "
            f"d_out = {d_out}:\n  " + "\n  ".join(skipped or [])
        )
    return _rank(pd.concat(parts, ignore_index=True), d_in, d_out, budget_macs, objective)


def _rank(
    table: pd.DataFrame,
    d_in: int,
    d_out: int,
    budget_macs: float | None,
    objective: Objective,
) -> pd.DataFrame:
    t = table.copy()
    t["params_per_mac"] = t["params"] / t["macs"]
    t["full_rank"] = (t["rank"] >= min(d_in, d_out)) & ~t["rank_is_bound"].astype(bool)
    t["within_budget"] = True if budget_macs is None else t["macs"] <= budget_macs
    t["budget_used"] = np.nan if budget_macs is None else t["macs"] / budget_macs
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise EinspaceError(
                f"unknown objective {objective!r}; {suggest(objective, OBJECTIVES)}"
            )
        ranking = OBJECTIVES[objective]
    elif isinstance(objective, Predictor) or callable(objective):
        ranking = _by_scores(objective)
    else:
        raise EinspaceError(
            f"objective {objective!r} is not a name, a callable or a model with predict()"
        )
    keys, ascending = ranking(t, min(d_in, d_out))
    t = t.sort_values([*keys, "candidate"], ascending=[*ascending, True], kind="mergesort")
    t.insert(0, "position", np.arange(1, len(t) + 1))
    return t.drop(columns=[c for c in t.columns if str(c).startswith("_")]).reset_index(drop=True)
