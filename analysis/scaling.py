"""Scaling laws per structure and the compute multiplier against dense: :func:`fit_table`.

docs/fits.md, and docs/theory.md §6. Two laws are fitted to a long-format table of points:

- the **parametric** law (the default when the points carry ``params`` and ``tokens``):
  Chinchilla's ``L(N, D) = E + A/N^α + B/D^β`` per structure on finished schedules
  (:mod:`analysis.chinchilla`), the multiplier read off the two compute-optimal frontiers
  with a bootstrap over whole runs (:mod:`analysis.parametric`);
- the **envelope** law, a power law through the frontier of ``(compute, loss)`` points
  (:mod:`analysis.envelope`; Chinchilla's approach 1), printed beside it as a cross-check
  and the only law for tables without ``params`` and ``tokens``.

Each structure gets a verdict in words (:mod:`analysis.verdict`); :func:`format_multiplier`
prints a row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis.envelope import (
    BOOTSTRAP_SAMPLES,
    MIN_FRONTIER_POINTS,
    WARMUP_FRACTION,
    compute_multiplier,
    envelope_table,
    interpolated_multiplier,
    power_law_points,
)
from analysis.laws import FORMS, ScalingFit, fit_power_law, frontier
from analysis.parametric import parametric_table
from analysis.verdict import NOT_SEPARABLE, verdict, what_would_separate
from einspace.errors import EinspaceError, suggest

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "FORMS",
    "LAWS",
    "MIN_FRONTIER_POINTS",
    "WARMUP_FRACTION",
    "ScalingFit",
    "compute_multiplier",
    "fit_power_law",
    "fit_table",
    "format_multiplier",
    "frontier",
    "interpolated_multiplier",
    "power_law_points",
]

LAWS: tuple[str, ...] = ("auto", "parametric", "envelope")
"""What :func:`fit_table` fits: ``auto`` is ``parametric`` when the points carry ``params``
and ``tokens``, else ``envelope``."""

_ENVELOPE_KEPT = ("m", "m_se", "a", "a_se", "l_inf", "n_points", "compute_min", "compute_max")
"""The envelope columns kept beside the parametric law (its fit; its multiplier is re-read)."""


def fit_table(
    points: pd.DataFrame,
    group: str = "structure",
    dense: str = "dense",
    *,
    compute: str = "compute",
    loss: str = "loss",
    law: str = "auto",
    form: str = "power",
    use_frontier: bool = True,
    run: str = "run_id",
    width: str = "width",
    step: str = "step",
    lr: str = "lr",
    params: str = "params",
    tokens: str = "tokens",
    parent: str = "parent",
    final: str = "final",
    warmup_fraction: float = WARMUP_FRACTION,
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit a scaling law per group, the multiplier against dense, its interval and a verdict.

    **Parametric** (``law="parametric"``, or ``"auto"`` with ``params`` and ``tokens``):
    ``L(N, D) = E + A/N^α + B/D^β`` per group on finished schedules (``final`` true; every
    row without a ``final`` column, said in the note). ``multiplier`` is
    ``C*_dense(L) / C*_group(L)`` (least compute ``6·M(N)·D`` to reach ``L``; ``M`` from
    ``macs_per_token``, else ``compute / (6 · tokens)``) at ``multiplier_loss``, the lowest
    loss both measured at which both optima lie inside the ``N`` and ``D`` measured (NaN
    and a note where none does). ``multiplier_lo``/``multiplier_hi``: a seeded, rescaled
    90 % bootstrap resampling whole runs (``parent`` else ``run``) within each ``width``.
    ``n_opt_exponent`` (``a`` of ``N_opt ∝ C^a``) and ``tokens_per_param`` are read at
    ``multiplier_loss``; the envelope law sits beside it (``m``, ``a``,
    ``multiplier_envelope`` at the same loss), ``multiplier_status`` ``disagrees`` where it
    falls outside the interval. **Envelope** (``law="envelope"``, or ``"auto"`` without
    those columns, said in the note): :func:`analysis.envelope.envelope_table`. Either way
    ``verdict`` is ``ahead of dense``, ``behind dense`` or ``not separable at this budget``
    and ``to_separate`` says what would settle the last (docs/fits.md).

    Args:
        points: a DataFrame with columns ``group``, ``compute`` and ``loss`` (optionally
            ``run``, ``width``, ``step``, ``lr``, ``params``, ``tokens``, ``parent``,
            ``final`` and ``macs_per_token``).
        group: the column that identifies a structure.
        dense: the value of ``group`` that is the dense baseline.
        compute: the training-compute column (FLOPs, ``6 · MACs per token · tokens``).
        loss: the loss column.
        law: one of :data:`LAWS`.
        form: the envelope's form, ``"power"`` or ``"offset"``.
        use_frontier: the envelope fits frontier points only.
        run: the run-id column.
        width: the width column.
        step: the step column (envelope without ``final``: warmup).
        lr: the learning-rate column (envelope without ``final``: warmup).
        params: the column of ``N``, every trained parameter.
        tokens: the column of ``D``, training tokens so far.
        parent: the trunk's run id of a cooldown branch (None otherwise).
        final: True on the last point of a finished schedule.
        warmup_fraction: see :func:`analysis.envelope.power_law_points`.
        bootstrap: replicates of the interval (0: none).
        seed: seed of the bootstrap.

    Returns:
        One row per group, sorted by group.

    Raises:
        EinspaceError: a column is missing, or ``law`` or ``form`` is unknown.

    Examples:
        >>> from analysis.synthetic import DEFAULT_STRUCTURES, chinchilla_points, true_multiplier
        >>> pts = chinchilla_points(seeds=2, random_state=0)
        >>> t = fit_table(pts, loss="eval_loss", bootstrap=50).set_index("structure")
        >>> t.loc["btt", "verdict"], t.loc["low_rank", "verdict"]
        ('ahead of dense', 'behind dense')
        >>> dense, btt, _ = DEFAULT_STRUCTURES
        >>> truth = true_multiplier(btt, dense, t.loc["btt", "multiplier_loss"])
        >>> round(truth, 2), round(float(t.loc["btt", "multiplier"]), 1)
        (1.57, 1.7)
    """
    missing = [col for col in (group, compute, loss) if col not in points.columns]
    if missing:
        have = [str(col) for col in points.columns]
        raise EinspaceError(
            f"fit_table needs columns {[group, compute, loss]}; missing {missing}. "
            f"Columns given: {have}" + (f"; {suggest(missing[0], have)}" if have else "")
        )
    if law not in LAWS:
        raise EinspaceError(f"unknown law {law!r}; {suggest(str(law), LAWS)}")
    has_nd = params in points.columns and tokens in points.columns
    if has_nd and law == "auto":  # an older store's runs have the columns but no values
        known = points[params].notna() & points[tokens].notna()
        has_nd = bool(known.any())
    if law == "parametric" and not has_nd:
        raise EinspaceError(
            f"law='parametric' needs the columns {params!r} and {tokens!r} (N and D of each "
            f"point); use law='envelope' for a table of (compute, loss) points"
        )
    # scipy's own BLAS is limited only if it is loaded before the limit is set
    import scipy.optimize
    import scipy.stats  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # hundreds of small solves: one BLAS thread is fastest
        return _fit(points, group, dense, law, has_nd, locals())


def _fit(
    points: pd.DataFrame,
    group: str,
    dense: str,
    law: str,
    has_nd: bool,
    args: Mapping[str, Any],
) -> pd.DataFrame:
    """Both laws (or the envelope alone), then the verdicts: :func:`fit_table`'s work."""
    names = ("compute", "loss", "form", "use_frontier", "run", "width", "step", "lr", "final")
    envelope = envelope_table(
        points,
        group,
        dense,
        **{k: args[k] for k in names},
        warmup_fraction=args["warmup_fraction"],
        bootstrap=args["bootstrap"],
        seed=args["seed"],
    )
    if law == "envelope" or not has_nd:
        table = envelope.assign(law="envelope", multiplier_envelope=envelope["multiplier"])
        if law == "auto":
            extra = (
                f"no {args['params']!r}/{args['tokens']!r} columns (or no values in them: runs "
                f"logged without N and D, e.g. by an older einspace): the envelope law is fitted"
            )
            table["note"] = [_join(n, extra) for n in table["note"]]
        return _with_verdicts(table, group, dense)
    return _parametric(points, envelope, group, dense, args)


def _parametric(
    points: pd.DataFrame,
    envelope: pd.DataFrame,
    group: str,
    dense: str,
    args: Mapping[str, Any],
) -> pd.DataFrame:
    """The parametric rows of :func:`fit_table`, with the envelope beside them."""
    final = args["final"]
    positive = (points[args["compute"]] > 0) & points[args["loss"]].notna()
    if final in points.columns:
        finished = points[points[final].fillna(False).astype(bool) & positive]
        extra = ""
    else:
        finished = points[positive]
        extra = f"no {final!r} column: every point is taken as a finished schedule"
    names = ("loss", "params", "tokens", "compute", "width", "run", "parent")
    columns = {k: args[k] for k in names}
    table = parametric_table(
        finished, points, group, dense, columns, args["bootstrap"], args["seed"]
    )
    if extra:
        table["note"] = [_join(n, extra) for n in table["note"]]
    env = envelope[[group, *_ENVELOPE_KEPT, "n_used", "n_left_out"]]
    table = table.merge(env, on=group, how="left")
    table["multiplier_envelope"] = _envelope_at(table, group, dense)
    env_m, lo, hi = table["multiplier_envelope"], table["multiplier_lo"], table["multiplier_hi"]
    flag = env_m.notna() & lo.notna() & ((env_m < lo) | (env_m > hi))
    table["multiplier_flag"] = flag
    for i in table.index[flag & (table[group] != dense)]:
        table.loc[i, "multiplier_status"] = "disagrees"
        text = (
            f"the envelope law's {env_m[i]:.3g}× at the same loss lies outside the parametric "
            f"90 % interval [{lo[i]:.3g}, {hi[i]:.3g}]"
        )
        table.loc[i, "note"] = _join(str(table.loc[i, "note"]), text)
    return _with_verdicts(table, group, dense)


def _envelope_at(table: pd.DataFrame, group: str, dense: str) -> list[float]:
    """Each row's envelope multiplier read at its parametric ``multiplier_loss``: the
    compute ``exp((a − log(L − l_inf)) / m)`` of dense's envelope over the row's; NaN where
    either envelope does not reach that loss on the compute it measured."""
    dense_rows = table[table[group] == dense]
    if dense_rows.empty:
        return [math.nan] * len(table)
    dense_row = dense_rows.iloc[0]

    def compute_at(row: pd.Series, loss: float) -> float:
        m, a, l_inf = float(row["m"]), float(row["a"]), float(row["l_inf"])
        if not (m > 0 and loss > l_inf):
            return math.nan
        c = math.exp((a - math.log(loss - l_inf)) / m)
        lo, hi = float(row["compute_min"]), float(row["compute_max"])
        return c if lo * (1 - 1e-9) <= c <= hi * (1 + 1e-9) else math.nan

    out = []
    for _, row in table.iterrows():
        loss = float(row["multiplier_loss"])
        if not math.isfinite(loss):
            out.append(math.nan)
            continue
        out.append(compute_at(dense_row, loss) / compute_at(row, loss))
    return out


def _with_verdicts(table: pd.DataFrame, group: str, dense: str) -> pd.DataFrame:
    """Add ``verdict`` and ``to_separate`` (empty for dense itself)."""
    verdicts, advice = [], []
    for _, row in table.iterrows():
        if row[group] == dense:
            verdicts.append("baseline")
            advice.append("")
            continue
        status = str(row.get("multiplier_status", ""))
        if status in ("no dense", "fit failed"):
            verdicts.append(f"no verdict ({status})")
            advice.append("")
            continue
        lo, hi = float(row["multiplier_lo"]), float(row["multiplier_hi"])
        v = verdict(lo, hi)
        verdicts.append(v)
        if v != NOT_SEPARABLE:
            advice.append("")
        elif "seeds" in row and "flops" in row:
            advice.append(
                what_would_separate(
                    float(row["multiplier"]),
                    lo,
                    hi,
                    _count(row["seeds"]),
                    float(row["flops"]),
                    float(row["wider_flops"]),
                )
            )
        else:
            advice.append(
                "more seeds, widths or longer runs; without params and tokens the cost "
                "cannot be estimated"
            )
    return table.assign(verdict=verdicts, to_separate=advice)


def _count(value: object) -> int:
    """A count column's value as an int (1 where it is missing)."""
    number = float(value) if isinstance(value, int | float) else math.nan
    return int(number) if math.isfinite(number) and number >= 1 else 1


def _join(note: object, extra: str) -> str:
    text = "" if note is None or (isinstance(note, float) and math.isnan(note)) else str(note)
    return f"{text}; {extra}" if text else extra


def format_multiplier(row: Mapping[str, Any] | pd.Series) -> str:
    """One multiplier of a :func:`fit_table` row as text, with its interval and verdict.

    Examples:
        >>> format_multiplier({"multiplier": 2.2, "multiplier_lo": 1.41, "multiplier_hi": 3.1,
        ...                    "multiplier_status": "ok", "verdict": "ahead of dense"})
        '2.2× [1.41, 3.1] ahead of dense'
        >>> format_multiplier({"multiplier": float("nan"), "multiplier_status": "no overlap"})
        'n/a (no overlap)'
        >>> format_multiplier({"multiplier": 7.06, "multiplier_lo": 2.0, "multiplier_hi": 9.9,
        ...                    "multiplier_status": "too little data"})
        '7.06× [2, 9.9] (rests on too little data)'
    """
    value = float(row.get("multiplier", math.nan))
    status = str(row.get("multiplier_status", "") or "")
    if not math.isfinite(value):
        return f"n/a ({status or 'not computed'})"
    lo, hi = float(row.get("multiplier_lo", math.nan)), float(row.get("multiplier_hi", math.nan))
    text = f"{value:.3g}×" + (f" [{lo:.3g}, {hi:.3g}]" if math.isfinite(lo) else " [no interval]")
    said = str(row.get("verdict", "") or "")
    if said and said != "baseline":
        text += f" {said}"
    if status == "too little data":
        text += " (rests on too little data)"
    elif status == "disagrees":
        other = row.get("multiplier_envelope", math.nan)
        if row.get("law") == "envelope" or not math.isfinite(float(other)):
            other = row.get("multiplier_interp", math.nan)
            text += f" (interpolated {float(other):.3g}× lies outside)"
        else:
            text += f" (envelope {float(other):.3g}× lies outside)"
    return text
