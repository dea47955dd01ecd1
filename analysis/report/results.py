"""Report section 4, search results: curves, fitted scaling laws, multipliers, ω/ψ relation.

The run store is opened read-only in spirit: a path that does not exist is an error (the
store would otherwise create an empty database as a side effect), and so is an empty file.
Runs are grouped by the store's ``structure`` label; :meth:`einspace.Structure.parse` turns
a label into (ω, ψ, ν). Diverged and failed runs are left out of the fits and listed.

Examples:
    >>> fit = slope_with_se([0.0, 0.5, 0.0, 0.5], [0.30, 0.20, 0.32, 0.22])  # m against ω
    >>> round(fit["slope"], 6), round(fit["slope_se"], 6)
    (-0.2, 0.028284)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.report.figures import label_points, merge_labels, new_figure, palette, to_png
from analysis.scaling import fit_power_law, fit_table, frontier
from einspace import Structure
from einspace.errors import EinspaceError
from einspace.moe import MoESpec, is_moe_spec

if TYPE_CHECKING:
    from search.store import RunStore

__all__ = [
    "EXCLUDED_STATUSES",
    "RunData",
    "curves_plot",
    "dense_label",
    "exponent_plot",
    "exponent_relation",
    "fit_laws",
    "load_runs",
    "open_store",
    "problem_runs",
    "slope_with_se",
    "status_table",
    "structure_exponents",
]

EXCLUDED_STATUSES = ("diverged", "failed")
"""Runs with these statuses are listed but not fitted."""

# The sign of dm/dx that the papers' finding predicts (docs/theory.md §3): less sharing (small ω)
# and full rank (ψ = 1) scale better, ν matters little.
EXPECTED_SIGN = {"omega": -1, "psi": 1, "nu": 0}


def open_store(location: str | os.PathLike[str]) -> RunStore:
    """Open an existing run store for reading.

    Raises:
        EinspaceError: the file does not exist or is empty (nothing is created), or the
            store itself refuses it (not SQLite, not an einspace store, …).
    """
    from search.store import RunStore

    text = os.fspath(location)
    path: Path | None = None
    if "://" not in text:
        path = Path(text).expanduser()
    elif text.startswith("sqlite:///") and text not in ("sqlite:///", "sqlite:///:memory:"):
        path = Path(text[len("sqlite:///") :]).expanduser()
    if path is not None:
        if not path.exists():
            raise EinspaceError(
                f"run store {text!r} does not exist; expected the path of an einspace run "
                f"store (an SQLite file written by `einspace search`) or a database URL"
            )
        if path.is_file() and path.stat().st_size == 0:
            raise EinspaceError(
                f"run store {text!r} is an empty file, not an einspace run store; expected a "
                f"store written by `einspace search`"
            )
    return RunStore(text)


@dataclass(frozen=True)
class RunData:
    """The runs and points of one study, ready for the report.

    Attributes:
        runs: the store's runs of the study.
        points: their logged points (all statuses).
        loss: the loss column used (``eval_loss`` if any run logged one, else ``train_loss``).
        location: the store's URL (password hidden).
        study: the study (sweep) name, or None for every run.
        lrs: the learning-rate tuning of the study (sweep ``<study>/lr``): final eval loss per
            structure (rows) and base learning rate (columns), or None without one.
    """

    runs: pd.DataFrame
    points: pd.DataFrame
    loss: str
    location: str
    study: str | None
    lrs: pd.DataFrame | None = None

    @property
    def fit_points(self) -> pd.DataFrame:
        """Points of runs that did not diverge or fail, with positive compute and a loss."""
        p = self.points
        keep = (
            ~p["status"].isin(EXCLUDED_STATUSES)
            & p["structure"].notna()
            & (p["compute"] > 0)
            & p[self.loss].notna()
        )
        return p[keep].rename(columns={self.loss: "loss"})


def load_runs(store: RunStore, study: str | None) -> RunData:
    """Read a study's runs and points; errors name what is missing.

    Raises:
        EinspaceError: the store holds no runs, or no study of that name (the message lists
            the studies present).
    """
    every = store.runs()
    if every.empty:
        raise EinspaceError(
            f"run store {store.url} holds no runs; run `einspace search` first or pass "
            f"another store"
        )
    if study is not None:
        names = sorted({str(s) for s in every["sweep"].dropna()})
        if study not in names:
            listing = ", ".join(repr(n) for n in names) or "none (runs were stored without one)"
            raise EinspaceError(
                f"study {study!r} is not in run store {store.url}; studies present: {listing}"
            )
        runs = store.runs(sweep=study)
        points = store.points(sweep=study)
    else:
        runs, points = every, store.points()
    has_eval = points["eval_loss"].notna().any()
    loss = "eval_loss" if has_eval else "train_loss"
    return RunData(runs, points, loss, store.url, study, lr_table(every, study))


def lr_table(runs: pd.DataFrame, study: str | None) -> pd.DataFrame | None:
    """Final eval loss of the learning-rate tuning runs (sweeps ``<study>/lr``, or every
    ``…/lr`` sweep when ``study`` is None): one row per structure, one column per ``lr``;
    ``best lr`` is the column of the lowest loss (the rate the structure trained with).

    Examples:
        >>> import pandas as pd
        >>> runs = pd.DataFrame({"sweep": ["s/lr", "s/lr", "s"], "structure": ["dense"] * 3,
        ...                      "status": ["finished"] * 3, "final_eval_loss": [2.0, 1.5, 1.0],
        ...                      "config": [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.1}]})
        >>> lr_table(runs, "s").to_dict("records")
        [{'structure': 'dense', '0.01': 2.0, '0.1': 1.5, 'best lr': 0.1}]
    """
    sweeps = runs["sweep"].fillna("")
    chosen = sweeps == f"{study}/lr" if study is not None else sweeps.str.endswith("/lr")
    part = runs[chosen & (runs["status"] == "finished")]
    if part.empty:
        return None
    frame = pd.DataFrame(
        {
            "structure": part["structure"].astype(str),
            "lr": [float(c.get("lr", float("nan"))) for c in part["config"]],
            "loss": part["final_eval_loss"].astype(float),
        }
    )
    table = frame.pivot_table(index="structure", columns="lr", values="loss", aggfunc="mean")
    best = table.idxmin(axis=1)
    table.columns = [f"{c:.3g}" for c in table.columns]
    table["best lr"] = best
    return table.reset_index()


def structure_exponents(label: str) -> dict[str, object]:
    """(ω, ψ, ν) of a run-store structure label, via :meth:`einspace.Structure.parse`.

    Examples:
        >>> structure_exponents("btt")
        {'omega': 0.0, 'psi': 1.0, 'nu': 0.75, 'family': 'xA,xAB,By,ABy,AB', 'parse_error': ''}
        >>> structure_exponents("btt_moe(e=4, k=1)")["family"]  # sparse: no single matrix
        'btt_moe'
    """
    if is_moe_spec(label):
        kind = MoESpec.parse(label).kind
        return {
            "omega": math.nan,
            "psi": math.nan,
            "nu": math.nan,
            "family": kind,
            "parse_error": "",
        }
    try:
        s = Structure.parse(label)
    except EinspaceError as err:
        return {
            "omega": math.nan,
            "psi": math.nan,
            "nu": math.nan,
            "family": "",
            "parse_error": str(err),
        }
    return {"omega": s.omega, "psi": s.psi, "nu": s.nu, "family": str(s.family), "parse_error": ""}


def dense_label(labels: Sequence[str]) -> str | None:
    """The label that names the dense baseline (``"dense"`` preferred), or None.

    Examples:
        >>> dense_label(["btt", "xA=1,Ay=1"]), dense_label(["btt"])
        ('xA=1,Ay=1', None)
    """
    if "dense" in labels:
        return "dense"
    for label in labels:
        try:
            if Structure.parse(label).family.name == "dense":
                return label
        except EinspaceError:
            continue
    return None


def fit_laws(data: RunData) -> pd.DataFrame:
    """One fitted power law per (task, structure), with exponents and the dense multiplier.

    Columns: ``task``, ``structure``, ``omega``, ``psi``, ``nu``, ``runs``, ``widths``, then
    those of :func:`analysis.scaling.fit_table` (``m``, ``m_se``, ``a``, ``a_se``, …,
    ``multiplier`` with its 90 % bootstrap interval ``multiplier_lo``/``multiplier_hi``, the
    interpolated cross-check ``multiplier_interp``, ``multiplier_status``, ``note``).
    """
    pts = data.fit_points
    frames = []
    for task, group in pts.groupby(pts["task"].fillna("(no task)"), sort=True):
        labels = sorted(str(s) for s in group["structure"].unique())
        dense = dense_label(labels)
        table = fit_table(group, group="structure", dense=dense or "dense", loss="loss")
        runs = group.groupby("structure")["run_id"].nunique()
        widths = group.groupby("structure")["width"].apply(
            lambda w: ", ".join(str(int(v)) for v in sorted(w.dropna().unique()))
        )
        table.insert(0, "task", task)
        table.insert(2, "runs", table["structure"].map(runs).astype(int))
        table.insert(3, "widths", table["structure"].map(widths))
        ex = pd.DataFrame([structure_exponents(s) for s in table["structure"]])
        for i, col in enumerate(("omega", "psi", "nu")):
            table.insert(2 + i, col, ex[col].to_numpy())
        bad = ex["parse_error"] != ""
        table.loc[bad, "note"] = (
            table.loc[bad, "note"].astype(str) + " label not parsed: " + ex.loc[bad, "parse_error"]
        ).str.strip()
        if dense is None:
            table["note"] = table["note"].replace(
                "no dense group 'dense' in column 'structure'", "no dense runs for this task"
            )
        frames.append(table)
    if not frames:
        return pd.DataFrame(
            columns=["task", "structure", "omega", "psi", "nu", "runs", "widths", "m", "m_se"]
        )
    return pd.concat(frames, ignore_index=True)


def slope_with_se(x: npt.ArrayLike, y: npt.ArrayLike) -> dict[str, float]:
    """Least-squares slope of y on x with its standard error and Pearson r.

    NaN where it cannot be estimated (fewer than 2 points, constant x; the standard error
    needs 3).
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    n = xs.size
    out = {"n": float(n), "slope": math.nan, "slope_se": math.nan, "r": math.nan}
    if n < 2 or np.ptp(xs) == 0:
        return out
    xc = xs - xs.mean()
    slope = float(xc @ (ys - ys.mean()) / (xc @ xc))
    out["slope"] = slope
    if np.ptp(ys) > 0:
        out["r"] = float(np.corrcoef(xs, ys)[0, 1])
    if n > 2:
        resid = ys - ys.mean() - slope * xc
        out["slope_se"] = math.sqrt(float(resid @ resid) / (n - 2) / float(xc @ xc))
    return out


def exponent_relation(laws: pd.DataFrame) -> pd.DataFrame:
    """How the fitted exponent m varies with ω, ψ and ν across structures.

    One row per quantity: ``n`` structures, ``slope`` of m on it with ``slope_se``,
    Pearson ``r``, the sign the papers' finding predicts and a plain verdict.
    """
    rows = []
    named = {"omega": "ω", "psi": "ψ", "nu": "ν"}
    for col, symbol in named.items():
        if laws.empty:
            stats = slope_with_se([], [])
        else:
            stats = slope_with_se(laws[col].to_numpy(float), laws["m"].to_numpy(float))
        expected = EXPECTED_SIGN[col]
        slope, se = stats["slope"], stats["slope_se"]
        if math.isnan(slope):
            verdict = f"not testable: {symbol} does not vary across the fitted structures"
            if stats["n"] < 2:
                verdict = "not testable: fewer than 2 fitted structures"
        elif expected == 0:
            verdict = "no prediction (ν is expected to matter little)"
        else:
            agrees = np.sign(slope) == expected
            sure = not math.isnan(se) and abs(slope) > 2 * se
            if agrees:
                verdict = (
                    "agrees: the predicted sign, more than 2 standard errors from 0"
                    if sure
                    else "inconclusive: the predicted sign, but within 2 standard errors of 0"
                )
            else:
                verdict = (
                    "contradicts: the opposite sign, more than 2 standard errors from 0"
                    if sure
                    else "inconclusive: the opposite sign, within 2 standard errors of 0"
                )
        rows.append(
            {
                "quantity": symbol,
                "n": int(stats["n"]),
                "slope": slope,
                "slope_se": se,
                "r": stats["r"],
                "predicted_sign": {-1: "negative", 1: "positive", 0: "none"}[expected],
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def curves_plot(points: pd.DataFrame, laws: pd.DataFrame, task: str) -> bytes:
    """PNG: loss vs compute per structure (one thin line per run), frontiers and fits."""
    fig = new_figure(8.5, 5.6)
    ax = fig.add_subplot()
    labels = sorted(str(s) for s in points["structure"].unique())
    colors = dict(zip(labels, palette(len(labels)), strict=True))
    for label in labels:
        group = points[points["structure"] == label]
        color = colors[label]
        for _, run in group.groupby("run_id"):
            run = run.sort_values("compute")
            ax.plot(run["compute"], run["loss"], c=color, lw=0.7, alpha=0.35)
        law = laws[laws["structure"] == label]
        if len(group) >= 2:
            try:
                fc, fl = frontier(group["compute"], group["loss"])
                ax.scatter(fc, fl, s=16, color=color, edgecolors="k", linewidths=0.3, zorder=3)
            except EinspaceError:
                pass
        if len(law) and np.isfinite(law["m"].iloc[0]):
            fit = fit_power_law(group["compute"], group["loss"])
            grid = np.geomspace(fit.compute_min, fit.compute_max, 50)
            m, se = law["m"].iloc[0], law["m_se"].iloc[0]
            pm = "" if not np.isfinite(se) else f" ± {se:.3f}"
            ax.plot(grid, fit.loss_at(grid), c=color, lw=2.2, label=f"{label}: m = {m:.3f}{pm}")
        else:
            ax.plot([], [], c=color, lw=2.2, label=f"{label}: no fit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("loss")
    ax.set_title(
        f"task {task}: runs (thin), frontier points (dots), fitted laws (thick)", fontsize=10
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")
    return to_png(fig)


def exponent_plot(laws: pd.DataFrame) -> bytes:
    """PNG: fitted exponent m (± 1 s.e.) against ω and against ψ, one point per structure."""
    fig = new_figure(11.0, 4.4)
    axes = fig.subplots(1, 2, sharey=True)
    finite = laws[["m", "omega", "psi"]].astype(float).apply(np.isfinite).all(axis=1)
    ok = laws[finite]
    names = [
        f"{s}" if ok["task"].nunique() <= 1 else f"{s} [{t}]"
        for s, t in zip(ok["structure"], ok["task"], strict=True)
    ]
    for ax, col, other in ((axes[0], "omega", "psi"), (axes[1], "psi", "omega")):
        se = ok["m_se"].astype(float).fillna(0.0).to_numpy()
        ax.errorbar(ok[col], ok["m"], yerr=se, fmt="none", ecolor="0.5", lw=0.8, capsize=3)
        sc = ax.scatter(
            ok[col],
            ok["m"],
            c=ok[other].astype(float),
            cmap="viridis",
            vmin=0,
            vmax=1,
            s=50,
            edgecolors="k",
            linewidths=0.5,
            zorder=3,
        )
        ax.set_xlabel({"omega": "ω (parameter sharing)", "psi": "ψ (rank)"}[col])
        ax.grid(alpha=0.3)
        ax.margins(0.2)
        fig.colorbar(sc, ax=ax, label={"psi": "ψ", "omega": "ω"}[other], shrink=0.8)
    axes[0].set_ylabel("fitted scaling exponent m (loss ∝ C^−m)")
    fig.draw_without_rendering()
    for ax, col in ((axes[0], "omega"), (axes[1], "psi")):
        label_points(ax, merge_labels(ok[col], ok["m"], names), layout=False)
    return to_png(fig)


def status_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per structure and status."""
    if runs.empty:
        return pd.DataFrame(columns=["structure"])
    table = pd.crosstab(runs["structure"].fillna("(none)"), runs["status"])
    table["total"] = table.sum(axis=1)
    return table.reset_index()


def problem_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Diverged and failed runs, with where and why they stopped."""
    bad = runs[runs["status"].isin(EXCLUDED_STATUSES)]
    cols = ["run_id", "status", "structure", "task", "width", "seed", "last_step", "error"]
    return bad[cols].reset_index(drop=True)
