"""Every ```python block of the README runs as written, and prints what its comments say.

A line ``print(a, b)  # text`` claims that the call prints ``text`` (whitespace aside): the
test runs the block with each such ``print`` replaced by a recorder and compares. A comment
that is not a printed value goes on the line above its ``print``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
CLAIM = re.compile(r"^(\s*)print\((.*)\)\s+#\s*(.+)$")


def instrument(block: str) -> tuple[str, dict[int, str]]:
    """The block with each commented ``print`` recording its output, and the claims by line."""
    lines, claims = [], {}
    for number, line in enumerate(block.splitlines(), 1):
        m = CLAIM.match(line)
        if m:
            indent, args, claim = m.groups()
            claims[number] = claim
            line = f"{indent}__record__({number}, {args})"
        lines.append(line)
    return "\n".join(lines), claims


def test_readme_has_python_examples_with_printed_values() -> None:
    assert len(BLOCKS) >= 3
    assert sum(len(instrument(b)[1]) for b in BLOCKS) >= 6


def test_the_instrumentation_catches_a_wrong_claim() -> None:
    source, claims = instrument("x = 2\nprint(x, x + 1)  # 2 4\n")
    printed: dict[int, str] = {}
    exec(source, {"__record__": lambda n, *a: printed.__setitem__(n, " ".join(map(str, a)))})
    assert claims == {2: "2 4"} and printed == {2: "2 3"}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_prints_what_it_says(index: int) -> None:
    source, claims = instrument(BLOCKS[index])
    printed: dict[int, str] = {}

    def record(number: int, *args: object) -> None:
        printed[number] = " ".join(str(a) for a in args)

    exec(compile(source, f"README block {index}", "exec"), {"__record__": record})
    assert set(printed) == set(claims)
    for number, claim in claims.items():
        assert printed[number].split() == claim.split(), f"README block {index}, line {number}"
