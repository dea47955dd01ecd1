"""Tests of the search driver, the θ-space sampler and the search command.

The slow ones start real processes: a sweep interrupted with SIGINT and then killed with
SIGKILL resumes without losing or repeating a run, and two worker processes share one
SQLite run store and one optuna study.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from analysis.search_fits import fit_search
from einspace.errors import EinspaceError
from einspace.structure import Structure
from search.driver import RunSettings, interpolate_loss, parse_structures, parse_widths, run_search
from search.proxy_config import compute_per_step
from search.space import (
    PARAM_NAMES,
    check_widths,
    nearest_width,
    sample_points,
    snap_theta,
    theta_point,
)
from search.store import RunStore
from search.theta import compute_ratio, costlier_than_dense

TINY = RunSettings(steps=12, eval_every=4, batch_size=8, task_kwargs={"n_eval": 64})
QUIET = {"progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


# --------------------------------------------------------------------------- θ space

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(unit, min_size=7, max_size=7), st.sampled_from(["round", "exact"]))
def test_theta_points_are_valid_structures_or_clear_rejections(raw: list[float], mode: str) -> None:
    widths = [16, 64]
    point = theta_point(raw, widths=widths, mode=mode)  # type: ignore[arg-type]
    theta = point.theta
    assert sum(theta[:3]) == pytest.approx(1.0, abs=1e-12)
    assert sum(theta[3:6]) == pytest.approx(1.0, abs=1e-12)
    assert all(v == 0 or v >= 0.1 - 1e-12 for v in theta)
    if point.ok:
        assert point.rejection is None and point.structure is not None
        assert point.structure.family.is_valid
        assert Structure.parse(point.spec) == point.structure
        for w in widths:
            point.structure.realize(w, w, mode=mode)  # type: ignore[arg-type]
    else:
        assert point.structure is None
        kind = (point.rejection or "").split(":")[0]
        assert kind in {"disconnected", "redundant", "unrealizable"}, point.rejection


def test_snap_reaches_the_named_corners() -> None:
    assert Structure.from_theta(snap_theta((1, 0.02, 0, 1, 0, 0.05, 0))).family.name == "dense"
    monarch = snap_theta((0.5, 0.0, 0.5, 0.01, 0.49, 0.5, 0.04))
    assert Structure.from_theta(monarch).family.name == "monarch"


def test_sampler_rejections_are_explained() -> None:
    assert theta_point((1, 0, 0, 0, 1, 0, 0)).rejection.startswith("disconnected")  # type: ignore[union-attr]
    assert theta_point((0, 0, 1, 0, 0, 1, 0)).rejection.startswith("redundant")  # type: ignore[union-attr]
    deg = theta_point((0.5, 0, 0.5, 0, 0.5, 0.5, 1.0), reject_degenerate=True)
    assert deg.rejection is not None and deg.rejection.startswith("degenerate")
    points = sample_points(5, seed=1, widths=[16, 64], mode="exact")
    assert len({p.theta for p in points}) == 5 and all(p.ok for p in points)
    assert points == sample_points(5, seed=1, widths=[16, 64], mode="exact")


def test_theta_points_costlier_than_dense_are_rejected() -> None:
    """ρ = d multiplies the hidden layers' MACs (~45× the dense model at width 64); the
    named structures cost less than dense at every demo width."""
    exact = RunSettings(mode="exact")
    rho_d = Structure.from_theta((0.15, 0.2, 0.65, 0.3, 0.35, 0.35, 1.0))
    reason = costlier_than_dense(exact, rho_d, [64, 256])
    assert reason is not None and reason.startswith("costlier than dense: ")
    assert reason.endswith("at width 256")  # the larger of the two ratios
    ratio = compute_per_step(exact, rho_d, 64) / compute_per_step(exact, "dense", 64)
    assert ratio > 10
    wide = compute_per_step(exact, rho_d, 256) / compute_per_step(exact, "dense", 256)
    assert f"{wide:.1f}×" in reason and wide > ratio
    # the same ratio counted by torch on the two models' forward passes (4 rows: the plan)
    from torch.utils.flop_counter import FlopCounterMode

    from search.models import ProxyMLP

    flops = []
    for spec in (rho_d, "dense"):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            ProxyMLP(8, 1, 64, exact.depth, spec, mode="exact")(torch.randn(4, 8))
        flops.append(counter.get_total_flops())
    assert ratio == pytest.approx(flops[0] / flops[1], rel=1e-12)
    for name in ("btt", "monarch", "low_rank", "kronecker"):
        assert costlier_than_dense(exact, Structure.named(name), [16, 64, 256]) is None


def test_search_rejects_an_enqueued_point_costlier_than_dense(tmp_path: Path) -> None:
    """The θ study prunes ρ = d before training it, with the reason in its trials table."""
    rho_d = "(0.15|0.2|0.65|0.3|0.35|0.35|1)"
    result = run_search(
        ["dense"],
        [16],
        settings=replace(TINY, mode="exact"),
        store=tmp_path / "runs.sqlite",
        sweep="costly",
        workers=1,
        trials=1,
        promote=0,
        enqueue=[rho_d],
        console=_quiet(),
        **QUIET,
    )
    trials = result.trials
    assert trials is not None
    first = trials.sort_values("number").iloc[0]
    want = costlier_than_dense(replace(TINY, mode="exact"), Structure.parse(rho_d), [16])
    assert want is not None and first["theta"] == rho_d and first["rejection"] == want
    assert rho_d not in set(trials.loc[trials["rejection"].isna(), "theta"])
    # a looser bound admits it: the same point trains in a new study
    ratio, _ = compute_ratio(replace(TINY, mode="exact"), Structure.parse(rho_d), [16])
    loose = run_search(
        ["dense"],
        [16],
        settings=replace(TINY, mode="exact"),
        store=tmp_path / "runs.sqlite",
        sweep="loose",
        workers=1,
        trials=1,
        promote=0,
        enqueue=[rho_d],
        console=_quiet(),
        max_compute_ratio=ratio * 1.01,
        **QUIET,
    )
    assert loose.trials is not None
    first = loose.trials.sort_values("number").iloc[0]
    assert first["theta"] == rho_d and first["rejection"] is None and first["state"] != "fail"
    tight = costlier_than_dense(replace(TINY, mode="exact"), Structure.parse(rho_d), [16], 10)
    assert tight == f"{want} (limit 10×)"
    for bad, trials in itertools.product((0, -1.0, math.inf, math.nan, True, "2"), (0, 1)):
        with pytest.raises(EinspaceError, match=r"max_compute_ratio = .* must be a positive"):
            run_search(
                ["dense"],
                [16],
                settings=TINY,
                store=":memory:",
                trials=trials,
                max_compute_ratio=bad,
                console=_quiet(),
                **QUIET,  # type: ignore[arg-type]
            )


def test_rejected_theta_points_steer_the_sampler_and_a_shortfall_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected trial tells TPE how far it misses (log of its compute ratio), so at widths
    8 and 16, where four of five θ points cost more than dense, the study finds its trials
    in few proposals: with seed 0 it took 52 proposals for 3 trials before the constraints,
    18 with them. Out of proposals, the search says how many trials it trained."""
    import optuna

    from search import theta

    exact = replace(TINY, steps=4, eval_every=2, depth=1, mode="exact")
    kwargs: dict[str, Any] = {
        "settings": exact,
        "workers": 1,
        "promote": 0,
        "theta_width": 16,
        **QUIET,
    }
    store = tmp_path / "runs.sqlite"
    result = run_search(["dense"], [8, 16], store=store, sweep="steer", trials=3, **kwargs)
    trials = result.trials
    assert trials is not None and trials["rejection"].isna().sum() == 3
    assert len(trials) <= 30, f"{len(trials)} proposals for 3 trials"
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{store}")
    for t in study.trials:
        reason = t.user_attrs.get("rejection")
        if reason is None:
            assert t.constraints == {}
        elif reason.startswith("costlier"):
            structure = Structure.parse(t.user_attrs["theta"])
            ratio, _ = theta.compute_ratio(exact, structure, [8, 16])
            assert t.constraints == {"compute": pytest.approx(math.log(ratio))} and ratio > 1
        else:
            assert t.constraints == {"realizable": theta.UNREALIZABLE_VIOLATION}

    monkeypatch.setattr(theta, "PROPOSALS_PER_TRIAL", 1)
    console = _quiet()
    rho_d = "(0.15|0.2|0.65|0.3|0.35|0.35|1)"
    short = run_search(
        ["dense"],
        [16],
        store=store,
        sweep="short",
        trials=1,
        enqueue=[rho_d],
        console=console,
        **kwargs,
    )
    assert short.trials is not None and len(short.trials) == 1
    text = " ".join(console.file.getvalue().split())  # type: ignore[attr-defined]
    assert (
        "θ search: only 0 of 1 trials trained; 1 of 1 proposals were rejected "
        "(1 costlier than dense)." in text
    )


def test_bad_raw_theta_raises() -> None:
    with pytest.raises(EinspaceError, match="7 numbers"):
        snap_theta((0.5, 0.5))
    with pytest.raises(EinspaceError, match="outside"):
        snap_theta((1.5, 0, 0, 1, 0, 0, 0))
    assert PARAM_NAMES[-1] == "rho"


def test_unrealizable_width_names_structure_width_and_nearest() -> None:
    spec = "(0.3|0.3|0.4|0.2|0.3|0.5|0.2)"
    structure = Structure.parse(spec)
    assert nearest_width(structure, 16, mode="round") == 14
    assert nearest_width(structure, 16) == 16  # the default, "auto", factors 16 exactly
    with pytest.raises(EinspaceError, match=r"'\(0\.3\|.*width 16.*nearest width that works is 14"):
        check_widths([structure], [16], mode="round")
    # round mode truncates 16 to 12 here, while exact mode factors 16: the message says so
    with pytest.raises(EinspaceError, match="or pass mode='exact', which realizes it"):
        check_widths([structure], [16], mode="round")
    check_widths([structure], [16])
    check_widths([structure], [16], mode="exact")
    # an exact-mode refusal points to round mode only, never to the mode it is in
    with pytest.raises(EinspaceError, match="Or use mode='round'") as info:
        check_widths([structure], [7], mode="exact")
    assert "pass mode='exact'" not in str(info.value)


# --------------------------------------------------------------------------- driver units


def test_interpolation_is_log_log() -> None:
    from search.run_result import CurvePoint

    pts = [CurvePoint(0, 0.0, 2.0, 2.0), CurvePoint(1, 10.0, 1.0, 1.0)]
    pts.append(CurvePoint(2, 1000.0, 0.01, 0.01))
    assert interpolate_loss(pts, 100.0) == pytest.approx(0.1)
    assert interpolate_loss(pts, 5.0) == 1.0
    assert interpolate_loss([], 5.0) is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: run_search([], [16], store=p, **QUIET), "candidate list is empty"),
        (
            lambda p: run_search(["dense"], [16], settings=RunSettings(task="digts"), store=p),
            "unknown task 'digts'; did you mean 'digits'",
        ),
        (
            lambda p: run_search(
                ["(0.3|0.3|0.4|0.2|0.3|0.5|0.2)"],
                [16],
                settings=RunSettings(mode="round"),
                store=p,
                **QUIET,
            ),
            "width 16.*nearest width that works is 14",
        ),
        (lambda p: run_search(["dense"], [0], store=p), "width = 0 must be an integer ≥ 1"),
        (lambda p: run_search(["dens"], [16], store=p), "did you mean 'dense'"),
        (
            lambda p: run_search(["dense"], [16], store=p, trials=1, storage="not a url"),
            "storage URL 'not a url' is malformed",
        ),
        (
            lambda p: run_search(["dense"], [16], store=p, trials=1, storage="nosuchdb://x/y"),
            "cannot open optuna storage",
        ),
        (lambda p: run_search(["dense"], [16], store="postgresql://a:b@:x:y/z"), "run store URL"),
        (lambda p: run_search(["dense"], [16], store=p, lease_s=0), r"lease_s \(--lease\) = 0"),
        (
            lambda p: run_search(["dense"], [16], store=p, settings=RunSettings(steps=0)),
            "steps = 0 must be an integer ≥ 1; the nearest valid value is steps = 1",
        ),
    ],
)
def test_bad_input_raises_einspace_error(
    tmp_path: Path, call: Callable[[Path], Any], match: str
) -> None:
    with pytest.raises(EinspaceError, match=match):
        call(tmp_path / "runs.sqlite")


def test_parsers() -> None:
    assert parse_widths("64,16") == [64, 16]
    assert list(parse_structures(["btt", "btt(r=0.25)", "low_rank"])) == [
        "btt(r=0.25)",
        "low_rank(r=0.5)",
    ]
    with pytest.raises(EinspaceError):
        parse_widths("16,x")


def test_search_command_reports_bad_input_cleanly(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from einspace.cli.search import search_command

    app = typer.Typer()
    app.command()(search_command)
    result = CliRunner().invoke(
        app, ["--store", str(tmp_path / "r.sqlite"), "--widths", "16", "--no-progress"]
    )
    assert result.exit_code == 2
    assert "candidate list is empty" in result.output


def test_commands_module_does_not_import_torch() -> None:
    code = "import sys, search, einspace.cli.search, search.driver; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- processes

SWEEP = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from search.driver import RunSettings, run_search
from search.store import RunStore
save = RunStore.save_checkpoint
def held(self, *args, **kwargs):  # hold each mid-run state long enough to be seen and
    out = save(self, *args, **kwargs)  # stopped in, however loaded the machine
    time.sleep(0.15)
    return out
RunStore.save_checkpoint = held
settings = RunSettings(steps=120, eval_every=10, batch_size=8, task_kwargs={{"n_eval": 64}})
result = run_search({structures!r}, {widths!r}, settings=settings, store={store!r},
                    sweep="kill", checkpoint_every=20, progress=False)
print("INTERRUPTED" if result.interrupted else "DONE", flush=True)
sys.exit(130 if result.interrupted else 0)
"""
KILL_SETTINGS = RunSettings(steps=120, eval_every=10, batch_size=8, task_kwargs={"n_eval": 64})
KILL_STRUCTURES = ["dense", "monarch", "kronecker"]
KILL_WIDTHS = [16, 36]


def _snapshot(path: Path) -> dict[str, tuple[int, float, list[tuple[Any, ...]]]]:
    """Finished runs: id → (attempt, updated_at, points)."""
    with RunStore(path) as store:
        runs = store.runs(status="finished")
        points = store.points(run_ids=list(runs["run_id"]))
    out = {}
    for row in runs.itertuples():
        own = points[points["run_id"] == row.run_id]
        curve = list(own[["step", "compute", "train_loss", "eval_loss"]].itertuples(index=False))
        out[row.run_id] = (int(row.attempt), row.updated_at.timestamp(), [tuple(p) for p in curve])
    return out


def _mid_run(path: Path, finished_at_least: int) -> bool:
    """At least ``finished_at_least`` runs finished and a running run has a checkpoint."""
    if not path.exists():
        return False
    with RunStore(path) as store:
        runs = store.runs()
        if (runs["status"] == "finished").sum() < finished_at_least:
            return False
        running = runs[runs["status"] == "running"]["run_id"]
        return any(store.load_checkpoint(rid) is not None for rid in running)


def _start_sweep(path: Path) -> subprocess.Popen[str]:
    code = SWEEP.format(structures=KILL_STRUCTURES, widths=KILL_WIDTHS, store=str(path))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the sweep ended before it could be stopped:\n{output}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the sweep did not reach the point to stop it in time")
        time.sleep(0.05)


def test_killed_sweep_resumes_without_loss_or_repeats(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    total = len(KILL_STRUCTURES) * len(KILL_WIDTHS)
    proc = _start_sweep(path)
    _wait(proc, lambda: _mid_run(path, 1))
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 in the middle of a run
    proc.wait(timeout=30)
    before = _snapshot(path)
    assert 1 <= len(before) < total
    with RunStore(path) as store:
        killed = store.runs(status="running")
    assert len(killed) == 1

    result = run_search(
        KILL_STRUCTURES,
        KILL_WIDTHS,
        settings=KILL_SETTINGS,
        store=path,
        sweep="kill",
        checkpoint_every=20,
        progress=False,
        console=_quiet(),
    )
    assert not result.interrupted
    after = _snapshot(path)
    assert len(after) == total
    assert {k: after[k] for k in before} == before  # finished runs were neither lost nor redone
    with RunStore(path) as store:
        runs = store.runs()
        points = store.points()
    assert len(runs) == total and set(runs["status"]) == {"finished"}
    resumed = runs[runs["run_id"] == killed["run_id"].iloc[0]].iloc[0]
    assert resumed["attempt"] == 2 and (runs["attempt"] == 1).sum() == total - 1
    counts = points.groupby("run_id")["step"].agg(["count", "nunique"])
    assert (counts["count"] == 13).all() and (counts["nunique"] == 13).all()
    # the resumed run's curve is the uninterrupted one, bit for bit
    from search.proxy import run_config

    fresh = run_config(resumed["config"])
    own = points[points["run_id"] == resumed["run_id"]]
    assert own["eval_loss"].tolist() == [p.eval_loss for p in fresh.points]
    assert len(fit_search(result)) == len(KILL_STRUCTURES)


def test_ctrl_c_keeps_finished_runs_and_leaves_the_run_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.training as training
    from search.proxy import run_config

    path = tmp_path / "runs.sqlite"
    original, calls = training.train_batch, [0]

    def batch_then_ctrl_c(*args: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2 * 122 + 75:  # third run, step ~74, after its checkpoint at 60
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(training, "train_batch", batch_then_ctrl_c)
    out = io.StringIO()
    result = run_search(
        ["dense"],
        [16, 36, 64],
        settings=KILL_SETTINGS,
        store=path,
        sweep="ctrl-c",
        checkpoint_every=20,
        progress=False,
        console=Console(file=out, width=120),
    )
    assert result.interrupted
    assert "interrupted" in out.getvalue()
    with RunStore(path) as store:
        runs = store.runs()
        assert sorted(runs["status"]) == ["finished", "finished", "running"]
        running = runs[runs["status"] == "running"].iloc[0]
        assert store.load_checkpoint(running["run_id"])[0] == 60  # type: ignore[index]
    monkeypatch.setattr(training, "train_batch", original)
    # once this process is gone the run is taken over; lease 0 stands in for that here
    resumed = run_config(running["config"], store=RunStore(path, lease_s=0))
    assert resumed.resumed_from == 60 and resumed.status == "finished"
    assert resumed.points == run_config(running["config"]).points


def test_two_workers_share_the_store_and_the_study(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    result = run_search(
        ["dense", "monarch"],
        [16, 36],
        seeds=[0, 1],
        settings=RunSettings(
            steps=20, eval_every=5, batch_size=8, mode="exact", task_kwargs={"n_eval": 64}
        ),
        store=path,
        sweep="pair",
        workers=2,
        trials=4,
        promote=1,
        theta_width=16,
        progress=False,
        console=_quiet(),
    )
    assert not result.interrupted
    trials = result.trials
    assert trials is not None and result.study is not None
    trained = trials[trials["rejection"].isna()]
    assert len(trained) >= 4
    exact = RunSettings(steps=20, eval_every=5, batch_size=8, mode="exact")
    for spec in trained["theta"]:  # no trained point costs more per step than dense
        assert costlier_than_dense(exact, Structure.parse(spec), [16, 36]) is None, spec
    with RunStore(path) as store:
        runs = store.runs()
    assert (runs["attempt"] == 1).all()  # no run was taken twice
    grid = runs[runs["sweep"] == "pair"]
    assert set(grid["status"]) == {"finished"}
    assert len(grid) == (2 + len(result.promoted)) * 2 * 2
    theta_runs = runs[runs["sweep"] == "pair/theta"]
    assert set(trained["run_id"].dropna()) <= set(theta_runs["run_id"])
    import optuna

    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{path}")
    workers = {t.user_attrs.get("worker") for t in study.trials} - {None}
    assert len(workers) == 2  # both processes took trials from the one study
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))
