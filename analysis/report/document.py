"""The report as a list of blocks, rendered to self-contained HTML and to Markdown.

A :class:`Document` holds headings, paragraphs, bullet lists, tables and figures. It is
rendered twice from the same blocks, so the two outputs always say the same thing:

- ``index.html``: one file, inline CSS, figures as base64 PNG ``data:`` URIs, no script and
  no reference to anything outside the file except relative links to the CSV tables;
- ``report.md``: the same text, figures saved as ``img/<name>.png``.

Every table is also written in full to ``tables/<name>.csv``; the HTML and Markdown show at
most ``Table.max_rows`` rows and link the CSV. Text may contain ```code``` spans, nothing else
is interpreted.

Examples:
    >>> import pandas as pd
    >>> doc = Document("Demo")
    >>> doc.add(Heading("Counts"), Paragraph("Valid `k = 2` families."))
    >>> doc.add(Table("counts", pd.DataFrame({"k": [1, 2], "families": [1, 39]})))
    >>> print(doc.render_markdown())  # doctest: +NORMALIZE_WHITESPACE
    # Demo
    <BLANKLINE>
    ## Counts
    <BLANKLINE>
    Valid `k = 2` families.
    <BLANKLINE>
    | k | families |
    |---|---|
    | 1 | 1 |
    | 2 | 39 |
    <BLANKLINE>
    Full table: [tables/counts.csv](tables/counts.csv)
    <BLANKLINE>
    >>> "<code>k = 2</code>" in doc.render_html()
    True
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from einspace.errors import EinspaceError

__all__ = [
    "Block",
    "Bullets",
    "Document",
    "Figure",
    "Heading",
    "Paragraph",
    "Table",
    "format_cell",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CODE = re.compile(r"`([^`]+)`")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; line-height: 1.5; }
h1 { border-bottom: 2px solid #3b6ea8; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #c9d3df; padding-bottom: .15em; }
h3 { margin-top: 1.5em; }
code { background: #eef2f7; padding: 0 .25em; border-radius: 3px; font-size: 92%; }
table { border-collapse: collapse; margin: .6em 0 .3em; font-size: 88%; }
th, td { border: 1px solid #c9d3df; padding: .2em .55em; text-align: left;
         vertical-align: top; }
th { background: #e3eaf3; }
tr:nth-child(even) td { background: #f6f8fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e0e6ee; }
figcaption, .caption { color: #4a5566; font-size: 90%; }
.note { color: #4a5566; font-size: 88%; }
nav ul { columns: 2; }
"""


@dataclass(frozen=True)
class Heading:
    """A section heading (level 2) or subsection heading (level 3)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text; ```code``` spans are the only markup."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bullet list of plain-text items."""

    items: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Table:
    """A table: shown up to ``max_rows`` rows (None: all), always written to CSV in full.

    Attributes:
        name: file stem of ``tables/<name>.csv`` (lowercase letters, digits, ``_``, ``-``).
        frame: the data; its columns are the header.
        caption: a sentence shown above the table.
        max_rows: rows shown in HTML and Markdown; None shows every row, 0 shows none (the
            table is then only linked, for tables too long to read).
    """

    name: str
    frame: pd.DataFrame
    caption: str = ""
    max_rows: int | None = 60


@dataclass(frozen=True)
class Figure:
    """A PNG figure with a caption; written as ``img/<name>.png`` and as a data URI."""

    name: str
    png: bytes
    caption: str
    alt: str = ""


Block = Heading | Paragraph | Bullets | Table | Figure


def format_cell(value: object) -> str:
    """A table cell as text: 4 significant digits for floats, ``—`` for missing values.

    Examples:
        >>> [format_cell(v) for v in (3, 0.123456, float("nan"), None, 2.0, 1e12, "xA,By")]
        ['3', '0.1235', '—', '—', '2', '1e+12', 'xA,By']
    """
    if value is None or value is pd.NA:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return "—"
        return f"{v:.4g}"
    return str(value)


def _inline_html(text: str) -> str:
    return _CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


@dataclass
class Document:
    """An ordered list of blocks with a title.

    Examples:
        >>> doc = Document("T")
        >>> doc.add(Heading("A"), Paragraph("text"))
        >>> len(doc.blocks)
        2
    """

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        """Append blocks; table and figure names must be unique and file-safe."""
        for block in blocks:
            if isinstance(block, Table | Figure):
                if not _NAME.fullmatch(block.name):
                    raise EinspaceError(
                        f"report block name {block.name!r} must be lowercase letters, digits, "
                        "'_' or '-', e.g. 'family_counts'"
                    )
                same = [
                    b
                    for b in self.blocks
                    if isinstance(b, type(block)) and getattr(b, "name", None) == block.name
                ]
                if same:
                    raise EinspaceError(f"report block name {block.name!r} is used twice")
            self.blocks.append(block)

    # ------------------------------------------------------------------ HTML
    def render_html(self) -> str:
        """The whole report as one self-contained HTML page."""
        taken: set[str] = set()
        anchors = {id(b): _slug(b.text, taken) for b in self.blocks if isinstance(b, Heading)}
        toc = "".join(
            f'<li><a href="#{anchors[id(b)]}">{_inline_html(b.text)}</a></li>'
            for b in self.blocks
            if isinstance(b, Heading) and b.level == 2
        )
        body: list[str] = [f"<h1>{_inline_html(self.title)}</h1>"]
        if toc:
            body.append(f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>")
        for block in self.blocks:
            if isinstance(block, Heading):
                level = min(max(block.level, 2), 4)
                body.append(
                    f'<h{level} id="{anchors[id(block)]}">{_inline_html(block.text)}</h{level}>'
                )
            elif isinstance(block, Paragraph):
                body.append(f"<p>{_inline_html(block.text)}</p>")
            elif isinstance(block, Bullets):
                items = "".join(f"<li>{_inline_html(t)}</li>" for t in block.items)
                body.append(f"<ul>{items}</ul>")
            elif isinstance(block, Table):
                body.append(self._table_html(block))
            else:
                data = base64.b64encode(block.png).decode("ascii")
                alt = html.escape(block.alt or block.caption, quote=True)
                body.append(
                    f'<figure id="fig-{block.name}"><img alt="{alt}" '
                    f'src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
                )
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
        )

    @staticmethod
    def _table_html(table: Table) -> str:
        frame = table.frame
        parts = []
        if table.caption:
            parts.append(f'<p class="caption">{_inline_html(table.caption)}</p>')
        shown = frame if table.max_rows is None else frame.head(table.max_rows)
        if len(shown.columns) and len(shown):
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
            rows = []
            for values in shown.itertuples(index=False, name=None):
                cells = "".join(
                    f'<td class="num">{html.escape(format_cell(v))}</td>'
                    if _is_number(v)
                    else f"<td>{html.escape(format_cell(v))}</td>"
                    for v in values
                )
                rows.append(f"<tr>{cells}</tr>")
            parts.append(
                f'<div class="scroll"><table id="table-{table.name}"><thead><tr>{head}</tr>'
                f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
            )
        parts.append(
            f'<p class="note">{html.escape(_table_note(table))} '
            f'<a href="tables/{table.name}.csv">tables/{table.name}.csv</a></p>'
        )
        return "\n".join(parts)

    # ------------------------------------------------------------------ Markdown
    def render_markdown(self, image_dir: str = "img") -> str:
        """The report as Markdown; figures are referenced as ``<image_dir>/<name>.png``."""
        out: list[str] = [f"# {self.title}", ""]
        for block in self.blocks:
            if isinstance(block, Heading):
                out += ["#" * min(max(block.level, 2), 4) + " " + block.text, ""]
            elif isinstance(block, Paragraph):
                out += [block.text, ""]
            elif isinstance(block, Bullets):
                out += [f"- {item}" for item in block.items] + [""]
            elif isinstance(block, Table):
                out += self._table_markdown(block)
            else:
                alt = (block.alt or block.caption).replace("]", ")").replace("[", "(")
                out += [f"![{alt}]({image_dir}/{block.name}.png)", "", f"*{block.caption}*", ""]
        return "\n".join(out)

    @staticmethod
    def _table_markdown(table: Table) -> list[str]:
        frame = table.frame
        out: list[str] = []
        if table.caption:
            out += [table.caption, ""]
        shown = frame if table.max_rows is None else frame.head(table.max_rows)
        if len(shown.columns) and len(shown):

            def cell(v: object) -> str:
                return format_cell(v).replace("|", "\\|").replace("\n", " ")

            out.append("| " + " | ".join(cell(c) for c in frame.columns) + " |")
            out.append("|" + "---|" * len(frame.columns))
            out += [
                "| " + " | ".join(cell(v) for v in values) + " |"
                for values in shown.itertuples(index=False, name=None)
            ]
            out.append("")
        out += [f"{_table_note(table)} [tables/{table.name}.csv](tables/{table.name}.csv)", ""]
        return out

    # ------------------------------------------------------------------ files
    def write(self, folder: Path) -> Path:
        """Write ``index.html``, ``report.md``, ``img/*.png`` and ``tables/*.csv`` into
        ``folder`` (which must exist); return the path of ``index.html``."""
        (folder / "img").mkdir(exist_ok=True)
        (folder / "tables").mkdir(exist_ok=True)
        for block in self.blocks:
            if isinstance(block, Figure):
                (folder / "img" / f"{block.name}.png").write_bytes(block.png)
            elif isinstance(block, Table):
                block.frame.to_csv(folder / "tables" / f"{block.name}.csv", index=False)
        (folder / "report.md").write_text(self.render_markdown(), encoding="utf-8")
        index = folder / "index.html"
        index.write_text(self.render_html(), encoding="utf-8")
        return index


def _table_note(table: Table) -> str:
    n = len(table.frame)
    if table.max_rows is not None and n > table.max_rows:
        if table.max_rows == 0:
            return f"{n} rows, not shown here; full table:"
        return f"First {table.max_rows} of {n} rows; full table:"
    return "Full table:"
