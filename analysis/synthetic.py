"""Synthetic search points from known Chinchilla laws, and the true multiplier they imply.

docs/fits.md. For tests, docs and benchmarks of :func:`analysis.fit_table`: each
:class:`SyntheticStructure` has a known law ``L(N, D) = E + A/N^α + B/D^β``, parameters
``N = c·w^p`` per width ``w`` and forward MACs per token ``M = r·N^q``.
:func:`chinchilla_points` lays out a warmup-stable-decay search as the run store logs it (one
trunk per structure, width and seed trained to the longest horizon, a cooldown branch for
each shorter one, mid-run checkpoints of the trunk that are not finished runs) with a
per-run (seed) and per-point noise on the loss. :func:`true_multiplier` is the exact
``C_dense(L) / C_structure(L)`` of two laws, found by a bounded scalar minimisation that
shares nothing with the fit's frontier code.

Examples:
    >>> pts = chinchilla_points(widths=(64, 128), seeds=1, tokens_per_param=(5, 20))
    >>> pts[pts.final].groupby("structure").size().to_dict()
    {'btt': 4, 'dense': 4, 'low_rank': 4}
    >>> row = pts[(pts.structure == "dense") & pts.final].iloc[0]
    >>> int(row.params), int(row.tokens), int(row.compute) == 6 * int(row.params) * int(row.tokens)
    (131072, 2621440, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.chinchilla import ChinchillaFit

__all__ = [
    "DEFAULT_STRUCTURES",
    "SyntheticStructure",
    "chinchilla_points",
    "true_compute",
    "true_multiplier",
]

_CHECKPOINT_PENALTY = 1.03
"""A trunk checkpoint at constant learning rate sits this factor above its cooled branch."""


@dataclass(frozen=True)
class SyntheticStructure:
    """A structure with a known law, ``N = params_coef · w^params_power`` and
    ``M = macs_coef · N^macs_power``.

    Examples:
        >>> s = SyntheticStructure("x", ChinchillaFit(1.0, 1.0, 0.5, 1.0, 0.5), 2.0, 2.0)
        >>> s.params(8), s.macs(s.params(8))
        (128.0, 128.0)
    """

    name: str
    law: ChinchillaFit
    params_coef: float
    params_power: float
    macs_coef: float = 1.0
    macs_power: float = 1.0

    def params(self, width: float) -> float:
        """``N`` at ``width``."""
        return float(self.params_coef * width**self.params_power)

    def macs(self, params: float) -> float:
        """Forward MACs per token at ``params``."""
        return float(self.macs_coef * params**self.macs_power)


DEFAULT_STRUCTURES: tuple[SyntheticStructure, ...] = (
    SyntheticStructure("dense", ChinchillaFit(1.8, 300.0, 0.34, 400.0, 0.28), 8.0, 2.0),
    SyntheticStructure("btt", ChinchillaFit(1.8, 450.0, 0.40, 400.0, 0.28), 64.0, 1.5, 2.0, 1.0),
    SyntheticStructure(
        "low_rank", ChinchillaFit(1.8, 220.0, 0.30, 400.0, 0.28), 4.0, 2.0, 1.0, 1.0
    ),
)
"""Dense (N = 8w², M = N); BTT-like (N = 64 w^1.5, M = 2N, a steeper α: its lead over
dense grows as the loss falls); low-rank-like (N = 4w², M = N, a shallower α: it falls
behind as the loss falls)."""


def chinchilla_points(
    structures: Sequence[SyntheticStructure] = DEFAULT_STRUCTURES,
    widths: Sequence[int] = (64, 128, 256, 512),
    seeds: int = 2,
    tokens_per_param: Sequence[float] = (2, 5, 10, 20, 50),
    *,
    noise: float = 0.005,
    seed_noise: float = 0.005,
    batch_tokens: int = 256,
    random_state: int = 0,
    task: str = "synthetic",
) -> pd.DataFrame:
    """A search's points drawn from known laws (the columns of ``RunStore.points()``).

    Per structure, width and seed: a trunk (run id ``<structure>-w<width>-s<seed>``) trained
    at the longest horizon ``max(tokens_per_param) · N`` tokens, finished there; a cooldown
    branch (``…-tpp<t>``, ``parent`` the trunk) finished at each shorter horizon; and a trunk
    checkpoint (``final`` False, :data:`_CHECKPOINT_PENALTY` above the law) at each shorter
    horizon. A finished point's loss is ``L(N, D) · exp(ε_run + ε_point)``, both normal with
    standard deviations ``seed_noise`` (shared by a trunk and its branches) and ``noise``.
    ``compute`` is ``6 · M · tokens``.

    Examples:
        >>> pts = chinchilla_points(widths=(64,), seeds=1, tokens_per_param=(2, 50), noise=0,
        ...                         seed_noise=0)
        >>> dense = pts[pts.structure == "dense"].fillna({"parent": "-"})
        >>> dense[["run_id", "parent", "final", "tokens"]].values.tolist()
        [['dense-w64-s0', '-', False, 65536], ['dense-w64-s0', '-', True, 1638400], \
['dense-w64-s0-tpp2', 'dense-w64-s0', True, 65536]]
    """
    rng = np.random.default_rng(random_state)
    rows: list[dict[str, object]] = []
    horizons = sorted(float(t) for t in tokens_per_param)
    for s in structures:
        for w in widths:
            n = s.params(w)
            m = s.macs(n)
            for seed in range(seeds):
                trunk = f"{s.name}-w{w}-s{seed}"
                run_noise = float(rng.normal(0.0, seed_noise))
                base = {
                    "sweep": "synthetic",
                    "structure": s.name,
                    "task": task,
                    "width": w,
                    "seed": seed,
                    "status": "finished",
                    "params": n,
                    "macs_per_token": m,
                }
                for t in horizons:
                    tokens = round(t * n)
                    clean = float(s.law.loss_at(n, tokens))
                    loss = clean * math.exp(run_noise + float(rng.normal(0.0, noise)))
                    point = {
                        **base,
                        "step": tokens // batch_tokens,
                        "tokens": tokens,
                        "compute": 6.0 * m * tokens,
                        "lr": 0.0,
                    }
                    if t == horizons[-1]:
                        rows.append(
                            {
                                **point,
                                "run_id": trunk,
                                "parent": None,
                                "final": True,
                                "eval_loss": loss,
                            }
                        )
                        continue
                    rows.append(
                        {
                            **point,
                            "run_id": trunk,
                            "parent": None,
                            "final": False,
                            "lr": 1e-3,
                            "eval_loss": loss * _CHECKPOINT_PENALTY,
                        }
                    )
                    rows.append(
                        {
                            **point,
                            "run_id": f"{trunk}-tpp{t:g}",
                            "parent": trunk,
                            "final": True,
                            "eval_loss": loss,
                        }
                    )
    frame = pd.DataFrame(rows)
    frame["train_loss"] = frame["eval_loss"]
    frame = frame.sort_values(["structure", "run_id", "step"], kind="stable")
    return frame.reset_index(drop=True)


def true_compute(structure: SyntheticStructure, loss: float) -> float:
    """The least ``6·M(N)·D`` at which ``structure``'s law reaches ``loss`` (inf if never).

    Examples:
        >>> s = SyntheticStructure("x", ChinchillaFit(1.0, 100.0, 0.5, 100.0, 0.5), 1.0, 1.0)
        >>> round(true_compute(s, 3.0))  # N = D = 1e4 by symmetry: 6 · 1e4 · 1e4
        600000000
    """
    from scipy.optimize import minimize_scalar

    law = structure.law
    if loss <= law.E:
        return math.inf

    def log_c(x: float) -> float:
        gap = loss - law.E - law.A * math.exp(-law.alpha * x)
        if gap <= 0:
            return 1e300
        log_d = (math.log(law.B) - math.log(gap)) / law.beta
        return math.log(6.0 * structure.macs(math.exp(x))) + log_d

    # the smallest N that can reach the loss at all, then a bounded search above it
    x_min = math.log(law.A / (loss - law.E)) / law.alpha
    res = minimize_scalar(
        log_c, bounds=(x_min + 1e-9, x_min + 60.0), method="bounded", options={"xatol": 1e-10}
    )
    return math.exp(float(res.fun))


def true_multiplier(structure: SyntheticStructure, dense: SyntheticStructure, loss: float) -> float:
    """``C_dense(L) / C_structure(L)`` of the two known laws at ``loss``.

    Examples:
        >>> d = SyntheticStructure("d", ChinchillaFit(1.0, 100.0, 0.5, 100.0, 0.5), 1.0, 1.0)
        >>> s = SyntheticStructure("s", d.law, 1.0, 1.0, macs_coef=0.5)   # half the MACs
        >>> round(true_multiplier(s, d, 3.0), 9)
        2.0
    """
    return true_compute(dense, loss) / true_compute(structure, loss)
