"""Report section 3, cost at a given width: every exact realization, its Pareto front, scores.

The realizations are :func:`einspace.enumerate_realizations` for k = 1 (dense) and, when
the report covers two factors, k = 2, at (d_in, d_out). MACs are sequential MACs per input
vector (docs/theory.md §2), the count the default score uses.

The **Pareto front** is taken among full-rank rows (a proven or measured ``rank`` equal to
min(d_in, d_out), i.e. ψ = 1; a row whose rank is only the min-cut bound is not counted as full
rank): a row is on it when no other full-rank row has at most its MACs and at least its
parameters, one of the two strictly. These are the layers that buy the most parameters for
the fewest MACs.

Examples:
    >>> df = realization_table(16, 16, max_k=2)
    >>> front = df[df["pareto"]].sort_values("macs_sequential")
    >>> cheapest = front.iloc[0]                 # Monarch with 4 × 4 blocks: 2 · 4³ MACs
    >>> cheapest["name"], cheapest["sizes"], int(cheapest["macs_sequential"])
    ('monarch', 'α=4 γ=4 ε=4 φ=4', 128)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.report.figures import new_figure, to_png
from einspace import enumerate_realizations
from einspace.errors import EinspaceError
from einspace.index_classes import class_name, universe

__all__ = ["cost_plot", "pareto_mask", "realization_table", "top_candidates"]

MACS = "macs_sequential"
"""The MAC count used for the cost plot and the Pareto front (as in ``search.score``)."""


def pareto_mask(macs: npt.ArrayLike, params: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Rows not dominated by another row with ≤ MACs and ≥ params (one strictly).

    Examples:
        >>> pareto_mask([1, 2, 2, 3, 3], [1, 5, 4, 5, 9]).tolist()
        [True, True, False, False, True]
    """
    m = np.asarray(macs, dtype=float)
    p = np.asarray(params, dtype=float)
    if m.size == 0:
        return np.zeros(0, dtype=bool)
    levels, inverse = np.unique(m, return_inverse=True)
    group_max = np.full(levels.size, -np.inf)
    np.maximum.at(group_max, inverse, p)
    below = np.concatenate([[-np.inf], np.maximum.accumulate(group_max)[:-1]])
    return (p >= group_max[inverse]) & (p > below[inverse])


def _sizes_text(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    values = frame[columns].to_numpy()
    return [
        " ".join(f"{c}={int(v)}" for c, v in zip(columns, row, strict=True) if v > 1)
        for row in values
    ]


def realization_table(d_in: int, d_out: int, max_k: int = 2) -> pd.DataFrame:
    """Every exact realization with k ≤ ``max_k`` (≤ 2) factors at (d_in, d_out).

    The columns of :func:`einspace.enumerate_realizations` (class-size columns of every k,
    empty where a class does not exist for that k), plus ``k``, ``sizes`` (the present
    classes as text), ``full_rank`` and ``pareto``.

    Raises:
        EinspaceError: a bad width, or more realizations than the enumerator allows.
    """
    frames = []
    missing: EinspaceError | None = None
    for k in range(1, min(max_k, 2) + 1):
        try:
            df = enumerate_realizations(d_in, d_out, k=k)
        except EinspaceError as err:
            if "no exact realization" not in str(err):
                raise
            missing = err  # e.g. width 1: no class can have size ≥ 2
            continue
        size_cols = [class_name(m, k) for m in universe(k)]
        df.insert(1, "k", k)
        df.insert(4, "sizes", _sizes_text(df, size_cols))
        frames.append(df)
    if not frames:
        assert missing is not None
        raise missing
    table = pd.concat(frames, ignore_index=True)
    for col in table.columns:
        if col in {class_name(m, k) for k in (1, 2) for m in universe(k)}:
            table[col] = table[col].astype("Int64")
    table["full_rank"] = (table["rank"] >= min(d_in, d_out)) & ~table["rank_is_bound"]
    table["pareto"] = False
    full = table["full_rank"].to_numpy()
    table.loc[full, "pareto"] = pareto_mask(
        table.loc[full, MACS].to_numpy(), table.loc[full, "params"].to_numpy()
    )
    return table


def cost_plot(table: pd.DataFrame, top: pd.DataFrame | None, d_in: int, d_out: int) -> bytes:
    """PNG: params vs MACs (log-log) of every realization, the Pareto front highlighted."""
    fig = new_figure(8.0, 5.6)
    ax = fig.add_subplot()
    rest = table[~table["full_rank"]]
    full = table[table["full_rank"]]
    front = table[table["pareto"]].sort_values(MACS)
    # Line2D markers draw tens of thousands of points much faster than scatter
    ax.plot(
        rest[MACS],
        rest["params"],
        ls="none",
        marker="o",
        ms=2,
        c="0.72",
        alpha=0.5,
        mec="none",
        label="rank-deficient (ψ < 1)",
    )
    ax.plot(
        full[MACS],
        full["params"],
        ls="none",
        marker="o",
        ms=2.5,
        c="#7a9cc6",
        alpha=0.6,
        mec="none",
        label="full rank (ψ = 1)",
    )
    ax.step(front[MACS], front["params"], where="post", c="#d1495b", lw=1.2)
    ax.scatter(
        front[MACS],
        front["params"],
        s=28,
        c="#d1495b",
        edgecolors="k",
        linewidths=0.4,
        label="Pareto front (ψ = 1)",
        zorder=3,
    )
    dense = table[table["name"] == "dense"]
    if len(dense):
        ax.scatter(
            dense[MACS],
            dense["params"],
            marker="*",
            s=160,
            c="gold",
            edgecolors="k",
            linewidths=0.6,
            label="dense",
            zorder=4,
        )
    if top is not None and len(top):
        ax.scatter(
            top["macs"],
            top["params"],
            s=90,
            facecolors="none",
            edgecolors="#2a9d3f",
            linewidths=1.2,
            label=f"top {len(top)} by score",
            zorder=5,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per input vector (sequential)")
    ax.set_ylabel("parameters")
    ax.set_title(f"{len(table)} exact realizations at d_in = {d_in}, d_out = {d_out}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return to_png(fig)


SCORE_COLUMNS = (
    "position",
    "candidate",
    "name",
    "params",
    "macs",
    "rank",
    "omega_eff",
    "psi_eff",
    "nu_eff",
    "params_per_mac",
    "why",
)


def top_candidates(d_in: int, d_out: int, max_k: int = 2) -> pd.DataFrame | str:
    """The default-score ranking of every exact ``min(max_k, 2)``-factor realization.

    Returns the DataFrame of ``search.score("all", …)``, or a sentence saying why
    there is none (nothing can be realized exactly).
    """
    from search import score

    try:
        return score("all", d_in, d_out, k=min(max_k, 2))
    except EinspaceError as err:
        return f"No candidates could be scored: {err}"
