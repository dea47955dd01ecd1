"""The ``einspace`` command line: the one door at the top, above einspace, search and analysis.

Commands: enumerate, show, score and report (:mod:`einspace.cli.app`); search and demo
(:mod:`einspace.cli.search`); coord-check (:mod:`einspace.cli.coord`). Search's run
options are generated from :class:`~search.settings.RunSettings`
(:mod:`einspace.cli.options`). No module of einspace, search or analysis imports this package.
"""

from __future__ import annotations

from einspace.cli import coord as _coord  # registers the coord-check command
from einspace.cli import search as _search  # registers the search and demo commands
from einspace.cli.app import app, main

__all__ = ["app", "main"]

del _coord, _search
