"""Coordinate check (docs: theory §7): does μP keep every layer's activations O(1) across widths?

:func:`coord_check` builds the same model at several widths, trains each for a few Adam steps
at one base learning rate on the same batches, and records the root-mean-square of every
module's output at every step (forward hooks; step 0 is the initialization, step ``t`` the
forward pass after ``t`` updates), as the mup package's coordinate check does. Under a correct
μP the curves are flat in width; under standard parameterization with a width-independent
learning rate they grow with width.

* ``parametrization="mup"``: the model as built (its μP init) and the optimizer groups of
  :func:`einspace.nn.param_groups` with ``base_width`` (structure-aware per-factor rates for
  structured layers, input/hidden/readout rates for plain layers by their ``mup_role``).
* ``parametrization="sp"``: standard parameterization: every matrix re-initialized with
  ``N(0, 1/fan_in)`` (every factor of a structured layer too, nothing zero-initialized),
  embeddings ``N(0, 1)``, biases zero, and one learning rate ``lr`` for every parameter.

The model comes from a factory ``model(structure, width, task) -> nn.Module`` (the same hook
the search takes); the task gives ``train_batch(step, batch_size)`` and ``loss(pred,
target)``. :func:`coord_growth` reads the ratio of the widest to the narrowest width per layer
and step; :func:`plot_coord_check` draws the curves into a PNG.

Examples:
    >>> import torch
    >>> from einspace.nn import EinsumLinear
    >>> class Task:
    ...     def train_batch(self, step, batch_size, generator=None, device=None):
    ...         g = torch.Generator().manual_seed(step)
    ...         x = torch.randn(batch_size, 8, generator=g)
    ...         return x, x[:, :1].tanh()
    ...     def loss(self, pred, target):
    ...         return torch.nn.functional.mse_loss(pred, target)
    >>> def mlp(structure, width, task):
    ...     layers = [torch.nn.Linear(8, width), EinsumLinear(width, width, structure),
    ...               torch.nn.Linear(width, 1)]
    ...     net = torch.nn.Sequential(*layers)
    ...     net[0].mup_role, net[2].mup_role = "input", "readout"
    ...     return net
    >>> frame = coord_check("btt", [32, 64], model=mlp, task=Task(), steps=2)
    >>> list(frame.columns), sorted(frame.layer.unique())
    (['width', 'layer', 'step', 'rms'], ['0', '1', '2'])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from torch import Tensor, nn

from einspace.errors import EinspaceError, suggest
from einspace.nn.mup import init_factors, param_groups
from einspace.validation import check_int

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CoordTask", "ModelFactory", "coord_check", "coord_growth", "plot_coord_check"]

Parametrization = Literal["mup", "sp"]


class CoordTask(Protocol):
    """What the coordinate check needs from a task (every :class:`search.tasks.Task` has it)."""

    def train_batch(self, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        """The batch ``(x, y)`` of ``step`` (the same for every width)."""
        ...

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """The scalar training loss."""
        ...


ModelFactory = Callable[[Any, int, Any], nn.Module]
"""``model(structure, width, task) -> nn.Module``."""


def coord_check(
    structure: Any,
    widths: Iterable[int],
    *,
    model: ModelFactory,
    task: CoordTask,
    steps: int = 4,
    lr: float = 1e-2,
    batch_size: int = 16,
    base_width: int | None = None,
    parametrization: Parametrization = "mup",
    seeds: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """RMS of every module's output per width and step (see the module docs).

    Args:
        structure: passed to ``model`` (a structure, spec string or anything it takes).
        widths: the widths to build (at least two, distinct).
        model: the factory ``(structure, width, task) -> nn.Module``.
        task: gives the batches (``train_batch(step, batch_size)``) and the loss.
        steps: forward passes recorded (``steps - 1`` Adam updates in between).
        lr: the base learning rate (that of a dense hidden layer at ``base_width``).
        batch_size: examples per step.
        base_width: the width at which μP's rates equal the base ones (default: the
            smallest width).
        parametrization: ``"mup"`` or ``"sp"``.
        seeds: models per width (initialized from ``seed, seed + 1, …``); RMS is averaged.
        seed: the first seed.

    Returns:
        a DataFrame with columns ``width``, ``layer`` (module name), ``step``, ``rms``;
        ``frame.attrs`` holds the settings.
    """
    import pandas as pd

    sizes = sorted({check_int(w, "width") for w in widths})
    if len(sizes) < 2:
        raise EinspaceError(f"widths = {list(widths)!r}; give at least two, e.g. [32, 64, 128]")
    if parametrization not in ("mup", "sp"):
        raise EinspaceError(
            f"parametrization = {parametrization!r}; {suggest(str(parametrization), ['mup', 'sp'])}"
        )
    steps, batch_size, seeds = (
        check_int(steps, "steps"),
        check_int(batch_size, "batch_size"),
        check_int(seeds, "seeds"),
    )
    base = sizes[0] if base_width is None else check_int(base_width, "base_width")
    rows: list[tuple[int, str, int, float]] = []
    for width in sizes:
        for s in range(seeds):
            rows.extend(
                (width, layer, step, rms)
                for layer, step, rms in _trace(
                    structure,
                    width,
                    model,
                    task,
                    steps,
                    lr,
                    batch_size,
                    base,
                    parametrization,
                    seed + s,
                )
            )
    raw = pd.DataFrame(rows, columns=["width", "layer", "step", "rms"])
    frame = raw.groupby(["width", "layer", "step"], sort=False, as_index=False).agg(
        rms=("rms", "mean")
    )
    frame.attrs.update(
        structure=str(structure), parametrization=parametrization, lr=lr, base_width=base
    )
    return frame


def _trace(
    structure: Any,
    width: int,
    factory: ModelFactory,
    task: CoordTask,
    steps: int,
    lr: float,
    batch_size: int,
    base_width: int,
    parametrization: str,
    seed: int,
) -> list[tuple[str, int, float]]:
    """Train one model for ``steps - 1`` updates, recording each module's output RMS."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = factory(structure, width, task)
        if parametrization == "sp":
            _standard_init(net)
    if parametrization == "sp":
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    else:
        optimizer = torch.optim.Adam(param_groups(net, lr, base_width=base_width))
    records: list[tuple[str, int, float]] = []
    step = 0

    def hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor) and output.is_floating_point():
                rms = float(output.detach().float().square().mean().sqrt())
                records.append((name, step, rms))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        for step in range(steps):
            x, y = task.train_batch(step, batch_size)
            loss = task.loss(net(x), y)
            if step == steps - 1:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        for handle in handles:
            handle.remove()
    return records


def _standard_init(model: nn.Module) -> None:
    """Standard parameterization's init, in place: matrices ``N(0, 1/fan_in)`` (each factor of a
    structured layer with its own fan-in, none zero), embeddings ``N(0, 1)``, biases zero."""
    with torch.no_grad():
        for module in model.modules():
            realization = getattr(module, "mup_realization", None)
            factors = getattr(module, "factors", None)
            if realization is not None and factors is not None:
                init_factors(factors, [fan_in**-0.5 for fan_in, _ in realization.fans])
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
            else:
                continue
            bias = getattr(module, "bias", None)
            if isinstance(bias, Tensor):
                bias.zero_()


def coord_growth(frame: pd.DataFrame) -> pd.DataFrame:
    """Per layer and step: RMS at the widest width over RMS at the narrowest.

    Rows where both are exactly zero (zero-initialized layers before their first update)
    get ratio 1; a zero at one width only gives 0 or ``inf``.

    Examples:
        >>> import pandas as pd
        >>> f = pd.DataFrame({"width": [32, 128, 32, 128], "layer": ["a", "a", "b", "b"],
        ...                   "step": [0, 0, 0, 0], "rms": [1.0, 4.0, 0.0, 0.0]})
        >>> coord_growth(f)
          layer  step  ratio
        0     a     0    4.0
        1     b     0    1.0
    """
    low, high = frame["width"].min(), frame["width"].max()
    table = frame.pivot_table(index=["layer", "step"], columns="width", values="rms")
    a, b = table[low], table[high]
    ratio = [
        1.0 if x == 0 and y == 0 else (math.inf if x == 0 else y / x)
        for x, y in zip(a, b, strict=True)
    ]
    out = table.reset_index()[["layer", "step"]].copy()
    out["ratio"] = ratio
    out.columns.name = None
    return out


def plot_coord_check(
    frame: pd.DataFrame, path: str | Path, layers: Sequence[str] | None = None
) -> Path:
    """Draw RMS against width, one panel per layer and one line per step, into a PNG.

    Args:
        frame: the output of :func:`coord_check`.
        path: the PNG to write.
        layers: the layers to draw (default: all, in the frame's order).

    Returns:
        the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(frame["layer"])) if layers is None else list(layers)
    unknown = [n for n in names if n not in set(frame["layer"])]
    if unknown:
        raise EinspaceError(
            f"layer {unknown[0]!r} is not in the frame; {suggest(unknown[0], set(frame['layer']))}"
        )
    if not names:
        raise EinspaceError("the coordinate-check frame has no layers to plot")
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    steps = sorted(frame["step"].unique())
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        part = frame[frame["layer"] == name]
        for j, step in enumerate(steps):
            curve = part[part["step"] == step].sort_values("width")
            rms = curve["rms"].where(curve["rms"] > 0)
            color = (j / max(1, len(steps) - 1), 0.3, 1 - j / max(1, len(steps) - 1))
            ax.plot(curve["width"], rms, marker="o", color=color, label=f"step {step}")
        ax.set_xscale("log", base=2)
        positive = part["rms"][part["rms"] > 0]
        if len(positive):  # log scale, at least a decade, so that flat curves look flat
            ax.set_yscale("log")
            lo, hi = float(positive.min()), float(positive.max())
            mid = math.sqrt(lo * hi)
            ax.set_ylim(min(lo, mid / math.sqrt(10)) / 1.2, max(hi, mid * math.sqrt(10)) * 1.2)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("width", fontsize=7)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.set_ylabel("RMS of output", fontsize=7)
            ax.legend(fontsize=6)
    attrs = frame.attrs
    fig.suptitle(
        f"coordinate check: {attrs.get('structure', '')} ({attrs.get('parametrization', '')}, "
        f"lr {attrs.get('lr', '')}, base width {attrs.get('base_width', '')})",
        fontsize=9,
    )
    out = Path(path)
    fig.savefig(out, format="png", dpi=110)
    return out
