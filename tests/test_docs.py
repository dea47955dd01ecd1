"""The docs site: every example on its pages runs, the CLI guide's commands succeed, the
site builds in strict mode, and the pages cover what they promise.

``pycon`` blocks (``>>>`` sessions) are run with doctest, so their printed numbers are
checked; the blocks of one page share one namespace, top to bottom. ``python`` blocks are
executed. Each ``einspace …`` line of a ``bash`` block in the CLI guide is invoked.
"""

from __future__ import annotations

import doctest
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", flags=re.S | re.M)


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def test_pages_are_found() -> None:
    assert {"index.md", "theory.md", "cli.md", "api/einspace.md"} <= set(PAGES)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "pycon") or blocks(p, "python")])
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    text = (DOCS / page).read_text(encoding="utf-8")
    for number, match in enumerate(FENCE.finditer(text)):
        lang, body = match.groups()
        line = text.count("\n", 0, match.start()) + 1
        name = f"docs/{page} block {number} (line {line})"
        if lang == "python":
            exec(compile(body, name, "exec"), namespace)
        elif lang == "pycon":
            test = parser.get_doctest(body, namespace, name, str(DOCS / page), line)
            assert test.examples, f"{name}: a pycon block without >>> examples"
            failures = runner.run(test, clear_globs=False).failed
            namespace = test.globs  # DocTest copies its globals; carry them to the next block
            assert failures == 0, f"{name}: {failures} example(s) failed (see the output above)"


def cli_commands() -> list[str]:
    lines = [line.strip() for body in blocks("cli.md", "bash") for line in body.splitlines()]
    return [line for line in lines if line.startswith("einspace ")]


def test_cli_guide_covers_every_command() -> None:
    from typer.main import get_command

    from einspace.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    documented = {shlex.split(line)[1] for line in cli_commands()}
    assert commands <= documented, f"undocumented commands: {sorted(commands - documented)}"
    headings = set(re.findall(r"^## `einspace (\w[\w-]*)`", (DOCS / "cli.md").read_text(), re.M))
    assert commands <= headings


def test_cli_guide_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the guide's commands in order in one folder (the report reads the search's store)."""
    from typer.testing import CliRunner

    from einspace.cli import app

    monkeypatch.chdir(tmp_path)
    ran = 0
    for line in cli_commands():
        args = shlex.split(line.split("  #")[0])[1:]
        if args[0] == "demo" and "--help" not in args:
            continue  # minutes of training; `search` and `report` run the same path
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"{line}\n{result.output}"
        ran += 1
    assert ran >= 10


def test_report_explains_the_exponents_in_words_before_any_formula(tmp_path: Path) -> None:
    """The report opens by saying what ω, ψ and ν mean, in two plain sentences each, before
    its first formula (the first `=`, `^`, `≤` or `≥` of report.md)."""
    from analysis import report

    report(tmp_path / "report", factors=1, d_in=16, d_out=16)
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    first_formula = re.search(r"[=^≤≥]", text)
    assert first_formula is not None
    before = text[: first_formula.start()]
    first_heading = before.find("\n## ")
    assert first_heading == -1, "the explanations must come before the first section heading"
    for symbol, meaning in (("ω", "parameter sharing"), ("ψ", "rank"), ("ν", "compute intensity")):
        paragraphs = [p for p in before.split("\n\n") if p.startswith(f"{symbol} ({meaning})")]
        assert len(paragraphs) == 1, f"no plain explanation of {symbol} before {first_formula!r}"
        sentences = re.findall(r"[^.]+\.(?:\s|$)", paragraphs[0])
        assert len(sentences) == 2, paragraphs[0]


MKDOCS = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")


@pytest.mark.skipif(MKDOCS is None, reason="mkdocs is not installed (the docs extra)")
def test_site_builds_strict(tmp_path: Path) -> None:
    assert MKDOCS is not None
    done = subprocess.run(
        [MKDOCS, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "site" / "api" / "einspace" / "index.html").read_text(encoding="utf-8")
    for name in ("einspace.Structure", "einspace.Realization", "einspace.Family"):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
    for page, name in (
        ("nn", "einspace.nn.EinsumLinear"),
        ("search", "search.score"),
        ("analysis", "analysis.fit_power_law"),
    ):
        html = (tmp_path / "site" / "api" / page / "index.html").read_text(encoding="utf-8")
        assert f'id="{name}"' in html, f"{name} missing from api/{page}"


def test_no_pointer_to_a_design_file_users_do_not_have() -> None:
    """Docs, docstrings, report text and notebooks cite docs/ pages, never the design file."""
    word = re.compile(r"\b" + "THE" + r"ORY\b")  # spelled in two parts so this file passes
    roots = ["README.md", "einspace", "search", "analysis", "notebooks", "tests", "docs"]
    files = [
        path
        for root in roots
        for path in ([ROOT / root] if root.endswith(".md") else (ROOT / root).rglob("*"))
        if path.suffix in {".py", ".md", ".ipynb"} and path.is_file()
    ]
    assert len(files) > 50
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if word.search(line)
    ]
    assert not hits, f"point these at docs/theory.md instead: {hits}"
