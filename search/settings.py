"""The settings every run of a search shares, and parsing of the search's inputs.

Examples:
    >>> parse_widths("16, 64,256")
    [16, 64, 256]
    >>> RunSettings(steps=50).steps
    50
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from einspace.errors import EinspaceError, suggest
from einspace.structure import Structure
from search.space import Mode

if TYPE_CHECKING:
    from search.proxy import ProxyConfig

__all__ = ["RunSettings", "parse_seeds", "parse_structures", "parse_widths"]


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
            value = None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise EinspaceError(f"{what} {item!r} must be an integer >= {low}, e.g. {example}")
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


def parse_structures(specs: Iterable[str | Structure]) -> dict[str, Structure]:
    """Parse structure specs into ``{canonical label: structure}``, dropping repeats.

    The label is ``str(structure)``: ``"btt"`` becomes ``"btt(r=0.25)"``, a θ string keeps
    its paper form. Labels parse back to the same structure.

    Raises:
        EinspaceError: a spec that does not parse (the message names it).

    Examples:
        >>> list(parse_structures(["low_rank:r=0.25", "(1|0|0|1|0|0|0)"]))
        ['low_rank(r=0.25)', '(1|0|0|1|0|0|0)']
    """
    out: dict[str, Structure] = {}
    for spec in specs:
        structure = spec if isinstance(spec, Structure) else Structure.parse(str(spec))
        out.setdefault(str(structure), structure)
    return out


@dataclass(frozen=True)
class RunSettings:
    """The settings every run of a search shares (see :class:`~search.proxy.ProxyConfig`).

    Examples:
        >>> RunSettings(steps=50).config("btt", 16, seed=1).to_dict()["structure"]
        'btt(r=0.25)'
    """

    task: str = "mlp_regression"
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 64
    depth: int = 2
    eval_every: int = 25
    weight_decay: float = 0.0
    base_width: int = 64
    mode: Mode = "round"
    pad_tol: float = 0.15

    def config(
        self,
        structure: str | Structure,
        width: int,
        seed: int = 0,
        *,
        steps: int | None = None,
        eval_every: int | None = None,
    ) -> ProxyConfig:
        """The :class:`~search.proxy.ProxyConfig` of one run (imports torch)."""
        from search.proxy import ProxyConfig

        return ProxyConfig(
            structure=structure if isinstance(structure, str) else str(structure),
            width=width,
            steps=self.steps if steps is None else steps,
            task=self.task,
            task_kwargs=dict(self.task_kwargs),
            seed=seed,
            lr=self.lr,
            batch_size=self.batch_size,
            depth=self.depth,
            eval_every=self.eval_every if eval_every is None else eval_every,
            weight_decay=self.weight_decay,
            base_width=self.base_width,
            mode=self.mode,
            pad_tol=self.pad_tol,
        )

    def check(self) -> None:
        """Raise :class:`EinspaceError` for an unknown task or a bad value (imports torch)."""
        from search.tasks import TASKS

        if self.task not in TASKS:
            raise EinspaceError(f"unknown task {self.task!r}; {suggest(str(self.task), TASKS)}")
        self.config("dense", 8)  # validates every number


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EinspaceError(f"{name} = {value!r} must be an integer >= {low}")
