"""How the table commands print: a rich table sized to the terminal for people, CSV or JSON
for programs.

* The format: ``--format`` if given; otherwise a table when stdout is a terminal and CSV when
  it is not (a pipe, a file), so ``einspace score … | head`` prints plain rows.
* ``--top``: a table shows the first :data:`TABLE_TOP` rows unless ``--top`` says otherwise;
  CSV and JSON print every row unless ``--top`` is given.
* ``--columns a,b,c`` picks columns (in that order) in every format.
* A table shows the columns that fit the terminal, in each command's order of importance,
  and says which it left out. Numbers are never cut or wrapped; text folds onto more lines.
* Floats are rounded to 6 significant digits in every format
  (:func:`einspace.display.round_floats`).

Examples:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"name": ["a", "b"], "value": [0.1 + 0.2, 2.0]})
    >>> shown, left_out = fit_columns(frame, ["value", "name"], width=12)
    >>> shown, left_out
    (['value'], ['name'])
    >>> cell(0.1 + 0.2), cell(2.0), cell(float("nan"))
    ('0.3', '2', '—')
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Final

import pandas as pd
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from einspace.display import round_float, round_floats
from einspace.errors import EinspaceError, suggest

__all__ = [
    "TABLE_TOP",
    "Format",
    "cell",
    "emit",
    "fit_columns",
    "parse_columns",
    "print_fits",
    "resolve_format",
    "sort_rows",
]

TABLE_TOP: Final = 20
"""Rows a table shows when ``--top`` is not given."""

_TEXT_MIN: Final = 20
"""Narrowest a text column is folded to (its header is never cut)."""


class Format(StrEnum):
    """Output formats of table commands."""

    table = "table"
    csv = "csv"
    json = "json"


def resolve_format(fmt: Format | None, console: Console | None = None) -> Format:
    """The user's format, else a table on a terminal and CSV elsewhere."""
    if fmt is not None:
        return fmt
    return Format.table if (console or Console()).is_terminal else Format.csv


def cell(value: object) -> str:
    """A value as a table cell: whole numbers without a decimal point, other floats to 6
    significant digits, missing values as a dash."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.0f}"
        return repr(round_float(value))
    return str(value)


def parse_columns(text: str | None, frame: pd.DataFrame) -> list[str] | None:
    """``--columns a,b,c`` as a list of the frame's columns (an unknown one is an error)."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise EinspaceError(f"--columns {text!r} names no column; e.g. --columns family,nu")
    for name in names:
        if name not in frame.columns:
            raise EinspaceError(
                f"--columns: {name!r} is not a column; {suggest(name, map(str, frame.columns))}"
            )
    return names


def sort_rows(frame: pd.DataFrame, sort: str | None) -> pd.DataFrame:
    """``--sort COLUMN`` (``COLUMN:desc`` to reverse), stable."""
    if not sort:
        return frame
    col, _, direction = sort.partition(":")
    if col not in frame.columns:
        raise EinspaceError(f"--sort {col!r} is not a column; {suggest(col, frame.columns)}")
    return frame.sort_values(col, ascending=direction != "desc", kind="mergesort")


def fit_columns(
    frame: pd.DataFrame, priority: Sequence[str], width: int
) -> tuple[list[str], list[str]]:
    """The columns a table of ``frame`` can show in ``width`` terminal cells, most important
    first (``priority``, then the frame's other columns), and those left out.

    A number column needs its widest cell; a text column folds, down to its header or
    :data:`_TEXT_MIN` cells; columns with no values go last. Each column costs three more
    cells of padding and border.
    """
    order = [c for c in priority if c in frame.columns]
    order += [str(c) for c in frame.columns if c not in order]
    empty = [c for c in order if frame[c].isna().all()]  # e.g. budget_used without a budget
    order = [c for c in order if c not in empty] + empty
    used = 1
    shown: list[str] = []
    left_out: list[str] = []
    for col in order:
        need = _min_width(frame, col)
        if used + need + 3 <= width or not shown:
            shown.append(col)
            used += need + 3
        else:
            left_out.append(col)
    return shown, left_out


def _need(frame: pd.DataFrame, col: str) -> int:
    cells = [cell_len(cell(v)) for v in frame[col]]
    return max([cell_len(str(col)), *cells])


def _numeric(frame: pd.DataFrame, col: str) -> bool:
    return bool(pd.api.types.is_numeric_dtype(frame[col]))


def _min_width(frame: pd.DataFrame, col: str) -> int:
    need = _need(frame, col)
    if _numeric(frame, col):
        return need
    return min(need, max(cell_len(str(col)), _TEXT_MIN))


def emit(
    frame: pd.DataFrame,
    fmt: Format | None,
    title: str | None = None,
    *,
    priority: Sequence[str] = (),
    top: int | None = None,
    columns: str | None = None,
) -> None:
    """Print ``frame`` in ``fmt`` (None: :func:`resolve_format`), as the module describes."""
    console = Console()  # built per call: COLUMNS and the terminal are read now
    fmt = resolve_format(fmt, console)
    if top is not None and top < 1:
        raise EinspaceError(f"--top {top} must be ≥ 1, e.g. --top 20")
    picked = parse_columns(columns, frame)
    if picked is not None:
        frame = frame[picked]
    total = len(frame)
    if top is not None or fmt == Format.table:
        frame = frame.head(top if top is not None else TABLE_TOP)
    if fmt == Format.csv:
        sys.stdout.write(round_floats(frame).to_csv(index=False))
        return
    if fmt == Format.json:
        text = round_floats(frame).to_json(orient="records", force_ascii=False, indent=1)
        sys.stdout.write(text + "\n")
        return
    left_out: list[str] = []
    if picked is not None:
        shown = picked
    else:
        shown, left_out = fit_columns(frame, priority, console.width)
    table = Table(title=title, show_lines=False)
    for col in shown:
        if _numeric(frame, col):
            table.add_column(col, justify="right", no_wrap=True, min_width=_need(frame, col))
        else:
            table.add_column(col, overflow="fold", min_width=_min_width(frame, col))
    for row in frame[shown].itertuples(index=False):
        table.add_row(*(cell(v) for v in row))
    console.print(table)
    notes = []
    if len(frame) < total:
        notes.append(f"first {len(frame)} of {total} rows (--top N for more)")
    if left_out:
        notes.append(
            f"left out to fit {console.width} columns: {', '.join(left_out)} "
            "(--columns a,b to pick)"
        )
    if notes:
        console.print("; ".join(notes) + "; all of it: --format csv", highlight=False)


def print_fits(console: Console, fits: pd.DataFrame, sweep: str) -> None:
    """Print a search's scaling laws (:func:`analysis.search_fits.fit_search`) as a table:
    per structure the fitted law, the multiplier against dense with its 90 % interval and
    the verdict beside it; below, each structure's note and what would separate it.

    Examples:
        >>> import io
        >>> rows = pd.DataFrame({"structure": ["dense", "btt"], "law": ["parametric"] * 2,
        ...     "E": [1.8, 1.9], "alpha": [0.34, 0.4], "beta": [0.28, 0.3],
        ...     "n_finished": [40, 40], "multiplier": [1.0, 1.6], "multiplier_lo": [1.0, 1.5],
        ...     "multiplier_hi": [1.0, 1.7], "multiplier_status": ["ok", "ok"],
        ...     "multiplier_envelope": [1.0, 1.7], "verdict": ["baseline", "ahead of dense"],
        ...     "to_separate": ["", ""], "note": ["", ""]})
        >>> out = Console(file=io.StringIO(), width=120)
        >>> print_fits(out, rows, "demo")
        >>> "1.6× [1.5, 1.7]" in out.file.getvalue() and "ahead of dense" in out.file.getvalue()
        True
    """
    if fits.empty:
        return
    from analysis.scaling import format_multiplier

    parametric = "law" in fits and bool((fits["law"] == "parametric").any())
    title = "L = E + A/N^α + B/D^β on finished runs" if parametric else "log L = a − m log C"
    table = Table(title=f"scaling laws (sweep {sweep!r}, {title})")
    table.add_column("structure", overflow="fold")
    heads = ("α", "β", "E", "runs") if parametric else ("m ± se", "a", "points", "C range")
    for col in heads:
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("× vs dense [90 % interval]", justify="right")
    table.add_column("verdict")
    if parametric:
        table.add_column("envelope ×", justify="right")
    ordered = fits.sort_values("multiplier", ascending=False, na_position="last")
    notes: list[str] = []
    for record in ordered.to_dict("records"):
        row = {str(k): v for k, v in record.items()}
        for key in ("note", "to_separate"):
            if str(row.get(key) or ""):
                notes.append(f"{row['structure']}: {row[key]}")
        text = format_multiplier({**row, "verdict": ""})
        cells = _law_cells(row, parametric)
        said = str(row.get("verdict") or "")
        extra = [_number(row.get("multiplier_envelope"), "×")] if parametric else []
        table.add_row(str(row["structure"]), *cells, text, said, *extra)
    console.print(table)
    for note in notes:
        console.print(f"  note — {note}", highlight=False)


def _number(value: object, unit: str = "") -> str:
    number = float(value) if isinstance(value, int | float) else math.nan
    return "—" if math.isnan(number) else f"{number:.3g}{unit}"


def _law_cells(row: dict[str, object], parametric: bool) -> list[str]:
    """The fitted law's cells of one :func:`print_fits` row."""
    if parametric:
        return [
            _number(row.get("alpha")),
            _number(row.get("beta")),
            _number(row.get("E")),
            str(row.get("n_finished", 0)),
        ]
    m = row.get("m")
    if not isinstance(m, float) or math.isnan(m):
        return ["—", "—", "0", "—"]
    se = row.get("m_se")
    pm = "" if not isinstance(se, float) or math.isnan(se) else f" ± {se:.3f}"
    return [
        f"{m:.3f}{pm}",
        _number(row.get("a")),
        str(row.get("n_points", 0)),
        f"{float(row['compute_min']):.2g}–{float(row['compute_max']):.2g}",  # type: ignore[arg-type]
    ]
