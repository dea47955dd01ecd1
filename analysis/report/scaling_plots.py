"""The search section's figures of the parametric law: finished runs, frontiers, isoFLOPs.

:func:`frontier_plot` draws each structure's finished runs by width (mid-run checkpoints
faint) with its fitted compute-optimal frontier ``L*(C)`` and a 90 % bootstrap band;
:func:`isoflop_plot` draws, at a few compute budgets, the fitted loss against ``N`` (with
``D = C / (6·M(N))``) and the finished runs near each budget. Both take points with the
columns ``structure, loss, compute, params, tokens, width, run_id, final`` (``parent``
optional).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.parametric import (
    FinishedRuns,
    StructureFit,
    finished_runs,
    fit_structure,
    frontier_band,
)
from analysis.report.figures import new_figure, palette, to_png
from einspace.errors import EinspaceError

__all__ = ["BAND_SAMPLES", "PARAMETRIC_POINT_COLUMNS", "frontier_plot", "isoflop_plot"]

BAND_SAMPLES = 100
"""Bootstrap replicates behind each frontier's band."""

PARAMETRIC_POINT_COLUMNS = ("params", "tokens", "final")
"""Columns a table of points needs for these figures (besides compute and loss)."""

_COLUMNS: Mapping[str, str] = {
    "loss": "loss",
    "params": "params",
    "tokens": "tokens",
    "compute": "compute",
    "width": "width",
    "run": "run_id",
    "parent": "parent",
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _fits(points: pd.DataFrame) -> dict[str, tuple[FinishedRuns, StructureFit]]:
    """Each structure's finished runs and fitted law (structures whose fit fails are left
    out)."""
    out: dict[str, tuple[FinishedRuns, StructureFit]] = {}
    finished = points[points["final"].fillna(False).astype(bool)]
    for label, frame in finished.groupby("structure", sort=True):
        runs = finished_runs(frame, points[points["structure"] == label], _COLUMNS)
        try:
            out[str(label)] = (runs, fit_structure(runs))
        except EinspaceError:
            continue
    return out


def frontier_plot(points: pd.DataFrame, task: str, seed: int = 0) -> bytes:
    """PNG: finished runs by width, mid-run checkpoints, fitted frontiers with 90 % bands."""
    fig = new_figure(8.5, 5.6)
    ax = fig.add_subplot()
    labels = sorted(str(s) for s in points["structure"].unique())
    colors = dict(zip(labels, palette(len(labels)), strict=True))
    fits = _fits(points)
    widths = sorted(points["width"].dropna().unique().tolist())
    marker = {w: _MARKERS[i % len(_MARKERS)] for i, w in enumerate(widths)}
    for label in labels:
        group = points[points["structure"] == label]
        done = group["final"].fillna(False).astype(bool)
        ax.scatter(
            group.loc[~done, "compute"],
            group.loc[~done, "loss"],
            s=6,
            color=colors[label],
            alpha=0.25,
            linewidths=0,
        )
        for w, part in group[done].groupby("width"):
            ax.scatter(
                part["compute"],
                part["loss"],
                s=22,
                marker=marker[w],
                color=colors[label],
                edgecolors="k",
                linewidths=0.3,
                zorder=3,
            )
        if label not in fits:
            ax.plot([], [], c=colors[label], lw=2, label=f"{label}: no fit")
            continue
        runs, fit = fits[label]
        c = group.loc[done, "compute"]
        grid = np.geomspace(float(c.min()) / 2, float(c.max()) * 2, 60)
        mid, lo, hi = frontier_band(runs, fit, grid, BAND_SAMPLES, seed)
        ax.plot(grid, mid, c=colors[label], lw=2, label=label)
        ax.fill_between(grid, lo, hi, color=colors[label], alpha=0.18, linewidth=0)
    for w in widths:
        ax.scatter([], [], marker=marker[w], color="0.6", edgecolors="k", label=f"width {w:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("loss")
    ax.set_title(
        f"task {task}: finished runs (markers by width), checkpoints (faint), fitted "
        "frontier L*(C) with 90 % band",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    return to_png(fig)


def isoflop_plot(points: pd.DataFrame, task: str, budgets: int = 3) -> bytes:
    """PNG: at ``budgets`` compute budgets spread over the measured range, each structure's
    fitted ``L(N, C/(6·M(N)))`` against ``N`` (a dot at its minimum) and the finished runs
    within a factor √2 of that budget."""
    fits = _fits(points)
    finished = points[points["final"].fillna(False).astype(bool)]
    fig = new_figure(11.0, 4.2)
    axes = np.atleast_1d(fig.subplots(1, budgets, sharey=True))
    if finished.empty or not fits:
        return to_png(fig)
    log_c = np.log(finished["compute"].to_numpy(float))
    spots = np.exp(np.quantile(log_c, np.linspace(0.3, 0.9, budgets)))
    labels = sorted(fits)
    colors = dict(zip(labels, palette(len(labels)), strict=True))
    for ax, budget in zip(axes, spots, strict=True):
        for label in labels:
            runs, fit = fits[label]
            n = np.geomspace(runs.params.min() / 3, runs.params.max() * 3, 80)
            d = budget / (6.0 * fit.optimal.macs(n))
            loss = np.asarray(fit.law.loss_at(n, d), dtype=float)
            ax.plot(n, loss, c=colors[label], lw=1.6, label=label)
            best = int(np.argmin(loss))
            ax.scatter([n[best]], [loss[best]], color=colors[label], s=30, zorder=3)
            near = finished[
                (finished["structure"] == label)
                & (np.abs(np.log(finished["compute"] / budget)) <= math.log(2) / 2)
            ]
            ax.scatter(near["params"], near["loss"], marker="x", color=colors[label], s=20)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters N")
        ax.set_title(f"C = {budget:.2g} FLOPs", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"task {task}: isoFLOP view (fitted law, x: finished runs within √2 of C)", fontsize=9
    )
    return to_png(fig)
