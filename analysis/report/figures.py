"""Matplotlib plumbing for the report: Agg figures, PNG bytes and readable point labels.

Figures are made with :class:`matplotlib.figure.Figure` and an Agg canvas directly, never
through ``pyplot``, so the report neither needs nor changes a global backend and works on a
machine without a display. Matplotlib is imported only when a figure is made.

Examples:
    >>> fig = new_figure(3, 2)
    >>> ax = fig.add_subplot()
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> png = to_png(fig)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "label_points", "merge_labels", "new_figure", "palette", "to_png"]

DPI = 100
"""Resolution of every report figure: small files, readable at 100 % zoom."""


def new_figure(width: float, height: float) -> Figure:
    """A blank figure of ``width`` × ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at :data:`DPI`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def palette(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinguishable colours (tab10, then tab20, then a continuous map).

    Examples:
        >>> len(palette(3)), len(palette(25))
        (3, 25)
    """
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def merge_labels(
    xs: Iterable[float],
    ys: Iterable[float],
    labels: Iterable[str],
    decimals: int = 6,
    sep: str = "\n",
) -> list[tuple[float, float, str]]:
    """Join the labels of points that coincide (after rounding) into one label.

    Examples:
        >>> merge_labels([0, 0, 1], [1, 1, 2], ["dense", "btt", "kron"], sep=" / ")
        [(0.0, 1.0, 'dense / btt'), (1.0, 2.0, 'kron')]
    """
    groups: dict[tuple[float, float], list[str]] = {}
    for x, y, label in zip(xs, ys, labels, strict=True):
        key = (round(float(x), decimals) + 0.0, round(float(y), decimals) + 0.0)
        groups.setdefault(key, []).append(label)
    return [(x, y, sep.join(names)) for (x, y), names in groups.items()]


# Offsets (points) tried in turn for a label: right, left, above, below, then farther out.
_OFFSETS = [(7, 4), (7, -4), (-7, 4), (-7, -4), (0, 9), (0, -9)]
_OFFSETS += [(dx * 2, dy * 2) for dx, dy in _OFFSETS] + [(dx * 3, dy * 3) for dx, dy in _OFFSETS]


def label_points(
    ax: Axes,
    points: Sequence[tuple[float, float, str]],
    fontsize: float = 7.5,
    layout: bool = True,
) -> None:
    """Annotate points so that labels stay inside the axes and do not overlap.

    Greedy placement: each label takes the first offset from a fixed list whose (estimated)
    text box lies inside the axes, clear of the boxes already placed and of the other
    labelled points; if none is clear, the first one inside the axes. A label moved away
    from its point gets a thin leader line. Labels do not take part in the layout, so long
    ones never squeeze the axes. ``layout=False`` skips the layout pass (call
    ``fig.draw_without_rendering()`` once before labelling several axes).
    """
    if not points:
        return
    fig = ax.get_figure(root=True)
    assert fig is not None
    if layout:
        fig.draw_without_rendering()  # fixes the transforms (constrained layout, autoscaling)
    frame = ax.get_window_extent()
    scale = fig.dpi / 72.0
    anchors = np.array([ax.transData.transform((x, y)) for x, y, _ in points])
    placed: list[tuple[float, float, float, float]] = []
    char_w, line_h = 0.6 * fontsize * scale, 1.2 * fontsize * scale
    for i, (x, y, label) in enumerate(points):
        lines = label.split("\n")
        width = char_w * max(len(line) for line in lines) + 4
        height = line_h * len(lines) + 4
        px, py = anchors[i]

        def box(
            dx: float,
            dy: float,
            px: float = px,
            py: float = py,
            w: float = width,
            h: float = height,
        ) -> tuple[float, float, float, float]:
            left = px + dx * scale - (w if dx < 0 else (w / 2 if dx == 0 else 0))
            bottom = py + dy * scale - (h if dy < 0 else 0)
            return (left, bottom, left + w, bottom + h)

        inside = [
            (dx, dy)
            for dx, dy in _OFFSETS
            if frame.x0 <= box(dx, dy)[0]
            and box(dx, dy)[2] <= frame.x1
            and frame.y0 <= box(dx, dy)[1]
            and box(dx, dy)[3] <= frame.y1
        ] or _OFFSETS[:1]
        chosen = inside[0]
        for dx, dy in inside:
            b = box(dx, dy)
            clear_boxes = all(not _overlap(b, other) for other in placed)
            clear_points = all(
                not (b[0] - 3 <= qx <= b[2] + 3 and b[1] - 3 <= qy <= b[3] + 3)
                for j, (qx, qy) in enumerate(anchors)
                if j != i
            )
            if clear_boxes and clear_points:
                chosen = (dx, dy)
                break
        dx, dy = chosen
        placed.append(box(dx, dy))
        far = abs(dx) > 10 or abs(dy) > 16
        text = ax.annotate(
            label,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=fontsize,
            ha="right" if dx < 0 else ("center" if dx == 0 else "left"),
            va="top" if dy < 0 else "bottom",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"} if far else None,
            zorder=6,
        )
        text.set_in_layout(False)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
