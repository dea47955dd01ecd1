"""Report section 2, the taxonomy map: families and named structures in (ω, ψ, ν).

Every family with up to two factors sits at its balanced point
(:meth:`einspace.Family.balanced_theta`), every named structure at its default parameters.
Many families share a point, so family markers are jittered by a small seeded amount and
sized by how many families share the exact point; named structures are drawn unjittered,
and named structures that coincide share one label (``dense / monarch``).

Examples:
    >>> pts = taxonomy_points(max_k=2)
    >>> pts[pts.kind == "named"].set_index("label").loc["btt(r=0.25)", ["omega", "psi"]].tolist()
    [0.0, 1.0]
    >>> int((pts.kind == "family").sum())    # 1 one-factor + 39 two-factor families
    40
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from analysis.report.figures import label_points, merge_labels, new_figure, to_png
from analysis.report.space import RANK_EXPONENT
from einspace import NAMED, Structure
from einspace.family_table import family_table

__all__ = ["JITTER", "map_3d", "map_figures", "map_projections", "taxonomy_points"]

JITTER = 0.012
"""Half-width of the uniform jitter added to family markers (exponent units)."""

_AXES = {"omega": "ω (parameter sharing)", "psi": "ψ (rank)", "nu": "ν (compute intensity)"}
_PAIRS = (("omega", "psi"), ("psi", "nu"), ("omega", "nu"))


def taxonomy_points(max_k: int = 2) -> pd.DataFrame:
    """The points of the map: families (k ≤ ``max_k`` ≤ 2) and named structures.

    Columns: ``kind`` (``"family"`` or ``"named"``), ``label`` (canonical family string or
    the structure's label), ``k``, ``family``, ``named``, ``nu``, ``omega``, ``psi`` and
    ``shared`` (how many points of the same kind sit at exactly this (ω, ψ, ν)).
    """
    frames = []
    for k in range(1, min(max_k, 2) + 1):
        core = family_table(k, symbolic=False, rank=RANK_EXPONENT)
        frames.append(
            pd.DataFrame(
                {
                    "kind": "family",
                    "label": core["family"],
                    "k": k,
                    "family": core["family"],
                    "named": core["name"],
                    "nu": core["nu"],
                    "omega": core["omega"],
                    "psi": core["psi"],
                }
            )
        )
    rows = []
    for name in NAMED:
        s = Structure.named(name)
        rows.append(
            {
                "kind": "named",
                "label": str(s),
                "k": s.k,
                "family": str(s.family),
                "named": name,
                "nu": s.nu,
                "omega": s.omega,
                "psi": s.psi,
            }
        )
    frames.append(pd.DataFrame(rows))
    points = pd.concat(frames, ignore_index=True).dropna(subset=["nu", "omega", "psi"])
    key = points[["kind", "nu", "omega", "psi"]].round(9).astype(str).agg("|".join, axis=1)
    points["shared"] = key.map(key.value_counts()).astype(int)
    return points.reset_index(drop=True)


def _jittered(points: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = points.copy()
    fam = out["kind"] == "family"
    for col in ("nu", "omega", "psi"):
        out.loc[fam, col] = out.loc[fam, col] + rng.uniform(-JITTER, JITTER, int(fam.sum()))
    return out


def map_projections(points: pd.DataFrame) -> bytes:
    """PNG of the three 2-D projections ω–ψ, ψ–ν and ω–ν, named structures labelled."""
    fig = new_figure(13.5, 4.6)
    axes = fig.subplots(1, 3)
    jit = _jittered(points)
    fam = jit[jit["kind"] == "family"]
    named = points[points["kind"] == "named"]
    for ax, (xc, yc) in zip(axes, _PAIRS, strict=True):
        ax.scatter(
            fam[xc],
            fam[yc],
            s=14 + 10 * np.sqrt(fam["shared"]),
            c="#7a9cc6",
            alpha=0.55,
            edgecolors="none",
            label="families at their balanced point\n(jittered; size ∝ √families sharing it)",
        )
        ax.scatter(
            named[xc],
            named[yc],
            marker="*",
            s=150,
            c="#d1495b",
            edgecolors="k",
            linewidths=0.5,
            label="named structures (defaults)",
            zorder=3,
        )
        ax.set_xlabel(_AXES[xc])
        ax.set_ylabel(_AXES[yc])
        ax.grid(alpha=0.3)
        ax.margins(0.18)
    axes[0].legend(loc="center right", fontsize=7.5, framealpha=0.9)
    fig.draw_without_rendering()
    for ax, (xc, yc) in zip(axes, _PAIRS, strict=True):
        label_points(ax, merge_labels(named[xc], named[yc], list(named["label"])), layout=False)
    return to_png(fig)


def map_3d(points: pd.DataFrame) -> bytes:
    """PNG of one 3-D view of (ω, ψ, ν), named structures labelled."""
    fig = new_figure(7.0, 6.0)
    ax = fig.add_subplot(projection="3d")
    jit = _jittered(points)
    fam = jit[jit["kind"] == "family"]
    named = points[points["kind"] == "named"]
    ax.scatter(fam["omega"], fam["psi"], fam["nu"], s=14, c="#7a9cc6", alpha=0.6, depthshade=True)
    ax.scatter(
        named["omega"],
        named["psi"],
        named["nu"],
        marker="*",
        s=150,
        c="#d1495b",
        edgecolors="k",
        linewidths=0.5,
        depthshade=False,
    )
    groups: dict[tuple[float, float, float], list[str]] = {}
    for _, row in named.iterrows():
        key = (round(row["omega"], 6), round(row["psi"], 6), round(row["nu"], 6))
        groups.setdefault(key, []).append(str(row["label"]))
    for i, ((x, y, z), labels) in enumerate(sorted(groups.items())):
        lift = 0.06 + 0.05 * (i % 3)  # stagger heights so neighbouring labels separate
        ax.text(x, y, z + lift, " / ".join(labels), fontsize=7.5, zorder=5)
    ax.set_xlabel("ω")
    ax.set_ylabel("ψ")
    ax.set_zlabel("ν")
    ax.view_init(elev=22, azim=-58)
    return to_png(fig)


@lru_cache(maxsize=4)
def map_figures(max_k: int = 2) -> tuple[pd.DataFrame, bytes, bytes]:
    """Points, projections PNG and 3-D PNG for ``max_k``, cached: the map depends on
    nothing else (the jitter is seeded), and drawing it takes a few seconds."""
    points = taxonomy_points(max_k)
    return points, map_projections(points), map_3d(points)
