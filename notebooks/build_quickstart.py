"""Write notebooks/quickstart.ipynb (without outputs) from the cells below.

Run from the repository root: ``.venv/bin/python notebooks/build_quickstart.py``.
``tests/test_notebook.py`` executes the notebook; edit the cells here, not the .ipynb.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# einspace quickstart

A short tour, about a minute on a laptop CPU:

1. define a structure and read its taxonomy exponents (ν, ω, ψ) and exact costs;
2. enumerate the space of einsum families;
3. rank candidate layers with the default score;
4. build a PyTorch layer and check it against its dense matrix;
5. train a few tiny proxy models into a run store;
6. write a mini report from them.

The math and the names are explained in `docs/theory.md` (the theory page of the docs).""",
    ),
    (
        "code",
        """import pathlib
import tempfile
import time

import pandas as pd

import einspace
from einspace import Structure, enumerate_families

started = time.perf_counter()
print("einspace", einspace.__version__)""",
    ),
    (
        "md",
        """## 1. A structure

A structure is a point θ of the einsum space: an exponent per index class. Named points
(dense, low rank, Kronecker, TT, Monarch, BTT) have constructors; any 2-factor point can be
given as the paper's 7-vector (α, β, γ, δ, ε, φ, ρ).""",
    ),
    (
        "code",
        """btt = Structure.named("btt", r=0.25)
print(btt, "| family", btt.family, "| classes", btt.family.greek)
print(f"nu = {btt.nu}, omega = {btt.omega}, psi = {btt.psi}")

monarch = Structure.from_theta("(0.5|0|0.5|0|0.5|0.5|0)")
print(monarch.family.name, monarch.nu, monarch.omega, monarch.psi)

r = btt.realize(1024, 1024)
print("sizes", r.sizes, "einsum", r.einsum)
print("params", r.params, "MACs", r.macs(), "rank bound", r.rank_bound)""",
    ),
    (
        "md",
        """## 2. The space

A family is the set of index classes that are present. There are 39 valid 2-factor
families; five of them are named structures. ν, ω and ψ are piecewise-linear in θ.""",
    ),
    (
        "code",
        """families = enumerate_families(2)
print(len(families), "valid 2-factor families")
pd.DataFrame(
    [(str(f), f.greek, f.name) for f in families if f.name],
    columns=["family", "classes", "named"],
)""",
    ),
    ("code", """btt.family.symbolic()"""),
    (
        "md",
        """## 3. Score candidates

`search.score` ranks realizations for a concrete layer before anything is trained:
full rank first, then small ω (no parameter sharing), then more parameters per MAC.""",
    ),
    (
        "code",
        """from search import score

candidates = ["dense", "btt:r=0.25", "monarch", "kronecker", "low_rank:r=0.5", "tt:r=0.25"]
ranked = score(candidates, 1024, 1024)
ranked[["position", "candidate", "params", "macs", "rank", "omega_eff", "psi_eff", "why"]]""",
    ),
    (
        "md",
        """## 4. A PyTorch layer

`EinsumLinear` holds the factors and runs the einsum; `materialize()` gives the dense
matrix it stands for.""",
    ),
    (
        "code",
        """import torch

from einspace.nn import EinsumLinear

layer = EinsumLinear(256, 256, "btt:r=0.25", bias=False, dtype=torch.float64)
x = torch.randn(8, 256, dtype=torch.float64)
W = layer.materialize()
print(layer)
print("params", layer.params, "=", sum(p.numel() for p in layer.parameters()))
print("forward equals x @ W.T:", torch.allclose(layer(x), x @ W.T))
print("rank", int(torch.linalg.matrix_rank(W)), "bound", layer.realization.rank_bound)""",
    ),
    (
        "md",
        """## 5. Proxy runs

A proxy run trains a small MLP whose hidden layers have the structure, logging
(compute, loss) points into a run store.""",
    ),
    (
        "code",
        """from search import RunStore, proxy_run

torch.set_num_threads(1)  # the proxy models are tiny: one thread is fastest
workdir = pathlib.Path(tempfile.mkdtemp(prefix="einspace-quickstart-"))
store = RunStore(workdir / "runs.sqlite")
rows = []
for structure in ("dense", "btt", "low_rank"):
    for width in (16, 32):
        result = proxy_run(
            structure,
            "mlp_regression",
            width=width,
            steps=40,
            eval_every=10,
            task_kwargs={"n_eval": 128},
            store=store,
            sweep="quickstart",
        )
        rows.append((structure, width, result.status, result.final_eval_loss, result.compute))
store.close()
pd.DataFrame(rows, columns=["structure", "width", "status", "final eval loss", "compute"])""",
    ),
    (
        "md",
        """## 6. A mini report

`analysis.report` writes a self-contained `index.html`, `report.md` and CSV tables
(`einspace report --out DIR` on the command line).""",
    ),
    (
        "code",
        """import analysis

index = analysis.report(
    workdir / "report",
    factors=2,
    d_in=64,
    d_out=64,
    runs=workdir / "runs.sqlite",
    study="quickstart",
)
print("open", index)
print(sorted(p.name for p in (index.parent / "tables").iterdir()))
laws = pd.read_csv(index.parent / "tables" / "scaling_laws.csv")
laws[["structure", "omega", "psi", "m", "m_se", "n_points"]]""",
    ),
    ("code", """print(f"quickstart took {time.perf_counter() - started:.1f} s")"""),
]


def build() -> nbformat.NotebookNode:
    """The quickstart notebook, without outputs."""
    cells = [new_markdown_cell(t) if kind == "md" else new_code_cell(t) for kind, t in CELLS]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"  # stable ids: rebuilding gives no spurious diff
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    target = Path(__file__).with_name("quickstart.ipynb")
    nbformat.write(build(), target)
    print(f"wrote {target}")
