"""Report section 5, how it was made: versions, command line, date and inputs.

Versions are read from package metadata, so torch is never imported just to name it.

Examples:
    >>> v = versions()
    >>> sorted(v)[:3], v["einspace"] != ""
    (['einspace', 'matplotlib', 'numpy'], True)
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import shlex
import sys
from collections.abc import Mapping

import pandas as pd

__all__ = ["PACKAGES", "default_command", "provenance_table", "versions"]

PACKAGES = ("einspace", "torch", "numpy", "pandas", "matplotlib", "sympy", "scipy")
"""Packages whose versions the report records (``not installed`` when absent)."""


def versions() -> dict[str, str]:
    """Installed version of each of :data:`PACKAGES`, plus ``python``."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "einspace":
                import einspace

                out[name] = f"{einspace.__version__} (source tree, not installed)"
            else:
                out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def default_command(arguments: Mapping[str, object]) -> str:
    """The Python call that made the report, when no command line is given.

    Examples:
        >>> default_command({"out": "rep", "factors": 2})
        "analysis.report(out='rep', factors=2)"
    """
    args = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return f"analysis.report({args})"


def provenance_table(
    command: str,
    store: str | None,
    study: str | None,
    settings: Mapping[str, object],
    now: datetime.datetime | None = None,
) -> pd.DataFrame:
    """Two columns, ``item`` and ``value``: command, date, inputs, platform and versions."""
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    rows: list[tuple[str, str]] = [
        ("command", command),
        ("date", when),
        ("run store", store or "none (no search results section)"),
        ("study", study or ("all runs" if store else "—")),
    ]
    rows += [(k, str(v)) for k, v in settings.items()]
    rows += [
        ("platform", f"{platform.system()} {platform.machine()}"),
        ("interpreter", shlex.quote(sys.executable)),
    ]
    rows += [(f"version: {k}", v) for k, v in versions().items()]
    return pd.DataFrame(rows, columns=["item", "value"])
