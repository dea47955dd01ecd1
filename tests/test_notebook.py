"""Execute notebooks/quickstart.ipynb end to end; any failing cell fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (test extra)")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (test extra)")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's temp folders land here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    reports = list(tmp_path.glob("einspace-quickstart-*/report/index.html"))
    assert len(reports) == 1
