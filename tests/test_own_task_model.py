"""End-to-end tests of bringing one's own data and model, the LM proxy in the search, the
CIFAR-10 folder, and the learning-rate tuning of ``einspace search``."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from torch import nn
from typer.testing import CliRunner

from einspace.errors import EinspaceError
from einspace.nn import EinsumLinear
from search import RunSettings, RunStore, proxy_run, run_search
from search.models import build_model, load_spec, macs_per_token
from search.proxy_config import ProxyConfig
from search.tuning import lr_grid

runner = CliRunner()

TOY_MODULE = textwrap.dedent(
    '''
    """A user's own task and model, importable as toy_user:…"""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from einspace.nn import EinsumLinear


    class Toy:
        name = "toy"
        d_in = 4
        d_out = 1

        def __init__(self, n_eval=32, seed=0):
            self.n_eval, self.seed = n_eval, seed
            g = torch.Generator().manual_seed(10_000 + seed)
            x = torch.randn(n_eval, 4, generator=g)
            self._eval = (x, self.target(x))

        def __repr__(self):
            return f"Toy(n_eval={self.n_eval}, seed={self.seed})"

        @staticmethod
        def target(x):
            return torch.tanh(x.sum(dim=1, keepdim=True))

        def loss(self, pred, target):
            return F.mse_loss(pred, target)

        def train_batch(self, step, batch_size, generator=None, device=None):
            g = generator or torch.Generator().manual_seed(self.seed * 7919 + step)
            x = torch.randn(batch_size, 4, generator=g)
            return x, self.target(x)

        def eval_set(self, device=None):
            return self._eval[0].clone(), self._eval[1].clone()


    TASK = Toy(n_eval=16)


    def make_model(structure, width, task):
        net = nn.Sequential(
            nn.Linear(task.d_in, width), nn.ReLU(), EinsumLinear(width, width, structure),
            nn.ReLU(), nn.Linear(width, task.d_out),
        )
        net[0].mup_role, net[4].mup_role = "input", "readout"
        return net


    class Counted(nn.Module):
        """A model that reports its own MACs per example."""

        def __init__(self, structure, width, task):
            super().__init__()
            self.net = make_model(structure, width, task)

        def forward(self, x):
            return self.net(x)

        def macs(self):
            return 12345
    '''
)


@pytest.fixture()
def toy_user(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "toy_user.py").write_text(TOY_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield "toy_user"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("toy_user", None)


pytestmark = pytest.mark.usefixtures("one_thread")


def _quiet() -> object:
    import io

    from rich.console import Console

    return Console(file=io.StringIO())


def _text(result: object) -> str:
    """The command's output with line wrapping undone."""
    return " ".join(str(getattr(result, "output", "")).split())


def _configs(store_path: Path) -> list[dict[str, object]]:
    with RunStore(store_path) as store:
        return [json.loads(c) if isinstance(c, str) else c for c in store.runs()["config"]]


# --------------------------------------------------------------------------- own task


def test_a_task_object_runs_in_proxy_run_and_run_search(toy_user: str, tmp_path: Path) -> None:
    task = load_spec(f"{toy_user}:Toy", "task")(n_eval=8, seed=1)
    r = proxy_run("btt", task, width=16, steps=4, eval_every=2, batch_size=4)
    assert r.status == "finished" and r.config.task == "toy"
    assert r.config.task_repr == "Toy(n_eval=8, seed=1)"
    assert r.points[-1].eval_loss < r.points[0].eval_loss * 1.5
    settings = RunSettings(steps=4, eval_every=2, batch_size=4)
    result = run_search(
        ["dense", "btt"],
        [16, 32],
        task=task,
        settings=settings,
        store=tmp_path / "r.sqlite",
        progress=False,
        console=_quiet(),  # type: ignore[arg-type]
    )
    assert set(result.runs["status"]) == {"finished"} and len(result.runs) == 4
    with pytest.raises(EinspaceError, match="cannot cross to 2 worker processes"):
        run_search(
            ["dense"],
            [16],
            task=task,
            settings=settings,
            workers=2,
            store=tmp_path / "r.sqlite",
            progress=False,
        )


def test_task_and_model_by_path_on_the_command_line(toy_user: str, tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    args = ["search", "dense", "btt", "--widths", "16,32", "--steps", "4", "--eval-every", "2"]
    args += ["--batch-size", "4", "--store", str(store), "--no-progress", "--lr-grid", "0"]
    out = runner.invoke(
        __import__("einspace.cli", fromlist=["app"]).app,
        [
            *args,
            "--task",
            f"{toy_user}:Toy",
            "--task-kwargs",
            '{"n_eval": 8}',
            "--model",
            f"{toy_user}:make_model",
        ],
    )
    assert out.exit_code == 0, out.output
    configs = _configs(store)
    assert {c["task"] for c in configs} == {f"{toy_user}:Toy"}
    assert {c["model"] for c in configs} == {f"{toy_user}:make_model"}
    assert "scaling laws" in out.output


def test_a_bad_import_path_is_a_clear_error(toy_user: str) -> None:
    from einspace.cli import app

    out = runner.invoke(app, ["search", "dense", "--task", f"{toy_user}:TASKK", "--no-progress"])
    assert out.exit_code == 2 and "'TASKK'" in _text(out) and "did you mean 'TASK'" in _text(out)
    out = runner.invoke(app, ["search", "dense", "--task", "no_such_module_x:T", "--no-progress"])
    assert out.exit_code == 2 and "cannot import module 'no_such_module_x'" in _text(out)
    with pytest.raises(EinspaceError, match="not a Task: it lacks"):
        proxy_run("dense", f"{toy_user}:F", width=8, steps=1)


def test_a_task_object_by_path_refuses_task_kwargs(toy_user: str) -> None:
    with pytest.raises(EinspaceError, match="is a task object"):
        proxy_run("dense", f"{toy_user}:TASK", width=8, steps=1, task_kwargs={"n_eval": 4})
    r = proxy_run("dense", f"{toy_user}:TASK", width=8, steps=1, eval_every=1, batch_size=2)
    assert r.status == "finished"


# --------------------------------------------------------------------------- own model


def test_a_model_factory_is_measured_with_flop_counter(toy_user: str) -> None:
    factory = load_spec(f"{toy_user}:make_model", "model")
    r = proxy_run(
        "dense", f"{toy_user}:TASK", width=16, steps=2, eval_every=1, batch_size=4, model=factory
    )
    # 4·16 (input) + 16·16 (dense hidden) + 16·1 (readout), counted by hand
    assert r.macs_per_token == 4 * 16 + 16 * 16 + 16
    assert r.points[-1].compute == 6 * r.macs_per_token * 4 * 2
    assert r.padding == {
        "2": {"mode": "exact", "sizes": {"α": 16, "δ": 16}, "input": 0, "output": 0}
    } or set(r.padding) == {"2"}
    btt = proxy_run("btt", f"{toy_user}:TASK", width=16, steps=1, batch_size=4, model=factory)
    layer = EinsumLinear(16, 16, "btt")
    assert btt.macs_per_token == 4 * 16 + int(layer.macs()) + 16


def test_a_model_with_macs_reports_its_own(toy_user: str) -> None:
    r = proxy_run(
        "dense", f"{toy_user}:TASK", width=8, steps=1, batch_size=2, model=f"{toy_user}:Counted"
    )
    assert r.macs_per_token == 12345 and r.points[-1].compute == 6 * 12345 * 2


def test_an_in_process_model_cannot_cross_processes(toy_user: str, tmp_path: Path) -> None:
    def local(structure: object, width: int, task: object) -> nn.Module:
        return nn.Linear(4, 1)

    with pytest.raises(EinspaceError, match="cannot be imported by worker processes"):
        run_search(
            ["dense"],
            [8],
            task=f"{toy_user}:TASK",
            model=local,
            workers=2,
            store=tmp_path / "r.sqlite",
            progress=False,
        )
    with pytest.raises(EinspaceError, match=r"returned int; expected an nn\.Module"):
        proxy_run("dense", f"{toy_user}:TASK", width=8, steps=1, model=lambda s, w, t: 3)


def test_build_model_is_what_a_run_trains() -> None:
    config = ProxyConfig("monarch", 32, task="lm", task_kwargs={"n_ctx": 8}, n_layer=2)
    model = build_model(config)
    structured = {n for n, m in model.named_modules() if isinstance(m, EinsumLinear)}
    projections = {"attn.q", "attn.k", "attn.v", "attn.o", "mlp.fc", "mlp.proj"}
    assert structured == {f"h.{i}.{p}" for i in range(2) for p in projections}
    plain = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert plain == ["lm_head"]  # every other projection is structured
    r = proxy_run(
        "monarch", "lm", width=32, steps=1, batch_size=2, n_layer=2, task_kwargs={"n_ctx": 8}
    )
    assert r.params == sum(p.numel() for p in model.parameters())
    assert r.padding == config.to_dict()["padding"] and set(r.padding) == structured
    assert r.macs_per_token == macs_per_token(model, config.make_task(), 2)


# --------------------------------------------------------------------------- data


def test_lm_search_with_own_text_file(tmp_path: Path) -> None:
    from einspace.cli import app

    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    store = tmp_path / "runs.sqlite"
    out = runner.invoke(
        app,
        [
            "search",
            "dense",
            "btt",
            "monarch",
            "--text",
            str(text),
            "--widths",
            "16,32",
            "--steps",
            "3",
            "--eval-every",
            "3",
            "--batch-size",
            "2",
            "--n-layer",
            "1",
            "--task-kwargs",
            '{"n_ctx": 16, "n_eval": 4}',
            "--lr-grid",
            "2",
            "--store",
            str(store),
            "--no-progress",
        ],
    )
    assert out.exit_code == 0, out.output
    configs = _configs(store)
    assert {c["task"] for c in configs} == {"lm"}
    assert {c["task_kwargs"]["path"] for c in configs} == {str(text)}
    assert len({c["task_digest"] for c in configs}) == 1
    assert all("h.0.attn.q" in c["padding"] for c in configs)
    assert "learning rate per structure" in out.output
    text.write_text("a different corpus, so a different digest. " * 60)
    again = runner.invoke(
        app,
        [
            "search",
            "dense",
            "--text",
            str(text),
            "--widths",
            "16",
            "--steps",
            "3",
            "--eval-every",
            "3",
            "--batch-size",
            "2",
            "--n-layer",
            "1",
            "--task-kwargs",
            '{"n_ctx": 16, "n_eval": 4}',
            "--lr",
            "0.01",
            "--store",
            str(store),
            "--no-progress",
        ],
    )
    assert again.exit_code == 0, again.output
    assert len({c["task_digest"] for c in _configs(store)}) == 2


def test_cifar10_folder_on_the_command_line(cifar10_dir: Path, tmp_path: Path) -> None:
    from einspace.cli import app

    store = tmp_path / "runs.sqlite"
    out = runner.invoke(
        app,
        [
            "search",
            "dense",
            "low_rank",
            "--data",
            str(cifar10_dir),
            "--widths",
            "16,32",
            "--steps",
            "2",
            "--eval-every",
            "2",
            "--batch-size",
            "4",
            "--lr",
            "0.01",
            "--store",
            str(store),
            "--no-progress",
        ],
    )
    assert out.exit_code == 0, out.output
    configs = _configs(store)
    assert {c["task"] for c in configs} == {"cifar10"}
    assert {c["task_kwargs"]["root"] for c in configs} == {str(cifar10_dir)}
    assert not any(str(c.get("sweep", "")).endswith("/lr") for c in configs)
    with RunStore(store) as s:
        assert set(s.runs()["sweep"]) == {"search"}  # an explicit --lr skips tuning
    bad = runner.invoke(app, ["search", "dense", "--data", str(tmp_path), "--no-progress"])
    assert bad.exit_code == 2 and "lacks data_batch_1" in _text(bad)


# --------------------------------------------------------------------------- LR tuning


def test_lr_grid_values_and_errors() -> None:
    assert lr_grid(3, 0.01) == pytest.approx([0.001, 0.01, 0.1])
    assert lr_grid("0.03,0.01,0.03", 1.0) == [0.01, 0.03]
    with pytest.raises(EinspaceError, match="count"):
        lr_grid("abc", 0.01)
    with pytest.raises(EinspaceError, match="positive"):
        lr_grid([0.01, -1.0], 0.01)


def test_tuning_picks_the_argmin_and_the_grid_reuses_its_run(tmp_path: Path) -> None:
    settings = RunSettings(steps=6, eval_every=3, batch_size=8, task_kwargs={"n_eval": 64})
    result = run_search(
        ["dense", "low_rank"],
        [16, 32],
        settings=settings,
        store=tmp_path / "r.sqlite",
        lr_grid=[1e-4, 3e-3, 3.0],
        progress=False,
        console=_quiet(),  # type: ignore[arg-type]
    )
    lrs = result.lrs
    assert lrs is not None and len(lrs) == 6
    for label, part in lrs.groupby("structure"):
        best = part.loc[part["final_eval_loss"].idxmin()]
        assert bool(best["best"]) and result.lr[str(label)] == best["lr"]
        small = result.runs[(result.runs["structure"] == label) & (result.runs["width"] == 16)]
        assert small["run_id"].tolist() == [best["run_id"]]  # the winner is the grid's run
    with RunStore(tmp_path / "r.sqlite") as store:
        sweeps = store.runs()["sweep"].value_counts().to_dict()
    assert sweeps == {"search/lr": 6, "search": 2}


# --------------------------------------------------------------------------- coord-check


@pytest.mark.parametrize("task", ["mlp_regression", "lm"])
def test_coord_check_command_writes_png_and_csv(task: str, tmp_path: Path) -> None:
    import pandas as pd

    from einspace.cli import app

    kwargs = '{"n_ctx": 8}' if task == "lm" else '{"n_eval": 8}'
    out = runner.invoke(
        app,
        [
            "coord-check",
            "btt",
            "--task",
            task,
            "--task-kwargs",
            kwargs,
            "--widths",
            "16,32",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path),
        ],
    )
    assert out.exit_code == 0, out.output
    png, csv = tmp_path / "coord-btt_r=0.25-mup.png", tmp_path / "coord-btt_r=0.25-mup.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = pd.read_csv(csv)
    assert list(frame.columns) == ["width", "layer", "step", "rms"]
    assert set(frame["width"]) == {16, 32} and set(frame["step"]) == {0, 1}
    if task == "lm":
        assert "h.0.attn.q" in set(frame["layer"])
    bad = runner.invoke(app, ["coord-check", "btt", "--widths", "16", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "at least two" in _text(bad)


def test_demo_runs_on_the_lm_task(tmp_path: Path) -> None:
    """The demo's protocol at tiny horizons: per structure and seed a wsd trunk at each
    width and a cooldown branch (from its trunk) at the shorter horizon."""
    from einspace.cli.search import DEMO_STRUCTURES, DEMO_TASKS, run_demo

    quiet: Any = _quiet()
    result = run_demo(
        tmp_path / "demo",
        workers=1,
        progress=False,
        console=quiet,
        task="lm",
        tokens_per_param=(0.02, 0.04),
        trials=0,
        seeds=[0, 1],
        lr_grid=1,
    )
    widths = set(DEMO_TASKS["lm"]["widths"])
    assert set(result.runs["status"]) == {"finished"}
    assert set(result.runs["width"]) == widths == {16, 32, 48}
    assert set(result.runs["tokens_per_param"]) == {0.02, 0.04}
    # structures × widths × seeds × 2 horizons (a horizon that rounds to the trunk's steps
    # at a small width is the trunk itself, so at most that many)
    assert len(DEMO_STRUCTURES) * 3 * 2 < len(result.runs) <= len(DEMO_STRUCTURES) * 3 * 2 * 2
