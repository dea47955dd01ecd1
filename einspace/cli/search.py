"""The ``einspace search`` and ``einspace demo`` commands.

Importing this module is cheap: torch, optuna and the driver are imported when a command
runs. Errors (:class:`~einspace.errors.EinspaceError`) print as one red line and exit with
status 2; Ctrl-C exits with status 130 after the driver has stopped cleanly.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from analysis.search_fits import fit_search
from einspace.cli.app import app, cli_words, friendly
from einspace.cli.options import search_options, settings_options
from einspace.cli.output import print_fits
from einspace.errors import EinspaceError
from einspace.files import ensure_parent
from search.options import SearchOptions
from search.settings import RunSettings

if TYPE_CHECKING:
    from rich.console import Console

    from search.driver import SearchResult

__all__ = [
    "DEMO_STRUCTURES",
    "DEMO_TASKS",
    "DEMO_WIDTHS",
    "demo_budget_note",
    "demo_command",
    "run_demo",
    "search_command",
]

DEMO_STRUCTURES: Final = ("dense", "btt", "monarch", "low_rank", "kronecker")
"""The named structures of the demo (BTT at rank d^0.25, low rank at d^0.5)."""

DEMO_WIDTHS: Final = (16, 32, 64)
"""Three octaves of width at which the named structures realize exactly (at 64 the demo's
compute-optimal horizons already take a few CPU minutes, see docs/experiments.md)."""

DEMO_TOKENS_PER_PARAM: Final = (5.0, 10.0, 20.0)
"""The demo's horizons (tokens per trained parameter): one wsd trunk to Chinchilla's 20 with
cooldown branches at 5 and 10 (the search's default adds 40; here it would double the
demo's cost, most of it at width 64)."""

DEMO_SEEDS: Final = "0,1"
"""Two seeds: the bootstrap resamples whole runs within each width, so with one seed per
width the interval could not show the seed-to-seed spread."""

DEMO_TRIALS: Final = 3
DEMO_LR_GRID: Final = 3
"""Learning rates tuned per structure at the smallest width: lr/10, lr, 10·lr (extended by a
step when the best is at an edge)."""

DEMO_TASKS: Final[dict[str, dict[str, Any]]] = {
    "mlp_regression": {
        "widths": DEMO_WIDTHS,
        "tokens_per_param": DEMO_TOKENS_PER_PARAM,
        "settings": {"mode": "exact"},
    },
    "lm": {
        "widths": (16, 32, 48),
        "tokens_per_param": (1.0, 2.0, 4.0),
        "settings": {"mode": "auto", "batch_size": 16, "lr": 1e-2, "n_layer": 1},
    },
}
"""Per demo task: widths, horizons (tokens per parameter; wsd trunk and cooldown branches)
and the other run settings. The LM task's horizons are far below Chinchilla's 20 tokens per
parameter (its compute-optimal horizons take about an hour, see
``benchmarks/paper_ordering.py``): its fits describe undertrained models."""


def _fail(console: Console, err: EinspaceError) -> typer.Exit:
    console.print(f"[bold red]error:[/bold red] {cli_words(str(err))}", highlight=False)
    return typer.Exit(2)


@app.command("search")
@friendly
@settings_options
@search_options
def search_command(
    ctx: typer.Context,
    structures: Annotated[
        list[str] | None,
        typer.Argument(
            help="Candidates: names ('btt', 'btt:r=0.5', 'low_rank:r=0.25'), θ strings "
            "('(0.5|0|0.5|0|0.5|0.5|0)') or class maps ('xA=1,Ay=1').",
            show_default=False,
        ),
    ] = None,
    widths: Annotated[str, typer.Option(help="Hidden widths, comma-separated.")] = "16,64,256",
    seeds: Annotated[str, typer.Option(help="Seeds, comma-separated.")] = "0",
    settings: RunSettings = RunSettings(),
    options: SearchOptions = SearchOptions(),
    text: Annotated[
        Path | None,
        typer.Option(help="Your own text file for the LM task (implies --task lm)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="CIFAR-10 python batches folder (implies --task cifar10)."),
    ] = None,
) -> None:
    """Train proxy runs over structures × widths × seeds × horizons (and θ-space trials),
    then fit scaling laws and print each structure's compute multiplier against dense.

    By default each structure trains to 5, 10, 20 and 40 tokens per parameter (with the
    wsd schedule: one trunk and three cooldown branches per width and seed; --steps N for
    one fixed length), and its base learning rate is tuned first at the smallest width
    (runs of sweep '<sweep>/lr') and transferred to larger widths by μP. --dry-run prints
    the planned runs and their FLOPs without training.

    Re-running the same command skips finished runs and resumes interrupted ones. Several
    processes may share --store (and --storage/--study for θ trials).
    """
    from rich.console import Console

    console = Console()
    options = cli_defaults(ctx, options)
    ensure_parent(options.store, "--store")
    try:
        from search.driver import parse_seeds, parse_widths, run_search

        result = run_search(
            structures or [],
            parse_widths(widths),
            parse_seeds(seeds),
            settings=with_data(settings, text, data),
            options=options,
            console=console,
        )
    except EinspaceError as err:
        raise _fail(console, err) from None
    if result.dry_run:
        return
    print_lrs(console, result)
    print_fits(console, fit_search(result), result.sweep)
    if result.interrupted:
        raise typer.Exit(130)


def cli_defaults(ctx: typer.Context, options: SearchOptions) -> SearchOptions:
    """The options of ``einspace search`` after its two command-line rules: an explicit
    ``--lr`` skips learning-rate tuning, an explicit ``--steps`` trains that one length
    (no ``--tokens-per-param`` horizons)."""
    from dataclasses import replace

    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    if given("lr"):
        options = replace(options, lr_grid=None)
    if given("steps") and not given("tokens_per_param"):
        options = replace(options, tokens_per_param=None)
    return options


def with_data(settings: RunSettings, text: Path | None, data: Path | None) -> RunSettings:
    """``--text FILE`` and ``--data DIR`` as task settings: the file becomes the LM task's
    ``path`` and the folder the CIFAR-10 task's ``root`` (the task switches to ``lm`` or
    ``cifar10`` unless another task is given).

    Examples:
        >>> with_data(RunSettings(), Path("a.txt"), None).task_kwargs
        {'path': 'a.txt'}
    """
    from dataclasses import replace

    default = RunSettings().task
    if text is not None and data is not None:
        raise EinspaceError(
            "--text (a text file for lm) and --data (a CIFAR-10 folder) exclude each other"
        )
    for value, key, task in ((text, "path", "lm"), (data, "root", "cifar10")):
        if value is not None:
            name = task if settings.task == default else settings.task
            kwargs = {**settings.task_kwargs, key: str(value)}
            settings = replace(settings, task=name, task_kwargs=kwargs)
    return settings


def print_lrs(console: Console, result: SearchResult) -> None:
    """Print the learning-rate tuning of a search: final eval loss per structure and lr."""
    from rich.table import Table

    frame = result.lrs
    if frame is None or frame.empty:
        return
    lrs = sorted(frame["lr"].unique())
    table = Table(title="learning rate per structure (final eval loss at the smallest width)")
    table.add_column("structure", overflow="fold")
    for lr in lrs:
        table.add_column(f"{lr:.3g}", justify="right", no_wrap=True)
    for label, part in frame.groupby("structure", sort=False):
        by_lr = {r["lr"]: r for r in part.to_dict("records")}
        cells = []
        for lr in lrs:
            row = by_lr.get(lr)
            if row is None:
                cells.append("")
                continue
            loss = row["final_eval_loss"]
            text = str(row["status"]) if math.isnan(loss) else f"{loss:.4g}"
            cells.append(f"[bold]{text}*[/bold]" if row["best"] else text)
        table.add_row(str(label), *cells)
    console.print(table)
    console.print("* the learning rate each structure trains with at every width (μP transfer)")


@app.command("demo")
@friendly
def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for the run store and the report.")] = Path(
        "einspace-demo"
    ),
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    progress: Annotated[bool, typer.Option(help="Show progress bars and live table.")] = True,
    task: Annotated[
        str, typer.Option(help="mlp_regression (fast) or lm (the transformer proxy on text).")
    ] = "mlp_regression",
    seeds: Annotated[str, typer.Option(help="Seeds per run, comma-separated.")] = DEMO_SEEDS,
) -> None:
    """Run the default search end to end and write the report: dense, BTT, Monarch, low
    rank, Kronecker and θ-space trials on the MLP-regression task with the compute-optimal
    protocol (each structure's learning rate tuned at the smallest width; at widths 16, 32
    and 64 a wsd trunk to 40 tokens per parameter with cooldown branches at 5, 10 and 20),
    then the fits, their verdicts and what this budget could not separate (about 5
    core-minutes: 2 to 3 minutes on 2 idle cores). --task lm runs the transformer proxy on
    English text instead (one layer, widths 16, 32, 48, 1 to 4 tokens per parameter:
    undertrained). Several seeds are pooled in the fits and resampled in the intervals.
    Re-running resumes or skips
    finished runs."""
    from rich.console import Console

    from search.settings import parse_seeds

    console = Console()
    started = time.perf_counter()
    try:
        if task not in DEMO_TASKS:
            raise EinspaceError(f"demo task {task!r}; expected one of {list(DEMO_TASKS)}")
        _demo_space(console, max(DEMO_TASKS[task]["widths"]))
        result = run_demo(
            out,
            workers=workers,
            progress=progress,
            console=console,
            task=task,
            seeds=parse_seeds(seeds),
        )
    except EinspaceError as err:
        raise _fail(console, err) from None
    print_lrs(console, result)
    fits = fit_search(result)
    print_fits(console, fits, result.sweep)
    if result.interrupted:
        raise typer.Exit(130)
    console.print(demo_budget_note(fits, task), highlight=False)
    _demo_report(out, console, max(DEMO_TASKS[task]["widths"]))
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s")


def demo_budget_note(fits: Any, task: str) -> str:
    """One plain sentence on what the demo's budget separated, from the fits' verdicts.

    Examples:
        >>> import pandas as pd
        >>> fits = pd.DataFrame({"structure": ["dense", "btt", "kronecker"],
        ...     "verdict": ["baseline", "ahead of dense", "not separable at this budget"]})
        >>> print(demo_budget_note(fits, "mlp_regression"))  # doctest: +NORMALIZE_WHITESPACE
        This budget (widths 16–64, tokens per parameter 5–20) separates 1 of 2 structures
        from dense (btt); kronecker: not at this budget (see what would separate it above).
        A toy regression task: its ordering says nothing about language models (see
        benchmarks/paper_ordering.py).
    """
    plan = DEMO_TASKS[task]
    widths, tpp = plan["widths"], plan["tokens_per_param"]
    rows = fits[fits["structure"] != "dense"] if "verdict" in fits else fits.iloc[0:0]
    pairs = zip(rows["structure"], rows["verdict"], strict=True)
    decided = [str(r) for r, v in pairs if "dense" in str(v)]
    open_ = [str(r) for r in rows["structure"] if str(r) not in decided]
    text = (
        f"This budget (widths {min(widths)}–{max(widths)}, tokens per parameter "
        f"{min(tpp):g}–{max(tpp):g}) separates {len(decided)} of {len(rows)} structures from "
        f"dense" + (f" ({', '.join(decided)})" if decided else "")
    )
    if open_:
        text += f"; {', '.join(open_)}: not at this budget (see what would separate it above)"
    if task == "lm":
        return text + ". Horizons far below 20 tokens per parameter: undertrained models."
    return (
        text + ". A toy regression task: its ordering says nothing about language models "
        "(see benchmarks/paper_ordering.py)."
    )


def _demo_space(console: Console, width: int) -> None:
    """The demo's first two stages: enumerate the space, then score it at the top width."""
    from rich.table import Table

    from einspace.enumeration import count_families
    from search.scoring import score

    counts = ", ".join(f"k = {k}: {count_families(k)}" for k in (1, 2, 3))
    console.print(f"valid families (paper space, modulo factor renaming): {counts}")
    ranked = score("all", width, width)
    table = Table(title=f"top of {len(ranked)} exact realizations at {width} → {width} (prior)")
    for col in ("position", "candidate", "params", "macs", "why"):
        table.add_column(col, overflow="fold", no_wrap=col in ("position", "params", "macs"))
    for row in ranked.head(5).itertuples(index=False):
        table.add_row(
            str(row.position), str(row.candidate), str(row.params), str(row.macs), str(row.why)
        )
    console.print(table)


def _demo_report(out: Path, console: Console, width: int) -> None:
    """Write the report of the demo's store into ``out/report`` (skipped without one)."""
    from analysis import report

    try:
        index = report(
            out / "report",
            factors=2,
            d_in=width,
            d_out=width,
            runs=out / "runs.sqlite",
            study="demo",
            command=f"einspace demo --out {out}",
        )
    except EinspaceError as err:
        raise _fail(console, err) from None
    console.print(f"report written: [bold]{index}[/bold]")


def run_demo(
    out: Path,
    *,
    workers: int = 2,
    progress: bool = True,
    console: Console | None = None,
    tokens_per_param: tuple[float, ...] | None = None,
    trials: int = DEMO_TRIALS,
    task: str = "mlp_regression",
    seeds: list[int] | None = None,
    lr_grid: int = DEMO_LR_GRID,
) -> SearchResult:
    """The demo's search (without the report); its store is ``out/runs.sqlite``.

    Compute-optimal protocol: each structure's learning rate tuned at the smallest width,
    then per (structure, width, seed) a wsd trunk to the longest horizon of
    ``tokens_per_param`` (default: the task's, :data:`DEMO_TASKS`) and a cooldown branch at
    each shorter one. MLP task: exact realization mode (at the demo widths the named
    structures realize the same in both modes, and θ points realize far more often than
    with rounding). LM task: ``auto`` sizes, one layer, smaller widths and short horizons.
    """
    from search.driver import RunSettings, run_search

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EinspaceError(f"--out {str(out)!r} is a file; expected a folder (new or a demo's)")
    out.mkdir(parents=True, exist_ok=True)
    plan = DEMO_TASKS[task]
    horizons = tuple(plan["tokens_per_param"]) if tokens_per_param is None else tokens_per_param
    settings = RunSettings(task=task, schedule="wsd", eval_every=10, **plan["settings"])
    widths = list(plan["widths"])
    return run_search(
        list(DEMO_STRUCTURES),
        widths,
        seeds or [0, 1],
        settings=settings,
        store=out / "runs.sqlite",
        sweep="demo",
        workers=workers,
        trials=trials,
        promote=min(trials, 1),
        theta_width=widths[1],
        progress=progress,
        console=console,
        lr_grid=lr_grid,
        tokens_per_param=horizons,
    )
