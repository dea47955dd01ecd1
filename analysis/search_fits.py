"""Scaling-law fits of a search's grid: what ``einspace search`` and the demo print.

:func:`search.driver.run_search` returns the grid's runs and logged points; the caller
fits them here. The points of the grid's runs that did not diverge or fail are fitted per
structure with :func:`analysis.scaling.fit_table`: Chinchilla's parametric law on the
finished schedules when the points carry ``params`` and ``tokens``, else the envelope law;
each structure's multiplier against dense, its 90 % interval and its verdict
(docs/fits.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from analysis.scaling import fit_table
from einspace.errors import EinspaceError
from einspace.moe import is_moe_spec
from einspace.structure import Structure

if TYPE_CHECKING:
    import pandas as pd

    from search.driver import SearchResult

__all__ = ["dense_label", "fit_search"]


def fit_search(result: SearchResult) -> pd.DataFrame:
    """:func:`~analysis.scaling.fit_table` of a search's grid (``multiplier`` vs dense).

    Examples:
        >>> import io, tempfile, pathlib
        >>> from rich.console import Console
        >>> from search import RunSettings, run_search
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "runs.sqlite"
        >>> settings = RunSettings(steps=8, eval_every=4, task_kwargs={"n_eval": 64})
        >>> result = run_search(["dense", "monarch"], [16, 36], settings=settings,
        ...                     store=path, progress=False, console=Console(file=io.StringIO()))
        >>> sorted(fit_search(result)["structure"])
        ['dense', 'monarch']
    """
    points = result.points
    keep = ~points["status"].isin(["diverged", "failed"]) & points["eval_loss"].notna()
    dense = dense_label(result.structures)
    return fit_table(points[keep], group="structure", dense=dense or "dense", loss="eval_loss")


def dense_label(labels: Sequence[str]) -> str | None:
    """The label among ``labels`` that is dense (``"dense"`` or a dense-family spec), or None.

    Examples:
        >>> dense_label(["btt(r=0.25)", "(1|0|0|1|0|0|0)"])
        '(1|0|0|1|0|0|0)'
        >>> dense_label(["btt"]) is None
        True
        >>> dense_label(["moe(e=4, k=1)", "btt_moe(e=4, k=1)"]) is None  # sparse: never dense
        True
    """
    if "dense" in labels:
        return "dense"
    for label in labels:
        if is_moe_spec(label):
            continue
        with contextlib.suppress(EinspaceError):
            if Structure.parse(label).family.name == "dense":
                return label
    return None
