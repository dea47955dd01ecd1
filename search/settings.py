"""The settings every run of a search shares, and parsing of the search's inputs.

Examples:
    >>> parse_widths("16, 64,256")
    [16, 64, 256]
    >>> RunSettings(steps=50).steps
    50
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from einspace.errors import EinspaceError, suggest
from einspace.moe import MOE_KINDS, MoESpec, is_moe_spec, parse_spec
from einspace.proxy_realization import DEFAULT_LAYER_SIZING, LayerSizing
from einspace.structure import Structure
from einspace.validation import check_int
from search.schedules import Schedule

if TYPE_CHECKING:
    from search.tasks import Task

__all__ = [
    "Candidate",
    "RunSettings",
    "parse_candidate",
    "parse_seeds",
    "parse_structures",
    "parse_widths",
    "settings_fields",
    "width_structure",
    "with_settings",
]

Candidate = Structure | MoESpec
"""What a search compares: a structure, or a sparse spec (:mod:`einspace.moe`:
``btt_moe:e=4,k=1``, ``moe:e=4,k=1``) that only the proxies build (docs/moe.md)."""


def _parse_ints(values: str | Iterable[int], what: str, low: int, example: str) -> list[int]:
    items: list[object] = (
        [p.strip() for p in values.split(",") if p.strip()]
        if isinstance(values, str)
        else list(values)
    )
    out: list[int] = []
    for item in items:
        try:
            value = int(item) if isinstance(item, str) else item
        except ValueError:
            value = item
        value = check_int(value, what, low=low, example=int(example.split(",")[0]))
        if value not in out:
            out.append(value)
    if not out:
        raise EinspaceError(f"no {what}s given ({values!r}); expected e.g. '{example}'")
    return out


def parse_widths(widths: str | Iterable[int]) -> list[int]:
    """Widths from ``"16,64,256"`` or a sequence of ints; distinct, in the order given.

    Raises:
        EinspaceError: no widths, or a width that is not a positive integer.

    Examples:
        >>> parse_widths([64, 16, 64])
        [64, 16]
    """
    return _parse_ints(widths, "width", 1, "16,64,256")


def parse_seeds(seeds: str | Iterable[int]) -> list[int]:
    """Seeds from ``"0,1,2"`` or a sequence of ints ≥ 0; distinct, in the order given.

    Examples:
        >>> parse_seeds("0, 1")
        [0, 1]
    """
    return _parse_ints(seeds, "seed", 0, "0,1,2")


def parse_candidate(spec: str | Candidate) -> Candidate:
    """A search candidate from what a user typed: a structure spec (``"btt"``,
    ``"low_rank:r=0.25"``, a θ string) or a sparse spec (``"btt_moe:e=4,k=1"``,
    ``"moe:e=4,k=1"``). Its label, ``str(candidate)``, parses back to it.

    Raises:
        EinspaceError: a spec that does not parse (the message names it).

    Examples:
        >>> str(parse_candidate("btt")), str(parse_candidate("btt_moe:e=4,k=1"))
        ('btt(r=0.25)', 'btt_moe(e=4, k=1)')
        >>> parse_candidate(str(parse_candidate("moe:e=8"))) == parse_candidate("moe(e=8, k=2)")
        True
    """
    if not isinstance(spec, str | Structure | MoESpec):
        raise EinspaceError(
            f"structure {spec!r} must be a Structure or a spec string such as 'btt', "
            f"'btt:r=0.5', '(0.5|0|0.5|0|0.5|0.5|0.25)' or 'btt_moe:e=4,k=1'"
        )
    try:
        return parse_spec(spec)
    except EinspaceError as err:
        name = str(spec).strip().split(":")[0].split("(")[0].lower()
        close = difflib.get_close_matches(name, MOE_KINDS, n=1, cutoff=0.75)
        if not close or is_moe_spec(spec) or isinstance(spec, Structure):
            raise
        raise EinspaceError(f"{err}; or the sparse spec '{close[0]}:e=4,k=1'") from None


def width_structure(candidate: Candidate) -> Structure:
    """The structure whose realizations decide at which widths ``candidate`` runs: itself,
    or for a sparse spec the layer its experts are (``btt_moe``: Monarch; ``moe``: dense).

    Examples:
        >>> str(width_structure(parse_candidate("btt_moe:e=4,k=1")))
        'monarch'
    """
    if isinstance(candidate, MoESpec):
        return Structure.named("monarch" if candidate.kind == "btt_moe" else "dense")
    return candidate


def parse_structures(specs: Iterable[str | Candidate]) -> dict[str, Candidate]:
    """Parse structure specs (and sparse specs, :func:`parse_candidate`) into
    ``{canonical label: candidate}``, dropping repeats.

    The label is ``str(candidate)``: ``"btt"`` becomes ``"btt(r=0.25)"``, a θ string keeps
    its paper form, ``"btt_moe:e=4,k=1"`` becomes ``"btt_moe(e=4, k=1)"``. Labels parse back
    to the same candidate.

    Raises:
        EinspaceError: a spec that does not parse (the message names it).

    Examples:
        >>> list(parse_structures(["low_rank:r=0.25", "(1|0|0|1|0|0|0)", "moe:e=4,k=1"]))
        ['low_rank(r=0.25)', '(1|0|0|1|0|0|0)', 'moe(e=4, k=1)']
    """
    out: dict[str, Candidate] = {}
    for spec in specs:
        candidate = parse_candidate(spec)
        out.setdefault(str(candidate), candidate)
    return out


def _help(text: str) -> dict[str, str]:
    """Field metadata: the help text of the field's ``einspace search`` option."""
    return {"help": text}


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The settings of a proxy run that every run of a search shares, with their defaults.

    This is the one place these settings and their defaults are written:
    :class:`~search.proxy_config.ProxyConfig` is a ``RunSettings`` plus what differs per run
    (structure, width, seed; :func:`~search.proxy_config.make_config` builds one from these
    settings); :func:`~search.proxy.proxy_run` takes every field as a keyword; the options of
    ``einspace search`` are generated from the fields (type,
    default, and the ``help`` in each field's metadata). Adding a field here adds it
    everywhere (and changes new runs' ids, since a config's fields are its identity).

    Examples:
        >>> replace(RunSettings(), lr=1e-2).lr
        0.01
    """

    task: str = field(
        default="mlp_regression",
        metadata=_help(
            "Proxy task: mlp_regression, digits, cifar10, lm, or your own as 'module:attr' "
            "(a task object, class or function)."
        ),
    )
    task_kwargs: Mapping[str, Any] = field(
        default_factory=dict, metadata=_help("Keyword arguments of the task (JSON).")
    )
    model: str = field(
        default="",
        metadata=_help(
            "Your own model factory 'module:attr', called (structure, width, task) -> "
            "nn.Module (default: the task's proxy MLP or transformer)."
        ),
    )
    steps: int = field(default=300, metadata=_help("Optimizer steps per run."))
    lr: float = field(
        default=3e-3, metadata=_help("μP base learning rate (dense at --base-width).")
    )
    batch_size: int = field(default=64, metadata=_help("Examples per step."))
    depth: int = field(default=2, metadata=_help("Structured hidden layers (MLP proxy)."))
    n_layer: int = field(default=2, metadata=_help("Transformer blocks (LM proxy)."))
    d_head: int = field(default=16, metadata=_help("Head size (LM proxy; width / d_head heads)."))
    tied: bool = field(default=False, metadata=_help("Tie readout and embedding (LM proxy)."))
    aux_weight: float = field(
        default=0.01,
        metadata=_help(
            "Weight of the mixture-of-experts auxiliary loss (load balancing + 0.1 × z-loss, "
            "averaged over the routed layers) added to the training loss of sparse "
            "candidates (btt_moe, moe); the paper's 0.01. Logged losses stay the task's."
        ),
    )
    schedule: Schedule = field(
        default="wsd",
        metadata=_help(
            "Learning-rate schedule: 'wsd' (warmup, constant, then a 1 - sqrt cooldown to 0: "
            "one long run serves every shorter horizon through cooldown branches), 'cosine' "
            "(down to --min-lr) or 'constant'."
        ),
    )
    warmup: float = field(
        default=0.05,
        metadata=_help(
            "Fraction of the run's steps spent warming the learning rate up linearly from 0; "
            "5 % lets Adam's moment estimates settle before the full rate and costs little "
            "of a short run."
        ),
    )
    cooldown: float = field(
        default=0.2,
        metadata=_help(
            "wsd: fraction of the run's steps spent decaying the learning rate to 0 "
            "(Hägele et al. 2024 find 20 % matches a cosine run)."
        ),
    )
    min_lr: float = field(
        default=0.1,
        metadata=_help("cosine: the final learning rate, as a fraction of the peak."),
    )
    eval_every: int = field(default=25, metadata=_help("Steps between logged points."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW's decoupled weight decay."))
    base_width: int = field(default=64, metadata=_help("Width at which --lr applies unscaled."))
    mode: LayerSizing = field(
        default=DEFAULT_LAYER_SIZING,
        metadata=_help(
            "Layer sizes: 'auto' (exact, most balanced, where the width factors; else round), "
            "'round' (pad) or 'exact'."
        ),
    )
    pad_tol: float = field(default=0.15, metadata=_help("Padding tolerance of round mode."))
    task_repr: str | None = field(default=None, metadata={"cli": False})

    def settings(self) -> RunSettings:
        """Just the shared settings (of a :class:`~search.proxy_config.ProxyConfig`, say).

        Examples:
            >>> RunSettings(steps=5).settings() == RunSettings(steps=5)
            True
        """
        return RunSettings(**{f.name: getattr(self, f.name) for f in fields(RunSettings)})

    def make_task(self) -> Task:
        """The task of these settings (imports torch; built once per process and reused:
        tasks are read-only, and building one can take a fraction of a second): a registered
        name, a ``"module:attr"`` spec, or an in-process task object (``task_repr`` set)."""
        kwargs = json.dumps(dict(self.task_kwargs), sort_keys=True, default=str)
        return _task(self.task, kwargs, self.task_repr, _data_stamp(self.task_kwargs))


def settings_fields() -> tuple[Field[Any], ...]:
    """The fields of :class:`RunSettings` that are options of ``einspace search``, in order
    (with their ``help`` metadata); ``task_repr``, set by task objects, is not one.

    Examples:
        >>> [f.name for f in settings_fields()][:3]
        ['task', 'task_kwargs', 'model']
    """
    return tuple(f for f in fields(RunSettings) if f.metadata.get("cli", True))


def with_settings(base: RunSettings | None = None, **overrides: Any) -> RunSettings:
    """``base`` (default: :class:`RunSettings` ``()``) with some fields replaced by name.

    Raises:
        EinspaceError: a name that is not a field (naming the nearest one).

    Examples:
        >>> with_settings(lr=0.1, steps=10).steps
        10
        >>> with_settings(lrr=0.1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: unknown run setting 'lrr'; did you mean 'lr'? ...
    """
    names = [f.name for f in fields(RunSettings)]
    for key in overrides:
        if key not in names:
            raise EinspaceError(f"unknown run setting {key!r}; {suggest(key, names)}")
    return replace(base.settings() if base is not None else RunSettings(), **overrides)


def _data_stamp(kwargs: Mapping[str, Any]) -> tuple[tuple[str, int, int], ...]:
    """Size and modification time of the files a task's ``path``/``root`` names, so that a
    task is built again when its data changes."""
    import os

    out = []
    for key in ("path", "root"):
        value = kwargs.get(key)
        if isinstance(value, str | os.PathLike):
            try:
                info = os.stat(value)
            except OSError:
                continue
            out.append((key, info.st_mtime_ns, info.st_size))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _task(name: str, kwargs_json: str, task_repr: str | None, stamp: object) -> Task:
    from search.models import resolve_task

    return resolve_task(name, json.loads(kwargs_json), task_repr)
