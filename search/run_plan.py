"""The plan of a search: every run it will train, with its size, length and compute, before
any is trained (``einspace search --dry-run`` prints it; a real search trains it).

**Horizons that grow with the model.** With ``tokens_per_param`` (Chinchilla's convention),
each structure and width trains to horizons of ``tpp × N`` tokens, where ``N`` is every
trained parameter of the built proxy model, embeddings included (``sum(p.numel())``).
A horizon becomes ``steps = max(1, ⌊tpp × N / (batch × tokens per example) + ½⌋)`` optimizer
steps (the nearest whole step, halves up); the run then trains exactly
``steps × batch × tokens per example`` tokens, which is what the plan reports. Two horizons
that round to the same steps at a small width are one run. Without ``tokens_per_param``
every run trains ``settings.steps``.

**Trunks and branches.** With the ``wsd`` schedule and several horizons, each (structure,
width, seed) trains one *trunk* to its longest horizon and, for each shorter horizon, a
cooldown *branch* that resumes from the trunk's checkpoint at the branch's own decay start,
``branch_step = steps − round(cooldown × steps)`` (:func:`search.schedules.decay_start`),
and decays from there (the LR is constant
up to it in the trunk). The trunk keeps (pins) its checkpoints at its branches' steps. The
family shares one warmup of ``round(warmup × shortest horizon's steps)`` steps (at least 1
when ``warmup > 0``), so each branch starts from the same trunk it would have trained
itself. With ``cosine`` or ``constant``, each horizon is an independent ``run``.

**Compute.** A run costs ``steps × 6 × MACs per token × tokens per step`` FLOPs
(:func:`search.compute.step_flops`); a branch only its own ``steps − branch_step``, since the
trunk's compute up to the branch step is counted once, in the trunk.

**Learning-rate tuning** (``lr_grid``): the tuning runs of a structure are its longest run at
the smallest width and the first seed (the trunk, with its pinned checkpoints, or the longest
independent run), once per learning rate; they are marked ``lr-tuning``. The winner *is*
that grid run (same config, same run id), so the plan counts it once.

Examples:
    >>> horizon_steps(20, 705, 64)  # 20 tokens per parameter of a 705-parameter model
    220
    >>> horizon_steps(1, 10, 64)  # never below one step
    1
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from einspace.errors import EinspaceError
from search.compute import step_flops
from search.proxy_config import make_config
from search.schedules import decay_start, warmup_steps_of
from search.settings import Candidate, RunSettings, parse_candidate

if TYPE_CHECKING:
    import pandas as pd

    from search.proxy_config import ProxyConfig

__all__ = [
    "PLAN_COLUMNS",
    "ModelSize",
    "PlannedRun",
    "Role",
    "SearchPlan",
    "horizon_steps",
    "model_size",
    "plan_grid",
    "plan_tuning",
    "warmup_steps",
]

Role = Literal["trunk", "branch", "run", "lr-tuning"]
"""What a planned run is: a wsd trunk, a cooldown branch of one, an independent run, or a
learning-rate tuning run."""

PLAN_COLUMNS: Final = (
    "role",
    "structure",
    "width",
    "seed",
    "lr",
    "params",
    "tokens_per_param",
    "steps",
    "branch_step",
    "tokens",
    "flops",
    "run_id",
    "parent",
)
"""The columns of :meth:`SearchPlan.frame` (and of ``--dry-run --format csv``)."""


@dataclass(frozen=True)
class ModelSize:
    """What a run's plan needs to know of its model: trained parameters (embeddings
    included), forward MACs per token, and tokens per example."""

    params: int
    macs_per_token: int
    tokens_per_example: int


def model_size(settings: RunSettings, structure: str | Candidate, width: int) -> ModelSize:
    """The :class:`ModelSize` of the model a run of ``settings`` trains at ``width`` (builds
    the model once per process; imports torch).

    Examples:
        >>> size = model_size(RunSettings(depth=1), "dense", 16)
        >>> size.params == (8 * 16 + 16) + (16 * 16 + 16) + (16 * 1 + 1)
        True
    """
    spec = str(parse_candidate(structure))
    values = {f.name: getattr(settings, f.name) for f in fields(RunSettings)}
    return _model_size(json.dumps(values, sort_keys=True, default=str), spec, width)


@functools.lru_cache(maxsize=256)
def _model_size(settings_json: str, structure: str, width: int) -> ModelSize:
    from search.models import build_model, macs_per_token, tokens_per_example

    settings = RunSettings(**json.loads(settings_json))
    task = settings.make_task()
    model = build_model(make_config(settings, structure, width, 0), task)
    params = sum(p.numel() for p in model.parameters())
    macs = macs_per_token(model, task, settings.batch_size)
    return ModelSize(int(params), int(macs), tokens_per_example(task))


def horizon_steps(tokens_per_param: float, params: int, tokens_per_step: int) -> int:
    """Optimizer steps of a horizon of ``tokens_per_param × params`` tokens: the nearest
    whole step (halves up), at least 1.

    Examples:
        >>> horizon_steps(2.5, 100, 100), horizon_steps(3.5, 100, 200)  # 2.5 → 3, 1.75 → 2
        (3, 2)
    """
    return max(1, math.floor(tokens_per_param * params / tokens_per_step + 0.5))


def warmup_steps(warmup: float, shortest_steps: int) -> int:
    """The warmup a trunk family shares: that of its shortest horizon
    (:func:`search.schedules.warmup_steps_of`), at least 1 when ``warmup > 0``.

    Examples:
        >>> warmup_steps(0.05, 220), warmup_steps(0.01, 20), warmup_steps(0.0, 220)
        (11, 1, 0)
    """
    if warmup <= 0:
        return 0
    return max(1, warmup_steps_of(shortest_steps, warmup))


def _config(
    settings: RunSettings, structure: str, width: int, seed: int, **extra: Any
) -> ProxyConfig:
    """The :class:`~search.proxy_config.ProxyConfig` of a planned run (``extra``: its ``steps``
    and, for a trunk family, ``parent``, ``branch_step``, ``warmup_steps``)."""
    steps = extra.pop("steps", None)
    config = make_config(settings, structure, width, seed, steps=steps)
    return replace(config, **extra) if extra else config


@dataclass(frozen=True)
class PlannedRun:
    """One run of a search's plan (see the module docs).

    Attributes:
        config: the run's config (its identity).
        role: ``trunk``, ``branch``, ``run`` or ``lr-tuning``.
        run_id: the run's id in the store.
        size: its model's size.
        tokens_per_param: the horizon it trains to (None: a fixed ``steps``).
        parent: a branch's trunk run id.
        branch_step: where a branch resumes from its trunk.
        keep_steps: the steps at which a trunk keeps its checkpoints for its branches.
    """

    config: ProxyConfig
    role: Role
    run_id: str
    size: ModelSize
    tokens_per_param: float | None = None
    parent: str | None = None
    branch_step: int | None = None
    keep_steps: tuple[int, ...] = ()

    @property
    def tokens_per_step(self) -> int:
        """Tokens one optimizer step trains on: batch × tokens per example."""
        return int(self.config.batch_size) * self.size.tokens_per_example

    @property
    def tokens(self) -> int:
        """Tokens the run has seen when it ends (a branch: its trunk's included)."""
        return int(self.config.steps) * self.tokens_per_step

    @property
    def own_steps(self) -> int:
        """Steps this run trains itself (a branch: from its branch step on)."""
        return int(self.config.steps) - (self.branch_step or 0)

    @property
    def flops(self) -> float:
        """Training FLOPs this run spends itself (a branch: only its own steps)."""
        per_token = self.size.macs_per_token * self.size.tokens_per_example
        return self.own_steps * step_flops(per_token, int(self.config.batch_size))

    def with_lr(self, lr: float) -> PlannedRun:
        """The same run at another base learning rate, as a tuning run."""
        from search.store import run_id

        config = replace(self.config, lr=lr)
        return replace(self, config=config, run_id=run_id(config.to_dict()), role="lr-tuning")

    def row(self) -> dict[str, Any]:
        """The run as a row of :data:`PLAN_COLUMNS`."""
        c = self.config
        return {
            "role": self.role,
            "structure": c.structure,
            "width": c.width,
            "seed": c.seed,
            "lr": c.lr,
            "params": self.size.params,
            "tokens_per_param": self.tokens_per_param,
            "steps": c.steps,
            "branch_step": self.branch_step,
            "tokens": self.tokens,
            "flops": self.flops,
            "run_id": self.run_id,
            "parent": self.parent,
        }


@dataclass(frozen=True)
class SearchPlan:
    """Every run a search plans, and the θ trials' compute.

    Attributes:
        runs: the planned runs (tuning runs first, then the grid; each run id once).
        theta_trials: θ trials that will train (0: none).
        theta_budget: compute of one θ trial in FLOPs (at most; pruned trials spend less).
    """

    runs: tuple[PlannedRun, ...]
    theta_trials: int = 0
    theta_budget: float = 0.0

    @property
    def total_flops(self) -> float:
        """Training FLOPs of the whole plan: each run's own (a trunk once, a branch from its
        branch step), plus the θ trials' budgets."""
        return sum(r.flops for r in self.runs) + self.theta_trials * self.theta_budget

    def counts(self) -> dict[str, int]:
        """Planned runs per role."""
        out: dict[str, int] = {}
        for r in self.runs:
            out[r.role] = out.get(r.role, 0) + 1
        return out

    def summary(self) -> str:
        """One line: runs per role and the total FLOPs.

        Examples:
            >>> SearchPlan((), theta_trials=2, theta_budget=1e9).summary()
            'plan: 0 runs, 2 θ trials (≤ 1e+09 FLOPs each); total 2e+09 FLOPs'
        """
        roles = ", ".join(f"{n} {role}" for role, n in self.counts().items())
        parts = [f"{len(self.runs)} runs" + (f" ({roles})" if roles else "")]
        if self.theta_trials:
            parts.append(f"{self.theta_trials} θ trials (≤ {self.theta_budget:.3g} FLOPs each)")
        return f"plan: {', '.join(parts)}; total {self.total_flops:.3g} FLOPs"

    def frame(self) -> pd.DataFrame:
        """The planned runs as a frame of :data:`PLAN_COLUMNS`."""
        import pandas as pd

        return pd.DataFrame([r.row() for r in self.runs], columns=list(PLAN_COLUMNS))

    def to_csv(self) -> str:
        """The planned runs as CSV (``--dry-run --format csv``)."""
        buffer = io.StringIO()
        self.frame().to_csv(buffer, index=False)
        return buffer.getvalue()

    def grid(self) -> tuple[PlannedRun, ...]:
        """The runs that are not tuning runs."""
        return tuple(r for r in self.runs if r.role != "lr-tuning")


def _family(
    settings: RunSettings,
    label: str,
    width: int,
    seed: int,
    horizons: Sequence[tuple[float | None, int]],
) -> list[PlannedRun]:
    """The runs of one (structure, width, seed): a trunk and its branches, or runs."""
    from search.store import run_id

    size = model_size(settings, label, width)
    if settings.schedule != "wsd" or len(horizons) == 1:
        out = []
        for tpp, steps in horizons:
            config = _config(settings, label, width, seed, steps=steps)
            out.append(PlannedRun(config, "run", run_id(config.to_dict()), size, tpp))
        return out
    warmup = warmup_steps(settings.warmup, horizons[0][1])
    starts = {steps: decay_start(steps, settings.cooldown) for _, steps in horizons[:-1]}
    trunk_tpp, trunk_steps = horizons[-1]
    config = _config(settings, label, width, seed, steps=trunk_steps, warmup_steps=warmup)
    trunk_id = run_id(config.to_dict())
    keep = tuple(sorted(set(starts.values())))
    out = [PlannedRun(config, "trunk", trunk_id, size, trunk_tpp, keep_steps=keep)]
    for tpp, steps in horizons[:-1]:
        branch = _config(
            settings,
            label,
            width,
            seed,
            steps=steps,
            warmup_steps=warmup,
            parent=trunk_id,
            branch_step=starts[steps],
        )
        rid = run_id(branch.to_dict())
        out.append(PlannedRun(branch, "branch", rid, size, tpp, trunk_id, starts[steps]))
    return out


def _horizons(
    settings: RunSettings, label: str, width: int, tokens_per_param: Sequence[float] | None
) -> list[tuple[float | None, int]]:
    """(tokens per parameter, steps) per distinct horizon of a structure at a width,
    shortest first."""
    if tokens_per_param is None:
        return [(None, int(settings.steps))]
    size = model_size(settings, label, width)
    per_step = int(settings.batch_size) * size.tokens_per_example
    out: dict[int, float] = {}
    for tpp in sorted(tokens_per_param):
        out.setdefault(horizon_steps(tpp, size.params, per_step), tpp)
    return [(tpp, steps) for steps, tpp in sorted(out.items())]


def plan_grid(
    structures: Mapping[str, Candidate],
    widths: Sequence[int],
    seeds: Sequence[int],
    settings: RunSettings | Mapping[str, RunSettings],
    tokens_per_param: Sequence[float] | None = None,
) -> list[PlannedRun]:
    """The grid's runs: per structure × width × seed, its trunk and branches or its runs;
    trunks and independent runs first, each group most expensive first (load balance).

    ``settings`` may differ per structure (a mapping by label: the tuned learning rates).

    Raises:
        EinspaceError: no structures or no seeds.

    Examples:
        >>> from search.settings import parse_structures
        >>> runs = plan_grid(parse_structures(["dense"]), [16], [0], RunSettings(steps=7))
        >>> [(r.role, r.config.steps, r.flops == 7 * 6 * 656 * 64) for r in runs]
        [('run', 7, True)]
    """
    if not structures:
        raise EinspaceError(
            "the candidate list is empty: give structures (e.g. 'dense btt monarch "
            "low_rank kronecker') or θ-space trials (--trials N)"
        )
    if not seeds:
        raise EinspaceError("no seeds given; expected e.g. [0]")
    out: list[PlannedRun] = []
    for label in structures:
        own = settings[label] if isinstance(settings, Mapping) else settings
        for width in widths:
            horizons = _horizons(own, label, width, tokens_per_param)
            for seed in seeds:
                out.extend(_family(own, label, width, seed, horizons))
    return sorted(out, key=lambda r: (r.role == "branch", -r.flops))


def plan_tuning(
    grid: Sequence[PlannedRun], lrs: Mapping[str, Sequence[float]], seed: int
) -> list[PlannedRun]:
    """The tuning runs of each structure: its longest grid run at the smallest width and
    ``seed`` (trunks and runs only, never a branch), once per learning rate of ``lrs``.

    Examples:
        >>> from search.settings import parse_structures
        >>> grid = plan_grid(parse_structures(["dense"]), [16, 32], [0], RunSettings(steps=5))
        >>> [(r.role, r.config.width, r.config.lr) for r in plan_tuning(grid, {"dense": [0.1]}, 0)]
        [('lr-tuning', 16, 0.1)]
    """
    out: list[PlannedRun] = []
    for label, values in lrs.items():
        own = [r for r in grid if r.config.structure == label and r.role != "branch"]
        if not own:
            continue
        width = min(r.config.width for r in own)
        template = max(
            (r for r in own if r.config.width == width and r.config.seed == seed),
            key=lambda r: r.config.steps,
        )
        out.extend(template.with_lr(lr) for lr in values)
    return out
