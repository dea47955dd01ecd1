"""Tests of learning-rate schedules: the factor by hand, validation by flag, the rate the
optimizer trains at, and the lr/tokens every logged point carries."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from einspace.errors import EinspaceError
from search.proxy import proxy_run
from search.proxy_config import ProxyConfig
from search.schedules import decay_start, lr_factor
from search.store import RunStore
from search.training import build_optimizer, evaluate, seeded_model, train_batch

TINY = {"task_kwargs": {"n_eval": 64}, "batch_size": 8}

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- the factor


def test_wsd_by_hand() -> None:
    # 10 steps, warmup 2 (1/2, 2/2), cooldown 0.4: decay from step 10 - 4 = 6 as 1 - sqrt(k/4)
    got = [lr_factor(s, 10, "wsd", warmup_steps=2, cooldown=0.4) for s in range(10)]
    want = [0.5, 1, 1, 1, 1, 1, 1, 1 - 0.5, 1 - math.sqrt(2) / 2, 1 - math.sqrt(3) / 2]
    assert got == pytest.approx(want, abs=1e-15)
    assert decay_start(10, 0.4) == 6 and decay_start(7, 0.2) == 6  # round(1.4) = 1


def test_cosine_by_hand() -> None:
    # warmup 2 of 10; then progress (s - 2) / 8: s = 2 → 1, s = 6 → (1 + 0.1) / 2, s = 10 → 0.1
    assert lr_factor(0, 10, "cosine", warmup_steps=2, min_lr=0.1) == 0.5
    assert lr_factor(2, 10, "cosine", warmup_steps=2, min_lr=0.1) == 1.0
    assert lr_factor(6, 10, "cosine", warmup_steps=2, min_lr=0.1) == pytest.approx(0.55)
    quarter = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))  # s = 4: progress 2/8
    assert lr_factor(4, 10, "cosine", warmup_steps=2, min_lr=0.1) == pytest.approx(quarter)
    assert lr_factor(9, 10, "cosine", min_lr=0.0) == pytest.approx(
        0.5 * (1 + math.cos(0.9 * math.pi))
    )


def test_constant_is_one_after_warmup() -> None:
    assert [lr_factor(s, 5, "constant", warmup_steps=4) for s in range(5)] == [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
    ]


def test_a_wsd_trunk_and_a_shorter_wsd_run_agree_up_to_the_shorter_decay() -> None:
    long = [lr_factor(s, 100, "wsd", warmup_steps=5, cooldown=0.2) for s in range(80)]
    short = [lr_factor(s, 50, "wsd", warmup_steps=5, cooldown=0.2) for s in range(40)]
    assert long[:40] == short


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"warmup": 1.5},
            r"--warmup 1\.5 must be in \[0\.0, 1\.0\]; the nearest valid value is 1\.0",
        ),
        ({"warmup": -0.1}, r"--warmup -0\.1 .* nearest valid value is 0\.0"),
        ({"cooldown": 2}, r"--cooldown 2 .* nearest valid value is 1\.0"),
        ({"min_lr": "x"}, r"--min-lr 'x' must be a number"),
        ({"schedule": "wds"}, r"--schedule 'wds'; did you mean 'wsd'"),
        (
            {"warmup": 0.9, "cooldown": 0.2},
            r"--warmup 0\.9 overlaps --cooldown 0\.2.*--warmup 0\.8",
        ),
        ({"parent": "abc"}, "needs both parent and branch_step"),
        (
            {"parent": "abc", "branch_step": 5},
            r"branch_step 5 must be the branch's decay start, step 8",
        ),
        ({"parent": "abc", "branch_step": 8, "schedule": "cosine"}, "must use --schedule wsd"),
    ],
)
def test_bad_schedule_settings_name_the_flag(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(EinspaceError, match=match):
        ProxyConfig("dense", 8, steps=10, **kwargs)  # type: ignore[arg-type]


def test_the_schedule_is_part_of_the_identity() -> None:
    base = ProxyConfig("dense", 8, steps=10)
    ids = {
        str(sorted(c.to_dict().items()))
        for c in (
            base,
            ProxyConfig("dense", 8, steps=10, schedule="cosine"),
            ProxyConfig("dense", 8, steps=10, warmup=0.1),
            ProxyConfig("dense", 8, steps=10, cooldown=0.3),
        )
    }
    assert len(ids) == 4
    assert "parent" not in base.to_dict() and base.to_dict()["version"] == 3


def test_the_cli_refuses_a_bad_warmup(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from einspace.cli import app

    args = ["search", "dense", "--widths", "8", "--steps", "10", "--warmup", "1.5"]
    out = CliRunner().invoke(app, [*args, "--store", str(tmp_path / "r.sqlite"), "--no-progress"])
    assert out.exit_code == 2, out.output
    assert "--warmup 1.5 must be in [0.0, 1.0]; the nearest valid value is 1.0" in out.output
    assert "Traceback" not in out.output


# --------------------------------------------------------------------------- training


def test_each_update_trains_at_its_groups_rate_times_the_factor() -> None:
    # 4 steps, warmup 2, cooldown 0.5 (decay from step 2): factors 1/2, 1, 1, 1 - sqrt(1/2)
    kwargs = {"steps": 4, "eval_every": 4, "warmup": 0.5, "cooldown": 0.5, **TINY}
    run = proxy_run("btt", width=16, **kwargs)  # type: ignore[arg-type]
    cfg = run.config
    factors = [0.5, 1.0, 1.0, 1.0 - math.sqrt(0.5)]
    task = cfg.make_task()
    model = seeded_model(cfg, task)
    optimizer = build_optimizer(model, cfg)
    peaks = [g["lr"] for g in optimizer.param_groups]
    assert len(set(peaks)) > 1  # μP: the groups have different rates
    for step, factor in enumerate(factors):
        x, y = train_batch(task, cfg, step, torch.device("cpu"))
        loss = task.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = peak * factor
        optimizer.step()
    assert evaluate(model, task, task.eval_set(torch.device("cpu"))) == run.final_eval_loss


def test_points_carry_lr_and_tokens(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    kwargs = {"steps": 10, "eval_every": 2, "warmup": 0.2, "cooldown": 0.4, "lr": 0.01, **TINY}
    run = proxy_run("dense", width=8, store=store, **kwargs)  # type: ignore[arg-type]
    # a point's lr is that of the update before it (step 0: of the first update)
    factors = {0: 0.5, 2: 1.0, 4: 1.0, 6: 1.0, 8: 0.5, 10: 1 - math.sqrt(3) / 2}
    assert [p.step for p in run.points] == list(factors)
    assert [p.lr for p in run.points] == pytest.approx([0.01 * f for f in factors.values()])
    assert [p.tokens for p in run.points] == [8 * s for s in factors]  # batch 8, 1 token each
    frame = store.points()
    assert list(frame.columns) == [
        "run_id",
        "sweep",
        "structure",
        "task",
        "width",
        "seed",
        "status",
        "step",
        "compute",
        "tokens",
        "lr",
        "train_loss",
        "eval_loss",
        "params",
        "macs_per_token",
        "parent",
        "final",
        "extra",
    ]
    assert frame["lr"].tolist() == [p.lr for p in run.points]
    assert frame["tokens"].tolist() == [p.tokens for p in run.points]
    # mlp_regression at width 8, depth 2: 8·8 + 8 + 2·(64 + 8) + 8 + 1 parameters
    assert set(frame["params"]) == {8 * 8 + 8 + 2 * (64 + 8) + 8 + 1}
    assert set(frame["macs_per_token"]) == {8 * 8 + 2 * 64 + 8}
    assert frame["final"].tolist() == [False] * 5 + [True]
    assert frame["parent"].isna().all()


def test_a_pruned_run_has_no_final_point(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    kwargs = {"steps": 8, "eval_every": 2, **TINY}
    proxy_run("dense", width=8, store=store, on_point=lambda p: p.step >= 4, **kwargs)  # type: ignore[arg-type]
    frame = store.points()
    assert frame["step"].tolist() == [0, 2, 4] and not frame["final"].any()


def test_extra_numbers_travel_with_a_point(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
    store.log_points(rid, [{"step": 0, "compute": 0.0, "extra": {"aux": 0.25, "load": 1.5}}])
    assert store.points()["extra"].tolist() == [{"aux": 0.25, "load": 1.5}]
    with pytest.raises(EinspaceError, match="extra"):
        store.log_points(rid, [{"step": 1, "compute": 1.0, "extra": {"aux": math.nan}}])


class _Counting(torch.nn.Module):
    """A model that reports a number of its own with every logged point."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)

    def point_extra(self) -> dict[str, float]:
        return {"forward_calls": float(self.calls)}


def _counting(structure: object, width: int, task: object) -> torch.nn.Module:
    return _Counting()


def test_a_models_point_extra_is_logged_with_each_point(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    kwargs = {"steps": 2, "eval_every": 1, **TINY}
    run = proxy_run("dense", width=8, store=store, model=_counting, **kwargs)  # type: ignore[arg-type]
    # extra is read right after each evaluation: 1 call measures its FLOPs (it has no
    # macs()) and step 0's eval is the 2nd; the first batch's loss at init is the 3rd, then
    # each step adds one training forward and one eval
    assert [p.extra for p in run.points] == [
        {"forward_calls": 2.0},
        {"forward_calls": 5.0},
        {"forward_calls": 7.0},
    ]
    assert store.points()["extra"].tolist() == [p.extra for p in run.points]
