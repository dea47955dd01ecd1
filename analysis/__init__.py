"""Analysis of proxy runs: scaling-law fits, the compute-optimal frontier and verdicts.

Importing this package does not import torch or matplotlib.
"""

from analysis.chinchilla import ChinchillaFit, fit_chinchilla
from analysis.scaling import (
    FORMS,
    LAWS,
    ScalingFit,
    compute_multiplier,
    fit_power_law,
    fit_table,
    format_multiplier,
    frontier,
)
from analysis.synthetic import chinchilla_points, true_multiplier

__all__ = [
    "FORMS",
    "LAWS",
    "ChinchillaFit",
    "ScalingFit",
    "chinchilla_points",
    "compute_multiplier",
    "fit_chinchilla",
    "fit_power_law",
    "fit_table",
    "format_multiplier",
    "frontier",
    "true_multiplier",
]

# The report builder (analysis/report/); importing it loads neither matplotlib nor torch.
from analysis.report import report

__all__ += ["report"]
