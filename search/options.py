"""The search's own options: how a search runs (workers, store, θ trials, learning-rate
tuning, training horizons, …), as opposed to what each run trains (:class:`RunSettings`).

:class:`SearchOptions` is the one place these options and their defaults are written, as
:class:`~search.settings.RunSettings` is for the run settings: :func:`search.driver.run_search`
takes every field as a keyword, the options of ``einspace search`` are generated from the
fields (type, default, ``help`` metadata; see :mod:`einspace.cli.options`), and the θ
study's job carries the options it needs. Unlike run settings, no option is part of a run's
identity: changing one never changes which runs a search trains under which id (except
``tokens_per_param``, which chooses the runs' lengths).

Two options have another default on the command line than in Python, written in their field
metadata (``cli_default``): ``einspace search`` tunes learning rates (``--lr-grid 5``) and
trains horizons that grow with the model (``--tokens-per-param``, :data:`CLI_TOKENS_PER_PARAM`)
unless ``--lr`` or ``--steps`` is given; from Python both are off unless asked for, so a
script's ``RunSettings(steps=…)`` keeps meaning a fixed length.

Examples:
    >>> SearchOptions(workers=2).workers
    2
    >>> parse_tokens_per_param("20, 5,10")
    (5.0, 10.0, 20.0)
    >>> with_options(trials=3).trials
    3
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, Final, Literal

from einspace import validation
from einspace.errors import EinspaceError, suggest

__all__ = [
    "CLI_TOKENS_PER_PARAM",
    "DEFAULT_STORE",
    "MAX_COMPUTE_RATIO",
    "LRGrid",
    "PlanFormat",
    "SearchOptions",
    "check_int",
    "flag",
    "option_fields",
    "parse_tokens_per_param",
    "with_options",
]

DEFAULT_STORE: Final = "einspace-runs.sqlite"
"""The run store of ``einspace search`` when none is given (in the current folder)."""

MAX_COMPUTE_RATIO: Final = 1.0
"""By default a θ point whose model needs more than this times the dense model's compute per
step, at the θ width or any grid width, is rejected (``costlier than dense``): the search
looks for replacements of dense layers, and such a point, once promoted to the grid's
training lengths, would cost its multiple of a dense run (e.g. ρ = d: 128× dense at width
256). ``run_search(max_compute_ratio=…)`` (``--max-compute-ratio``) sets another bound."""

CLI_TOKENS_PER_PARAM: Final = "5,10,20,40"
"""The training horizons of ``einspace search`` (tokens per trained parameter) unless
``--steps`` or ``--tokens-per-param`` is given: four horizons an octave apart that bracket
Chinchilla's 20 tokens per parameter, so the fits see finished schedules on both sides of
the usual optimum. With ``wsd`` they cost one trunk (40 tokens per parameter) plus 20 % of
each shorter horizon per (structure, width, seed); on the default MLP task and widths 16,
64, 256 the five named structures plan 6.6e12 FLOPs (85 % in trunks, 99 % at width 256)
(``--dry-run`` prints it; about 40 core-minutes at the 2.8 GFLOP/s one thread reached on a
shared 2-core machine)."""

LRGrid = int | str | Sequence[float]
"""A count of log-spaced values (over two decades around the center), or the values."""

PlanFormat = Literal["table", "csv"]
"""How ``--dry-run`` prints the plan."""


def _meta(help: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: the ``help`` of the option, and optionally ``flag`` (its name on the
    command line), ``cli_default`` (another default there), ``cli`` (False: no option)."""
    return {"help": help, **extra}


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """How a search runs, with its defaults (see the module docs).

    Examples:
        >>> SearchOptions().lease_s, SearchOptions().store
        (120.0, 'einspace-runs.sqlite')
        >>> SearchOptions(workers=0).check()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: workers (--workers) = 0 must be an integer ≥ 1...
    """

    store: str = field(
        default=DEFAULT_STORE, metadata=_meta("Run store: SQLite path or SQLAlchemy URL.")
    )
    sweep: str = field(default="search", metadata=_meta("Sweep name of the grid's runs."))
    workers: int = field(default=1, metadata=_meta("Worker processes (each claims runs)."))
    device: str | None = field(default=None, metadata=_meta("torch device, e.g. cuda."))
    threads: int | None = field(
        default=1,
        metadata=_meta(
            "torch threads per worker (0 or None: torch's default). One thread is the "
            "default: proxy models are small, and more threads per worker than cores per "
            "worker make every run many times slower when the CPU is shared."
        ),
    )
    checkpoint_every: int | None = field(
        default=None,
        metadata=_meta("Steps between checkpoints (default: about four per run).", cli=False),
    )
    tokens_per_param: tuple[float, ...] | None = field(
        default=None,
        metadata=_meta(
            "Training horizons in tokens per trained parameter (embeddings included), "
            "comma-separated: each structure and width trains tpp × N tokens per horizon "
            "(with --schedule wsd: one trunk to the longest, a cooldown branch per shorter "
            "one). '0', or an explicit --steps without this option, trains --steps.",
            cli_default=CLI_TOKENS_PER_PARAM,
        ),
    )
    trials: int = field(
        default=0,
        metadata=_meta(
            "θ-space TPE trials that train, in the study as a whole: processes that share "
            "the study share the N (0: grid only)."
        ),
    )
    promote: int = field(default=3, metadata=_meta("Best θ structures added to the grid."))
    theta_width: int | None = field(
        default=None, metadata=_meta("Width of θ trials (default: the middle width).")
    )
    trial_budget: str | None = field(
        default=None,
        metadata=_meta(
            "Compute of each θ trial, with its unit as in score --budget: '2e12 flops', "
            "'1T macs' (default: dense's at --steps, or at the longest horizon of "
            "--tokens-per-param, at the θ width)."
        ),
    )
    storage: str | None = field(
        default=None, metadata=_meta("optuna RDB storage URL (default: the run store).")
    )
    study: str | None = field(default=None, metadata=_meta("optuna study name to share."))
    sampler_seed: int = field(default=0, metadata=_meta("TPE sampler seed."))
    prune: bool = field(default=True, metadata=_meta("Successive-halving pruning of θ trials."))
    enqueue: tuple[str | tuple[float, ...], ...] = field(
        default=(),
        metadata=_meta("θ point a new study tries first, '(α|β|γ|δ|ε|φ|ρ)'; repeatable."),
    )
    max_compute_ratio: float = field(
        default=MAX_COMPUTE_RATIO,
        metadata=_meta(
            "Reject θ points whose model costs more than this times dense's compute per "
            "step at the θ width or a grid width."
        ),
    )
    lr_grid: LRGrid | None = field(
        default=None,
        metadata=_meta(
            "Tune each structure's --lr at the smallest width first: a count of log-spaced "
            "values over two decades around --lr, or values '0.003,0.01'; '0' or an "
            "explicit --lr skips tuning.",
            cli_default="5",
        ),
    )
    lease_s: float = field(
        default=120.0,
        metadata=_meta(
            "Seconds a worker's run stays its own without a heartbeat; a run whose worker "
            "misses it (paused, cut off) is taken over by another worker.",
            flag="lease",
        ),
    )
    wait_s: float = field(
        default=600.0,
        metadata=_meta(
            "Seconds a worker with only cooldown branches left waits for trunks (trained by "
            "other workers) that make no progress, before it stops with an error.",
            flag="branch-wait",
        ),
    )
    progress: bool = field(default=True, metadata=_meta("Show progress bars and live table."))
    dry_run: bool = field(
        default=False,
        metadata=_meta("Print the planned runs and their total FLOPs; train nothing."),
    )
    plan_format: PlanFormat = field(
        default="table",
        metadata=_meta("How --dry-run prints the plan: table or csv.", flag="format"),
    )

    def check(self) -> None:
        """Raise :class:`EinspaceError` for a bad option (naming its flag); integral floats
        of the integer options become ``int``-s.

        Examples:
            >>> SearchOptions(lease_s=0).check()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            einspace.errors.EinspaceError: lease_s (--lease) = 0 must be a positive number...
        """
        lows = {"workers": 1, "trials": 0, "promote": 0, "theta_width": 1, "threads": 0}
        for name, low in lows.items():
            if getattr(self, name) is not None:  # integral floats become ints (frozen: setattr)
                object.__setattr__(self, name, check_int(getattr(self, name), name, low))
        for name, example in (("lease_s", "120 (the default)"), ("wait_s", "600 (the default)")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
                raise EinspaceError(
                    f"{name} ({flag(name)}) = {value!r} must be a positive number of seconds, "
                    f"e.g. {example}"
                )
        if self.tokens_per_param is not None:
            parse_tokens_per_param(self.tokens_per_param)
        if self.plan_format not in ("table", "csv"):
            raise EinspaceError(
                f"--format {self.plan_format!r}: expected 'table' or 'csv' "
                f"({suggest(str(self.plan_format), ['table', 'csv'])})"
            )


def option_fields() -> tuple[Field[Any], ...]:
    """The fields of :class:`SearchOptions` that are options of ``einspace search``.

    Examples:
        >>> "checkpoint_every" in [f.name for f in option_fields()]
        False
    """
    return tuple(f for f in fields(SearchOptions) if f.metadata.get("cli", True))


def flag(name: str) -> str:
    """The command-line flag of a :class:`SearchOptions` field (or of any name).

    Examples:
        >>> flag("lease_s"), flag("tokens_per_param")
        ('--lease', '--tokens-per-param')
    """
    meta: Mapping[str, Any] = {f.name: f.metadata for f in fields(SearchOptions)}.get(name, {})
    return "--" + str(meta.get("flag", name.replace("_", "-")))


def with_options(base: SearchOptions | None = None, **overrides: Any) -> SearchOptions:
    """``base`` (default: :class:`SearchOptions` ``()``) with some fields replaced by name;
    a store path becomes a string, ``enqueue`` and ``tokens_per_param`` tuples.

    Raises:
        EinspaceError: a name that is not an option (naming the nearest one).

    Examples:
        >>> with_options(workrs=2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: unknown search option 'workrs'; did you mean 'workers'?...
    """
    import os

    names = [f.name for f in fields(SearchOptions)]
    for key in overrides:
        if key not in names:
            raise EinspaceError(f"unknown search option {key!r}; {suggest(key, names)}")
    if "store" in overrides and isinstance(overrides["store"], os.PathLike):
        overrides["store"] = os.fspath(overrides["store"])
    if overrides.get("enqueue") is not None:
        overrides["enqueue"] = tuple(
            v if isinstance(v, str) else tuple(v) for v in overrides["enqueue"]
        )
    else:
        overrides.pop("enqueue", None)
    if overrides.get("tokens_per_param") is not None:
        overrides["tokens_per_param"] = parse_tokens_per_param(overrides["tokens_per_param"])
    return replace(base or SearchOptions(), **overrides)


def parse_tokens_per_param(values: str | float | Sequence[float]) -> tuple[float, ...]:
    """Training horizons in tokens per parameter, from ``"2,5,10"`` or numbers: distinct,
    ascending, each a positive finite number.

    Raises:
        EinspaceError: an empty list or a value that is not a positive number (naming
            ``--tokens-per-param``).

    Examples:
        >>> parse_tokens_per_param([20, 2.5, 20])
        (2.5, 20.0)
        >>> parse_tokens_per_param("5,-1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: --tokens-per-param '-1' must be a positive number...
    """
    items: list[object]
    if isinstance(values, str):
        items = [p.strip() for p in values.split(",") if p.strip()]
    elif isinstance(values, int | float):
        items = [values]
    else:
        items = list(values)
    out: set[float] = set()
    for item in items:
        try:
            value = float(item) if not isinstance(item, bool) else math.nan  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise EinspaceError(
                f"--tokens-per-param {str(item)!r} must be a positive number of tokens per "
                f"trained parameter, e.g. '{CLI_TOKENS_PER_PARAM}' (Chinchilla: 20)"
            )
        out.add(value)
    if not out:
        raise EinspaceError(
            f"--tokens-per-param {values!r} gives no horizon; expected e.g. "
            f"'{CLI_TOKENS_PER_PARAM}' (or --steps N for one fixed length)"
        )
    return tuple(sorted(out))


def check_int(value: object, name: str, low: int) -> int:
    """``value`` as an ``int`` if it is an integer ≥ ``low``, else an
    :class:`EinspaceError` naming the option by its Python name and its flag
    (:func:`einspace.validation.check_int` with the name ``"name (--flag)"``).

    Examples:
        >>> check_int(3, "workers", 1)
        3
        >>> check_int(True, "trials", 0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: trials (--trials) = True must be an integer ≥ 0; e.g. ...
    """
    return validation.check_int(value, f"{name} ({flag(name)})", low=low, example=max(low, 1))
