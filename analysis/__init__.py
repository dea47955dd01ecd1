"""Analysis of proxy runs: scaling-law fits and the compute-optimal frontier.

Importing this package does not import torch or matplotlib.
"""

from analysis.scaling import (
    FORMS,
    ScalingFit,
    compute_multiplier,
    fit_power_law,
    fit_table,
    frontier,
)

__all__ = [
    "FORMS",
    "ScalingFit",
    "compute_multiplier",
    "fit_power_law",
    "fit_table",
    "frontier",
]

# The report builder (analysis/report/); importing it loads neither matplotlib nor torch.
from analysis.report import report

__all__ += ["report"]
