"""What a search returns: :class:`SearchResult` (its own module, so that the progress display
and the driver both import it without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from search.run_plan import SearchPlan

__all__ = ["SearchResult"]


@dataclass
class SearchResult:
    """What :func:`search.driver.run_search` did.

    Attributes:
        store: the run store's URL (password hidden).
        sweep: the grid's sweep name (θ trials are under ``<sweep>/theta``).
        runs: the grid's runs: run_id, structure, width, seed, steps, role (``run``,
            ``trunk`` or ``branch``), parent (a branch's trunk run id), tokens_per_param
            (the horizon, or NaN for a fixed ``--steps``), status, final_eval_loss,
            last_step.
        points: the grid's logged points (:meth:`~search.store.RunStore.points`), for the
            caller to fit (:func:`analysis.search_fits.fit_search`).
        structures: the grid's structure labels, in the order given.
        trials: the θ study's trials (number, state, value, theta, rejection, run_id), or
            None without a θ search.
        study: the optuna study name, or None.
        promoted: θ structures that joined the grid.
        lrs: the learning-rate tuning runs (structure, lr, run_id, status, final_eval_loss,
            best), or None without tuning.
        lr: the base learning rate each grid structure trained with.
        interrupted: whether Ctrl-C stopped the search.
        wall_s: seconds spent.
        plan: the planned runs as planned before the search started (before learning-rate
            tuning and θ promotion; a dry run returns only this).
        dry_run: whether nothing was trained (``dry_run=True``).
    """

    store: str
    sweep: str
    runs: pd.DataFrame
    points: pd.DataFrame
    structures: list[str] = field(default_factory=list)
    trials: pd.DataFrame | None = None
    study: str | None = None
    promoted: list[str] = field(default_factory=list)
    lrs: pd.DataFrame | None = None
    lr: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    wall_s: float = 0.0
    plan: SearchPlan | None = None
    dry_run: bool = False
