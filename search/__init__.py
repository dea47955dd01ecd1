"""Structure search: the run store, proxy tasks, proxy runs, θ-space sampling and the driver.

Importing this package does not import torch or optuna: the proxy tasks
(:mod:`search.tasks`) and proxy runs (:mod:`search.proxy`) import torch, and the names
they export here are loaded on first use.

Examples:
    >>> import search
    >>> search.snap_theta((1, 0, 1, 0, 1, 1, 0.25))
    (0.5, 0.0, 0.5, 0.0, 0.5, 0.5, 0.25)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from search.budget import parse_budget, tune_to_budget
from search.options import SearchOptions
from search.scoring import OBJECTIVES, ExponentModel, register_objective, register_ranking, score
from search.store import (
    LABEL_KEYS,
    POINT_FIELDS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    Claim,
    RunStore,
    canonical_config,
    run_id,
)

if TYPE_CHECKING:
    from search.coord import coord_check
    from search.driver import SearchResult, run_search
    from search.models import build_model
    from search.proxy import proxy_run
    from search.proxy_config import ProxyConfig
    from search.run_result import CurvePoint, RunResult
    from search.settings import RunSettings
    from search.space import ThetaPoint, sample_points, snap_theta, theta_point

_LAZY = {
    "coord_check": "search.coord",
    "build_model": "search.models",
    "CurvePoint": "search.run_result",
    "ProxyConfig": "search.proxy_config",
    "RunResult": "search.run_result",
    "proxy_run": "search.proxy",
    "RunSettings": "search.settings",
    "SearchResult": "search.driver",
    "run_search": "search.driver",
    "ThetaPoint": "search.space",
    "sample_points": "search.space",
    "snap_theta": "search.space",
    "theta_point": "search.space",
}

__all__ = [
    "LABEL_KEYS",
    "OBJECTIVES",
    "POINT_FIELDS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "Claim",
    "CurvePoint",
    "ExponentModel",
    "ProxyConfig",
    "RunResult",
    "RunSettings",
    "RunStore",
    "SearchOptions",
    "SearchResult",
    "ThetaPoint",
    "build_model",
    "canonical_config",
    "coord_check",
    "parse_budget",
    "proxy_run",
    "register_objective",
    "register_ranking",
    "run_id",
    "run_search",
    "sample_points",
    "score",
    "snap_theta",
    "theta_point",
    "tune_to_budget",
]


def __getattr__(name: str) -> Any:
    """Load the lazily exported names (those that would import torch) on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
