"""The ``einspace`` command line app, its error and table output, and the commands
enumerate, show, score and report (search and demo are in :mod:`einspace.cli.search`).

Every command turns an :class:`~einspace.errors.EinspaceError` into a one-line red message
and exit status 2, never a traceback. Heavy imports (torch, matplotlib, optuna) happen inside
the commands that need them.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import pandas as pd
import typer
from rich.console import Console

from einspace.cli.output import TABLE_TOP, Format, cell, emit, resolve_format, sort_rows
from einspace.errors import EinspaceError
from einspace.files import path_error
from einspace.validation import check_int

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
    """Turn an EinspaceError raised by a command, or a file-system error (a folder that cannot
    be created, a path that cannot be written), into a red one-liner and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except EinspaceError as err:
            message = cli_words(str(err))
        except OSError as err:
            message = str(path_error(err))
        Console(stderr=True).print(f"[bold red]error:[/bold red] {message}", highlight=False)
        raise typer.Exit(2) from None

    return wrapper


_CLI_WORDS = (
    (re.compile(r"mode\s*=\s*'(\w+)'"), r"--mode \1"),
    (re.compile(r"pad_tol\s*(=|≥)\s*"), lambda m: "--pad-tol " + ("" if m[1] == "=" else "≥ ")),
    (re.compile(r"\bbudget_macs=,? or "), ""),
    (re.compile(r"\bd_(in|out) = "), r"--d-\1 "),
    (
        re.compile(r"raise max_rows or use smaller widths"),
        "use smaller --d-in/--d-out or --factors",
    ),
    (re.compile(r"\bk = (\d+)"), r"--factors \1"),
)


def cli_words(message: str) -> str:
    """A message of the Python API in the command line's words: ``mode='exact'`` becomes
    ``--mode exact``, ``pad_tol ≥ 0.2`` becomes ``--pad-tol ≥ 0.2``, ``d_in = 64`` becomes
    ``--d-in 64`` and ``k = 3`` becomes ``--factors 3``.

    Examples:
        >>> cli_words("Use width 1024, mode='exact', or pad_tol ≥ 0.200")
        'Use width 1024, --mode exact, or --pad-tol ≥ 0.200'
    """
    for pattern, words in _CLI_WORDS:
        message = pattern.sub(words, message)
    return message


def check_widths(d_in: object, d_out: object) -> None:
    """``--d-in`` and ``--d-out`` checked under their flag names (None: not given)."""
    for value, flag in ((d_in, "--d-in"), (d_out, "--d-out")):
        if value is not None:
            check_int(value, flag, example=1024, what="a width")


FORMAT_HELP = "table, csv or json (default: a table on a terminal, csv in a pipe or file)."
TOP_HELP = f"Show only the first N rows (tables show {TABLE_TOP} unless told; csv/json all)."
COLUMNS_HELP = "Comma-separated columns to print, in this order (default: all that fit)."


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
    top: Annotated[int | None, typer.Option(help=TOP_HELP)] = None,
    columns: Annotated[str | None, typer.Option(help=COLUMNS_HELP)] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help=FORMAT_HELP)] = None,
) -> None:
    """List valid structure families (or, with --d-in, all exact realizations).

    Families: canonical form, Greek form, named match, and ν, ω, ψ at the family's balanced
    point (plus symbolic forms in csv/json). Realizations: sizes, params, MACs,
    rank and effective exponents.
    """
    from einspace.family_table import family_listing

    check_widths(d_in, d_out)
    check_int(seed, "--seed", low=0)
    if sample is not None:
        check_int(sample, "--sample", example=100)
    fmt = resolve_format(fmt)
    symbolic = fmt != Format.table or "symbolic" in (columns or "")
    frame, title = family_listing(
        factors, diagonal, modulo_transpose, d_in, d_out, sample, seed, symbolic=symbolic
    )
    if d_in is None:
        priority = ["family", "nu", "omega", "psi", "name", "n_classes", "greek"]
    else:
        known = {*REALIZATION_PRIORITY, "family_id", "rank_is_bound", "degenerate"}
        sizes = [str(c) for c in frame.columns if c not in known]
        priority = ["family", *sizes, *REALIZATION_PRIORITY[1:]]
    emit(sort_rows(frame, sort), fmt, title, priority=priority, top=top, columns=columns)


REALIZATION_PRIORITY = [
    "family",
    "params",
    "macs_sequential",
    "rank",
    "psi_eff",
    "omega_eff",
    "nu_eff",
    "name",
    "rank_method",
    "macs_optimal",
    "rank_bound",
]
"""The columns of ``enumerate --d-in`` in a table, most important first (after the sizes)."""

RANK_WORDS = {
    "proof": "proof: a lower bound meets the min-cut",
    "svd": "SVD of the dense matrix",
    "bound": "the min-cut bound only, not proven",
}
"""How ``show`` says a realization's rank is known (:attr:`einspace.Realization.rank_method`)."""


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
    fmt: Annotated[Format | None, typer.Option("--format", help=FORMAT_HELP)] = None,
) -> None:
    """Print every metric of one structure: family, exponents (numeric and symbolic) and,
    with --d-in, sizes, shapes, einsum, params, MACs, rank (and how it is known) and
    effective exponents."""
    from einspace.display import round_float
    from einspace.moe import is_moe_spec
    from einspace.structure import Structure

    check_widths(d_in, d_out)
    if is_moe_spec(structure):
        _show_moe(structure, d_in, d_out, mode, pad_tol, fmt)
        return
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
        summary["fans (in, out)"] = r.fans
        for key in ("structure", "family", "name", "k"):
            summary.pop(key)
        info.update(summary)
    info = {k: round_float(v) if isinstance(v, float) else v for k, v in info.items()}
    fmt = resolve_format(fmt)
    if fmt == Format.json:
        sys.stdout.write(json.dumps(info, default=str, ensure_ascii=False, indent=1) + "\n")
        return
    if fmt == Format.table and "rank" in info:
        method = str(info.pop("rank_method"))
        info.pop("rank_is_bound")
        info["rank"] = f"{info['rank']} ({RANK_WORDS.get(method, method)})"
    frame = pd.DataFrame({"metric": list(info), "value": [cell(v) for v in info.values()]})
    emit(frame, fmt, str(s), top=len(frame))


def _show_moe(
    text: str, d_in: int | None, d_out: int | None, mode: str, pad_tol: float, fmt: Format | None
) -> None:
    """``show`` for a sparse spec (:mod:`einspace.moe`): its counts at ``--d-in``."""
    from einspace.display import round_float
    from einspace.moe import MoESpec

    spec = MoESpec.parse(text)
    info: dict[str, object] = {"structure": str(spec), "experts": spec.experts}
    info["top_k"] = spec.top_k
    if d_in is not None:
        counts = spec.realize(d_in, d_out if d_out is not None else d_in, mode, pad_tol)  # type: ignore[arg-type]
        info.update(counts.summary())
    info = {k: round_float(v) if isinstance(v, float) else v for k, v in info.items()}
    fmt = resolve_format(fmt)
    if fmt == Format.json:
        sys.stdout.write(json.dumps(info, default=str, ensure_ascii=False, indent=1) + "\n")
        return
    frame = pd.DataFrame({"metric": list(info), "value": [cell(v) for v in info.values()]})
    emit(frame, fmt, str(spec), top=len(frame))


SCORE_PRIORITY = [
    "position",
    "candidate",
    "params",
    "macs",
    "rank",
    "why",
    "budget_used",
    "within_budget",
    "active_params",
    "omega_eff",
    "psi_eff",
    "nu_eff",
    "name",
    "sizes",
]
"""The columns of ``score`` in a table, most important first."""


@app.command("score")
@friendly
def score_command(
    d_in: Annotated[int, typer.Option(help="Input width.")],
    d_out: Annotated[int | None, typer.Option(help="Output width (default: d_in).")] = None,
    candidates: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            "-c",
            help="A structure to score (repeatable; bare btt, tt, low_rank are tuned to "
            "--budget). Default: every exact realization.",
        ),
    ] = None,
    factors: Annotated[int, typer.Option("--factors", "-k", help="k for 'all'.")] = 2,
    budget: Annotated[
        str | None,
        typer.Option(
            help="MACs per input vector: 5.6e6, 5.6M, '2e9 flops' (1 MAC = 2 FLOPs), or a "
            "fraction of dense d_in·d_out: 1/8, 0.125x, 12.5%."
        ),
    ] = None,
    objective: Annotated[
        str, typer.Option(help="'prior', 'fill' (closest to --budget) or another registered.")
    ] = "prior",
    mode: Annotated[str, typer.Option(help="'round' (pad) or 'exact' (factor).")] = "round",
    pad_tol: Annotated[float, typer.Option(help="Largest relative padding allowed.")] = 0.15,
    top: Annotated[int | None, typer.Option(help=TOP_HELP)] = None,
    columns: Annotated[str | None, typer.Option(help=COLUMNS_HELP)] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help=FORMAT_HELP)] = None,
) -> None:
    """Rank candidates analytically: ψ = 1 first, then smaller ω, then more params per MAC,
    within the MAC budget (the papers' prior; see search.score), or with --objective fill
    the candidates that come closest to the budget first."""
    from search import score

    skipped: list[str] = []
    check_widths(d_in, d_out)
    frame = score(
        candidates or "all",
        d_in,
        d_out,
        budget_macs=budget,
        objective=objective,
        k=factors,
        mode=mode,  # type: ignore[arg-type]
        pad_tol=pad_tol,
        skipped=skipped,
    )
    for line in skipped:  # one line each; when none is left, the error lists them
        Console(stderr=True).print(f"[yellow]skipped[/yellow] {cli_words(line)}", highlight=False)
    title = f"{len(frame)} candidates for {d_in} → {d_out or d_in}"
    priority = SCORE_PRIORITY
    if (frame["active_params"] != frame["params"]).any():  # a sparse layer: show both counts
        priority = ["position", "candidate", "params", "active_params", "macs"]
        priority += [c for c in SCORE_PRIORITY if c not in priority]
    emit(frame, fmt, title, priority=priority, top=top, columns=columns)


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
