"""The ``einspace`` command line app, its error and table output, and the commands
enumerate, show, score and report (search and demo are in :mod:`einspace.cli.search`).

Every command turns an :class:`~einspace.errors.EinspaceError` into a one-line red message
and exit status 2, never a traceback. Heavy imports (torch, matplotlib, optuna) happen inside
the commands that need them.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from einspace.errors import EinspaceError

app = typer.Typer(
    name="einspace",
    help=(
        "Einsum structure search and taxonomy engine: enumerate structured linear layers, "
        "count their parameters and MACs exactly, place them in the (ω, ψ, ν) taxonomy, "
        "search them with proxy runs and write a report.\n\n"
        "Structures are named ('btt', 'btt:r=0.5', 'low_rank:r=0.25', 'monarch', "
        "'kronecker', 'tt', 'dense', 'block_diagonal'), θ 7-vectors "
        "('(0.5|0|0.5|0|0.5|0.5|0)' = α β γ δ ε φ ρ) or class maps ('xA=1,Ay=1')."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


P = ParamSpec("P")
R = TypeVar("R")


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn an EinspaceError raised by a command into a red one-liner and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except EinspaceError as err:
            Console(stderr=True).print(f"[bold red]error:[/bold red] {err}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


class Format(StrEnum):
    """Output formats of table commands."""

    table = "table"
    csv = "csv"
    json = "json"


def emit(frame: pd.DataFrame, fmt: Format, title: str | None = None) -> None:
    """Print a DataFrame as a rich table, CSV or JSON records."""
    if fmt == Format.csv:
        sys.stdout.write(frame.to_csv(index=False))
        return
    if fmt == Format.json:
        sys.stdout.write(frame.to_json(orient="records", force_ascii=False, indent=1) + "\n")
        return
    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        table.add_column(str(col), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if not value.is_integer() or abs(value) >= 1e15 else f"{value:.0f}"
    return str(value)


def _sort_top(frame: pd.DataFrame, sort: str | None, top: int | None) -> pd.DataFrame:
    if sort:
        col, _, direction = sort.partition(":")
        if col not in frame.columns:
            from einspace.errors import suggest

            raise EinspaceError(f"--sort {col!r} is not a column; {suggest(col, frame.columns)}")
        frame = frame.sort_values(col, ascending=direction != "desc", kind="mergesort")
    if top is not None:
        if top < 1:
            raise EinspaceError(f"--top {top} must be ≥ 1")
        frame = frame.head(top)
    return frame


@app.command("enumerate")
@friendly
def enumerate_command(
    factors: Annotated[int, typer.Option("--factors", "-k", help="Number of factors k.")] = 2,
    diagonal: Annotated[
        bool, typer.Option(help="Extended space: allow block-diagonal classes {x, …, y}.")
    ] = False,
    modulo_transpose: Annotated[
        bool, typer.Option(help="Also identify families that differ by swapping x and y.")
    ] = False,
    d_in: Annotated[
        int | None, typer.Option(help="List every exact realization at this input width.")
    ] = None,
    d_out: Annotated[int | None, typer.Option(help="Output width (default: d_in).")] = None,
    sample: Annotated[
        int | None, typer.Option(help="Draw this many random families (any k) instead.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample.")] = 0,
    sort: Annotated[
        str | None, typer.Option(help="Sort by a column; append ':desc' to reverse.")
    ] = None,
    top: Annotated[int | None, typer.Option(help="Show only the first N rows.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """List valid structure families (or, with --d-in, all exact realizations).

    Families: canonical form, Greek form, named match, and ν, ω, ψ at the family's balanced
    point (plus symbolic forms in csv/json). Realizations: sizes, params, MACs,
    rank bound and effective exponents.
    """
    from einspace.family_table import family_listing

    frame, title = family_listing(
        factors, diagonal, modulo_transpose, d_in, d_out, sample, seed, symbolic=fmt != Format.table
    )
    emit(_sort_top(frame, sort, top), fmt, title)


@app.command("show")
@friendly
def show_command(
    structure: Annotated[
        str, typer.Argument(help="Name ('btt:r=0.5'), θ '(α|β|γ|δ|ε|φ|ρ)' or class map.")
    ],
    d_in: Annotated[int | None, typer.Option(help="Input width for concrete counts.")] = None,
    d_out: Annotated[int | None, typer.Option(help="Output width (default: d_in).")] = None,
    mode: Annotated[str, typer.Option(help="'round' (pad) or 'exact' (factor).")] = "round",
    pad_tol: Annotated[float, typer.Option(help="Largest relative padding allowed.")] = 0.15,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Print every metric of one structure: family, exponents (numeric and symbolic) and,
    with --d-in, sizes, shapes, einsum, params, MACs, rank and effective exponents."""
    from einspace.structure import Structure

    s = Structure.parse(structure)
    info: dict[str, object] = {
        "structure": str(s),
        "θ": s.describe_theta(),
        "family": str(s.family),
        "greek": s.family.greek,
        "named family": s.family.name,
        "k": s.k,
        "valid family": s.family.is_valid or "; ".join(s.family.violations()),
        "ν": s.nu,
        "ω": s.omega,
        "ψ": s.psi,
        "degenerate": s.degenerate,
    }
    for key, expr in s.symbolic().items():
        info[f"{key} (symbolic)"] = str(expr)
    if d_in is not None:
        r = s.realize(d_in, d_out if d_out is not None else d_in, mode=mode, pad_tol=pad_tol)  # type: ignore[arg-type]
        summary = r.summary()
        summary["numeric_rank"] = (
            r.numeric_rank() if r.padded_in * r.padded_out <= 4096 * 4096 else "too large"
        )
        summary["fans (in, out)"] = r.fans
        for key in ("structure", "family", "name", "k"):
            summary.pop(key)
        info.update(summary)
    if fmt == Format.json:
        sys.stdout.write(json.dumps(info, default=str, ensure_ascii=False, indent=1) + "\n")
        return
    frame = pd.DataFrame({"metric": list(info), "value": [_cell(v) for v in info.values()]})
    emit(frame, fmt, str(s))


@app.command("score")
@friendly
def score_command(
    d_in: Annotated[int, typer.Option(help="Input width.")],
    d_out: Annotated[int | None, typer.Option(help="Output width (default: d_in).")] = None,
    candidates: Annotated[
        list[str] | None,
        typer.Option("--candidate", "-c", help="A structure to score (repeatable). Default: all."),
    ] = None,
    factors: Annotated[int, typer.Option("--factors", "-k", help="k for 'all'.")] = 2,
    budget: Annotated[int | None, typer.Option(help="MAC budget per input vector.")] = None,
    objective: Annotated[str, typer.Option(help="'prior' or a registered objective.")] = "prior",
    top: Annotated[int | None, typer.Option(help="Show only the first N rows.")] = 20,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Rank candidates analytically: ψ = 1 first, then smaller ω, then more params per MAC,
    within the MAC budget (the papers' prior; see search.score)."""
    from search import score

    frame = score(
        candidates or "all", d_in, d_out, budget_macs=budget, objective=objective, k=factors
    )
    cols = [
        "position", "candidate", "name", "params", "macs", "rank",
        "nu_eff", "omega_eff", "psi_eff", "within_budget", "why",
    ]  # fmt: skip
    shown = frame[cols] if fmt == Format.table else frame
    emit(_sort_top(shown, None, top), fmt, f"{len(frame)} candidates for {d_in} → {d_out or d_in}")


@app.command("report")
@friendly
def report_command(
    out: Annotated[Path, typer.Option(help="Directory to write index.html, report.md, CSVs.")],
    factors: Annotated[int, typer.Option("--factors", "-k", help="k for the family tables.")] = 2,
    d_in: Annotated[int, typer.Option(help="Input width for the cost section.")] = 1024,
    d_out: Annotated[int | None, typer.Option(help="Output width (default: d_in).")] = None,
    runs: Annotated[
        str | None, typer.Option(help="Run store (SQLite file or SQLAlchemy URL) for results.")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Sweep/study name within the store.")] = None,
) -> None:
    """Write a self-contained HTML + Markdown taxonomy report (with search results when a
    run store is given)."""
    from analysis.report import report

    path = report(
        out,
        factors=factors,
        d_in=d_in,
        d_out=d_out if d_out is not None else d_in,
        runs=runs,
        study=study,
        command=" ".join(["einspace", *sys.argv[1:]]),
    )
    console.print(f"report written: [bold]{path}[/bold]")


def main() -> None:
    """Console entry point."""
    app()
