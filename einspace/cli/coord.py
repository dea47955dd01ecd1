"""The ``einspace coord-check`` command: is μP flat in width for a structure's proxy?

It trains the search's own proxy (the MLP, or the LM transformer for ``--task lm``) at several
widths for a few steps (:func:`einspace.nn.coord_check`), writes the RMS of every layer's
output per width and step to a CSV, draws it into a PNG (:func:`einspace.nn.plot_coord_check`)
and prints, per layer, how much the RMS grows from the narrowest to the widest width.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from einspace.cli.app import app, friendly
from einspace.errors import EinspaceError
from einspace.files import ensure_folder

__all__ = ["coord_check_command"]


class Parametrization(StrEnum):
    """``mup`` (the search's training rules) or ``sp`` (standard, for contrast)."""

    mup = "mup"
    sp = "sp"


@app.command("coord-check")
@friendly
def coord_check_command(
    structures: Annotated[
        list[str], typer.Argument(help="Structures, e.g. dense btt monarch low_rank.")
    ],
    widths: Annotated[str, typer.Option(help="Widths, comma-separated.")] = "32,64,128",
    task: Annotated[
        str, typer.Option(help="mlp_regression, digits, lm, cifar10 or 'module:attr'.")
    ] = "mlp_regression",
    task_kwargs: Annotated[str, typer.Option(help="Task keyword arguments (JSON).")] = "{}",
    steps: Annotated[int, typer.Option(help="Forward passes recorded (steps - 1 updates).")] = 5,
    lr: Annotated[float, typer.Option(help="Base learning rate (at the narrowest width).")] = 1e-2,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 16,
    parametrization: Annotated[
        Parametrization, typer.Option(help="mup, or sp to see what μP prevents.")
    ] = Parametrization.mup,
    out: Annotated[Path, typer.Option(help="Folder for the PNG and CSV files.")] = Path("."),
) -> None:
    """Coordinate check: plot each layer's activation RMS against width over the first
    steps; under μP the curves are flat in width.

    Writes coord-<structure>-<parametrization>.png and .csv per structure into --out.
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from einspace.nn.coord import coord_growth, plot_coord_check
    from search.coord import coord_check
    from search.settings import parse_structures, parse_widths

    try:
        kwargs = json.loads(task_kwargs)
    except json.JSONDecodeError as err:
        raise EinspaceError(
            f"--task-kwargs {task_kwargs!r} is not JSON ({err.msg}); expected e.g. "
            f"'{{\"n_ctx\": 32}}'"
        ) from None
    sizes = parse_widths(widths)
    ensure_folder(out, "--out")
    console = Console()
    for label in parse_structures(structures):
        frame = coord_check(
            label,
            sizes,
            task,
            kwargs,
            steps=steps,
            lr=lr,
            batch_size=batch_size,
            parametrization=parametrization.value,
        )
        stem = f"coord-{_file_name(label)}-{parametrization.value}"
        csv = out / f"{stem}.csv"
        frame.to_csv(csv, index=False)
        png = plot_coord_check(frame, out / f"{stem}.png")
        growth = coord_growth(frame)
        worst = growth.groupby("layer", sort=False)["ratio"].max()
        table = Table(
            title=f"{label} ({parametrization.value}): RMS at {max(sizes)} / at {min(sizes)}"
        )
        table.add_column("layer")
        table.add_column("largest ratio over steps", justify="right")
        for layer, ratio in worst.items():
            table.add_row(str(layer), f"{ratio:.3g}")
        console.print(table)
        console.print(f"written: {png} and {csv}")


def _file_name(label: str) -> str:
    """A structure label as a file name part: ``btt(r=0.25)`` → ``btt_r=0.25``."""
    keep = "".join(c if c.isalnum() or c in "=.-_" else "_" for c in label)
    return keep.strip("_") or "structure"
