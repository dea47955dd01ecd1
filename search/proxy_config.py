"""The config of one proxy run: its validation, its stored form (its identity), and the
functions that build one from a search's shared :class:`~search.settings.RunSettings`.

A :class:`ProxyConfig` is a ``RunSettings`` (task, steps, lr, …: what a search's runs share)
plus what differs per run (structure, width, seed). Its :meth:`~ProxyConfig.to_dict` is the
run's identity in the store (:func:`search.store.run_id`); :meth:`~ProxyConfig.from_dict`
reads it back.

Importing this module does not import torch; validating a config imports the task registry
and building one for a task name builds the task (both import torch).

Examples:
    >>> from search.settings import RunSettings
    >>> cfg = make_config(RunSettings(steps=50), "btt", 16, seed=1)
    >>> cfg.structure, cfg.steps, cfg.seed
    ('btt(r=0.25)', 50, 1)
    >>> ProxyConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

from einspace.errors import EinspaceError, suggest
from einspace.moe import MoESpec
from einspace.proxy_realization import padding_record
from einspace.realization import Realization
from einspace.validation import check_int
from search.compute import step_flops
from search.schedules import SCHEDULES, decay_start, lr_factor, warmup_steps_of
from search.settings import Candidate, RunSettings, parse_candidate

__all__ = [
    "CONFIG_KIND",
    "CONFIG_VERSION",
    "ProxyConfig",
    "check_settings",
    "compute_per_step",
    "make_config",
    "positive_int",
]

CONFIG_KIND: Final = "proxy"
CONFIG_VERSION: Final = 3
"""Bumped when the model or the training loop changes, so old runs are not reused."""

_POSITIVE_INTS: Final = (
    "width",
    "steps",
    "batch_size",
    "depth",
    "eval_every",
    "base_width",
    "n_layer",
    "d_head",
)
_NON_NEGATIVE_NUMBERS: Final = ("lr", "weight_decay", "pad_tol")
_OPTIONAL_KEYS: Final = ("task_repr", "task_digest", "parent", "branch_step", "warmup_steps")


@dataclass(frozen=True)
class ProxyConfig(RunSettings):
    """Everything that determines a proxy run; its :meth:`to_dict` is the run's identity.

    A :class:`~search.settings.RunSettings` (task, steps, lr, …: the settings a search's
    runs share, with their defaults) plus what differs per run. ``structure`` is
    normalized to the canonical spec ``str(parse_candidate(spec))`` (``"btt"`` becomes
    ``"btt(r=0.25)"``, ``"btt_moe:e=4,k=1"`` becomes ``"btt_moe(e=4, k=1)"``), which parses
    back to the same candidate.

    Attributes:
        structure: the hidden layers' structure spec, or a sparse spec (docs/moe.md): the LM
            proxy builds ``btt_moe`` and ``moe``, the MLP proxy ``btt_moe`` only.
        width: hidden width (the structured layers are ``width × width``).
        seed: seed of the model init and of the batch order.
        task_digest: the task's ``digest`` (of its data, e.g. the LM corpus), when it has one.
        parent: the run id of the trunk a cooldown branch resumes from (``None``: a run
            trained from step 0). A branch is a ``wsd`` run whose own schedule equals its
            trunk's up to ``branch_step``.
        branch_step: the trunk step a branch resumes from: its own decay start
            (:func:`search.schedules.decay_start`), at or before the trunk's.
        warmup_steps: the warmup in steps (``None``: ``round(warmup × steps)``); a trunk and
            its branches share one value, so their learning rates agree up to the branch.

    A config's ``to_dict`` also records ``padding``: the mode, class sizes and padding of every
    structured layer of the built-in proxies (derived from the other fields; for a sparse
    spec the run result takes it from the built model). ``aux_weight`` is part of the
    identity only where it can act: for a sparse spec or a user model (so the ids of
    dense and structured runs do not depend on it).

    Examples:
        >>> cfg = ProxyConfig("btt", width=64, steps=100)
        >>> cfg.structure, ProxyConfig.from_dict(cfg.to_dict()) == cfg
        ('btt(r=0.25)', True)
    """

    structure: str
    width: int
    seed: int = field(default=0, kw_only=True)
    task_digest: str | None = field(default=None, kw_only=True)
    parent: str | None = field(default=None, kw_only=True)
    branch_step: int | None = field(default=None, kw_only=True)
    warmup_steps: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", str(parse_candidate(self.structure)))
        for name in _POSITIVE_INTS:
            value = positive_int(getattr(self, name), name, allow_zero=name == "depth")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "seed", positive_int(self.seed, "seed", allow_zero=True))
        for name in _NON_NEGATIVE_NUMBERS:
            object.__setattr__(self, name, _non_negative(getattr(self, name), name))
        if self.mode not in ("auto", "round", "exact"):
            raise EinspaceError(
                f"mode = {self.mode!r}; {suggest(str(self.mode), ['auto', 'round', 'exact'])}"
            )
        if not isinstance(self.tied, bool):
            raise EinspaceError(f"tied = {self.tied!r} must be True or False")
        if not isinstance(self.model, str):
            raise EinspaceError(f"model = {self.model!r} must be a 'module:attr' string")
        _check_task(self.task, self.task_repr)
        if not isinstance(self.task_kwargs, Mapping):
            raise EinspaceError(f"task_kwargs must be a mapping; got {self.task_kwargs!r}")
        object.__setattr__(self, "task_kwargs", dict(self.task_kwargs))
        _check_schedule(self)
        _check_sparse(self)

    def schedule_warmup_steps(self) -> int:
        """The warmup in steps: ``warmup_steps``, or ``round(warmup × steps)``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return warmup_steps_of(self.steps, self.warmup)

    def lr_factor(self, step: int) -> float:
        """The factor of the base learning rate at the update of ``step``
        (:func:`search.schedules.lr_factor` of this run's schedule).

        Examples:
            >>> cfg = ProxyConfig("dense", 8, steps=10, warmup=0.2, cooldown=0.4)
            >>> [cfg.lr_factor(s) for s in (0, 1, 5, 6, 7)]
            [0.5, 1.0, 1.0, 1.0, 0.5]
        """
        return lr_factor(
            step,
            self.steps,
            self.schedule,
            warmup_steps=self.schedule_warmup_steps(),
            cooldown=self.cooldown,
            min_lr=self.min_lr,
        )

    def structure_object(self) -> Candidate:
        """The parsed structure (or sparse spec)."""
        return parse_candidate(self.structure)

    @property
    def sparse(self) -> bool:
        """Whether the structure is a sparse spec (``btt_moe``, ``moe``).

        Examples:
            >>> ProxyConfig("btt_moe:e=4,k=1", 16).sparse, ProxyConfig("btt", 16).sparse
            (True, False)
        """
        return isinstance(self.structure_object(), MoESpec)

    def to_dict(self) -> dict[str, Any]:
        """The run config as stored (JSON-ready; ``kind`` and ``version`` included).

        Examples:
            >>> ProxyConfig("dense", width=8, steps=1).to_dict()["structure"]
            'dense'
        """
        out = {"kind": CONFIG_KIND, "version": CONFIG_VERSION, **asdict(self)}
        for key in _OPTIONAL_KEYS:
            if out[key] is None:
                del out[key]
        if not out["model"]:
            del out["model"]
            if not self.sparse:
                del out["aux_weight"]
        record = self.padding()
        if record is not None:
            out["padding"] = record
        return out

    def padding(self) -> dict[str, dict[str, object]] | None:
        """Mode, class sizes and padding of every structured layer of the built-in proxy
        (``None`` with a user model or a sparse spec: its run result takes them from the
        built model).

        Examples:
            >>> ProxyConfig("monarch", 128, depth=1).padding()["hidden.0"]["input"]
            0
        """
        if self.model or self.sparse:
            return None
        return _padding_of(self)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ProxyConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. a stored run's config).

        Raises:
            EinspaceError: not a proxy config, of another version, or with unknown keys.
        """
        if config.get("kind") != CONFIG_KIND:
            raise EinspaceError(
                f"config {dict(config)!r} is not a proxy-run config (kind {config.get('kind')!r}"
                f", expected {CONFIG_KIND!r})"
            )
        if config.get("version") != CONFIG_VERSION:
            raise EinspaceError(
                f"proxy config version {config.get('version')!r}; this einspace runs version "
                f"{CONFIG_VERSION}"
            )
        names = {f.name for f in fields(cls)}
        body = {k: v for k, v in config.items() if k not in ("kind", "version", "padding")}
        unknown = [k for k in body if k not in names]
        if unknown:
            raise EinspaceError(
                f"unknown proxy config key {unknown[0]!r}; {suggest(unknown[0], names)}"
            )
        return cls(**body)


def make_config(
    settings: RunSettings,
    structure: str | Candidate,
    width: int,
    seed: int = 0,
    *,
    steps: int | None = None,
    eval_every: int | None = None,
    parent: str | None = None,
    branch_step: int | None = None,
    warmup_steps: int | None = None,
) -> ProxyConfig:
    """The :class:`ProxyConfig` of one run of ``settings`` (builds the task, to record its
    ``digest``: imports torch).

    Args:
        settings: the shared settings (a :class:`ProxyConfig` works too: its shared part is
            taken).
        structure: the run's structure (object or spec).
        width: the run's width.
        seed: the run's seed.
        steps: replaces ``settings.steps``.
        eval_every: replaces ``settings.eval_every``.
        parent: the trunk's run id, for a cooldown branch (see :class:`ProxyConfig`).
        branch_step: the trunk step the branch resumes from (its own decay start).
        warmup_steps: the warmup in steps shared by a trunk and its branches.

    Examples:
        >>> make_config(RunSettings(steps=50), "dense", 16, steps=8).steps
        8
    """
    values = {f.name: getattr(settings, f.name) for f in fields(RunSettings)}
    if steps is not None:
        values["steps"] = steps
    if eval_every is not None:
        values["eval_every"] = eval_every
    spec = structure if isinstance(structure, str) else str(structure)
    digest = getattr(settings.make_task(), "digest", None)
    return ProxyConfig(
        spec,
        width,
        seed=seed,
        task_digest=digest,
        parent=parent,
        branch_step=branch_step,
        warmup_steps=warmup_steps,
        **values,
    )


def check_settings(settings: RunSettings) -> None:
    """Raise :class:`EinspaceError` for an unknown task or a bad value of ``settings``
    (imports torch).

    Examples:
        >>> check_settings(RunSettings(steps=0))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: steps = 0 must be an integer ≥ 1; ...
    """
    settings.make_task()
    make_config(settings, "dense", 16)  # validates every number


def compute_per_step(settings: RunSettings, structure: Candidate | str, width: int) -> float:
    """Training FLOPs of one optimizer step of a run of ``settings`` at ``width`` (imports
    torch): ``6 × MACs per token × tokens per example × batch``
    (:func:`search.models.macs_per_token`; the model is built once per process to count it).

    Examples:
        >>> s = RunSettings(depth=1, batch_size=2)
        >>> compute_per_step(s, "dense", 16) == 6 * (8 * 16 + 16 * 16 + 16 * 1) * 2
        True
    """
    spec = str(parse_candidate(structure))
    values = {f.name: getattr(settings, f.name) for f in fields(RunSettings)}
    return _step_compute(json.dumps(values, sort_keys=True, default=str), spec, width)


def positive_int(value: object, name: str, *, allow_zero: bool = False) -> int:
    """``value`` as an int, or an :class:`EinspaceError` naming ``name`` unless it is an
    integer ≥ 1 (≥ 0 with ``allow_zero``).

    Examples:
        >>> positive_int(3, "steps")
        3
        >>> positive_int(0, "steps")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: steps = 0 must be an integer ≥ 1; the nearest valid ...
    """
    return check_int(value, name, low=0 if allow_zero else 1)


def _non_negative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EinspaceError(f"{name} = {value!r} must be a number")
    if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
        raise EinspaceError(f"{name} = {value!r} must be finite and positive")
    return float(value)


def _fraction(value: object, flag: str, *, low: float, high: float, default: float) -> float:
    """``value`` as a float in ``[low, high]``, or an error naming ``flag`` and the nearest
    valid value."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EinspaceError(f"{flag} {value!r} must be a number in [{low}, {high}], e.g. {default}")
    if not low <= value <= high:
        nearest = min(max(value, low), high)
        raise EinspaceError(
            f"{flag} {value!r} must be in [{low}, {high}]; the nearest valid value is {nearest}"
        )
    return float(value)


def _check_schedule(config: ProxyConfig) -> None:
    """Validate the schedule fields (naming the ``einspace search`` flags) and a branch's
    ``parent``/``branch_step``."""
    if config.schedule not in SCHEDULES:
        raise EinspaceError(
            f"--schedule {config.schedule!r}; {suggest(str(config.schedule), SCHEDULES)}"
        )
    for name, low, default in (("warmup", 0.0, 0.05), ("cooldown", 0.0, 0.2), ("min_lr", 0.0, 0.1)):
        flag = "--" + name.replace("_", "-")
        value = _fraction(getattr(config, name), flag, low=low, high=1.0, default=default)
        object.__setattr__(config, name, value)
    if config.warmup_steps is not None:
        positive_int(config.warmup_steps, "warmup_steps", allow_zero=True)
    warm = config.schedule_warmup_steps()
    if config.schedule == "wsd" and warm > decay_start(config.steps, config.cooldown):
        room = max(0.0, 1.0 - config.cooldown)
        raise EinspaceError(
            f"--warmup {config.warmup} overlaps --cooldown {config.cooldown}: {warm} warmup steps "
            f"run past the decay start at step {decay_start(config.steps, config.cooldown)} of "
            f"{config.steps}; warmup + cooldown must be at most 1 (e.g. --warmup {room:g})"
        )
    _check_branch(config)


def _check_branch(config: ProxyConfig) -> None:
    if config.parent is None and config.branch_step is None:
        return
    if config.parent is None or config.branch_step is None:
        raise EinspaceError(
            f"a cooldown branch needs both parent and branch_step; got parent={config.parent!r}"
            f", branch_step={config.branch_step!r}"
        )
    if not isinstance(config.parent, str) or not config.parent:
        raise EinspaceError(f"parent {config.parent!r} must be the trunk's run id (a string)")
    if config.schedule != "wsd":
        raise EinspaceError(
            f"a cooldown branch (parent {config.parent!r}) must use --schedule wsd; got "
            f"{config.schedule!r}"
        )
    start = decay_start(config.steps, config.cooldown)
    step = positive_int(config.branch_step, "branch_step", allow_zero=True)
    if step != start:
        raise EinspaceError(
            f"branch_step {step} must be the branch's decay start, step {start} of "
            f"{config.steps} (steps − round(cooldown × steps))"
        )


def _check_sparse(config: ProxyConfig) -> None:
    """Validate ``aux_weight`` (naming ``--aux-weight``) and refuse the standard MoE on a
    proxy without transformer blocks (naming ``--task``)."""
    w = config.aux_weight
    if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
        nearest = "; the nearest valid value is 0" if isinstance(w, int | float) and w < 0 else ""
        raise EinspaceError(f"--aux-weight {w!r} must be a finite number >= 0, e.g. 0.01{nearest}")
    object.__setattr__(config, "aux_weight", float(w))
    spec = config.structure_object()
    if config.model or not isinstance(spec, MoESpec) or spec.kind != "moe":
        return
    from search.tasks import model_kind

    if model_kind(config.make_task()) != "lm":
        raise EinspaceError(
            f"structure {config.structure!r} (the standard MoE) replaces transformer MLP "
            f"blocks, and --task {config.task!r} trains an MLP proxy without them; use "
            f"--task lm, or 'btt_moe:e={spec.experts},k={spec.top_k}', which the MLP proxy "
            f"builds"
        )


def _check_task(task: object, task_repr: str | None) -> None:
    from search.models import is_spec
    from search.tasks import TASKS

    if not isinstance(task, str) or not (task in TASKS or is_spec(task) or task_repr is not None):
        raise EinspaceError(
            f"unknown task {task!r}; {suggest(str(task), TASKS)} (or 'module:attr' for your "
            f"own task)"
        )


def _padding_of(config: ProxyConfig) -> dict[str, dict[str, object]]:
    """The padding record of the built-in proxy of ``config``, from its realizations alone."""
    from search.models import realize_layer
    from search.tasks import model_kind

    w, real = config.width, config.mode
    layers: dict[str, Realization] = {}
    if model_kind(config.make_task()) == "lm":
        sizes = {"attn.q": (w, w), "attn.k": (w, w), "attn.v": (w, w), "attn.o": (w, w)}
        sizes |= {"mlp.fc": (w, 4 * w), "mlp.proj": (4 * w, w)}
        for i in range(config.n_layer):
            for name, (d_in, d_out) in sizes.items():
                layers[f"h.{i}.{name}"] = realize_layer(
                    config.structure, d_in, d_out, real, config.pad_tol
                )
    else:
        for i in range(config.depth):
            layers[f"hidden.{i}"] = realize_layer(config.structure, w, w, real, config.pad_tol)
    return padding_record(layers)


@functools.lru_cache(maxsize=256)
def _step_compute(settings_json: str, structure: str, width: int) -> float:
    from search.models import build_model, macs_per_token, tokens_per_example

    settings = RunSettings(**json.loads(settings_json))
    config = make_config(settings, structure, width)
    task = settings.make_task()
    model = build_model(config, task)
    macs = macs_per_token(model, task, settings.batch_size)
    return step_flops(macs * tokens_per_example(task), settings.batch_size)
