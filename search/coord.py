"""μP's coordinate check on the search's own models, as ``einspace coord-check`` runs it.

:func:`einspace.nn.coord_check` takes a model factory and a task object; :func:`coord_check`
builds both from a task name as a proxy run does (:class:`search.settings.RunSettings`): the
proxy MLP for the regression and classification tasks, the LM transformer for ``task="lm"``.

Examples:
    >>> frame = coord_check("monarch", [16, 32], steps=2, batch_size=4)
    >>> sorted(frame["width"].unique().tolist()), int(frame["step"].max())
    ([16, 32], 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal

from einspace.nn.coord import coord_check as trace_widths
from search.models import build_model
from search.proxy_config import make_config
from search.settings import RunSettings

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from einspace.structure import Structure

__all__ = ["coord_check"]


def coord_check(
    structure: Structure | str,
    widths: Iterable[int],
    task: str = "mlp_regression",
    task_kwargs: Mapping[str, object] | None = None,
    *,
    steps: int = 5,
    lr: float = 1e-2,
    batch_size: int = 16,
    parametrization: Literal["mup", "sp"] = "mup",
    seeds: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """RMS of every module's output per width and step for ``structure`` in the search's model
    of ``task`` (``"mlp_regression"``, ``"digits"``, ``"lm"``, ``"cifar10"`` or
    ``"module:attr"``), with the narrowest width as μP's base width.

    The arguments after ``task_kwargs`` are those of :func:`einspace.nn.coord_check`.
    """
    sizes = sorted(set(widths))
    settings = RunSettings(task=task, task_kwargs=dict(task_kwargs or {}), base_width=min(sizes))
    the_task = settings.make_task()

    def factory(spec: object, width: int, task_obj: object) -> nn.Module:
        return build_model(make_config(settings, str(spec), width), the_task)

    return trace_widths(
        structure,
        sizes,
        model=factory,
        task=the_task,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        parametrization=parametrization,
        seeds=seeds,
        seed=seed,
    )
