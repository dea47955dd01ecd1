"""Tests of cooldown branches: a branch of a wsd trunk is, bit for bit on CPU, the standalone
wsd run of its horizon; it waits for its trunk; it resumes from its own checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from einspace.errors import EinspaceError
from search.proxy import run_config
from search.proxy_config import ProxyConfig, make_config
from search.run_result import CurvePoint
from search.settings import RunSettings
from search.store import RunStore, run_id

pytestmark = pytest.mark.usefixtures("one_thread")

# warmup 2 steps for the whole family; cooldown 1/4: the trunk of 24 steps decays from 18,
# a branch of 16 steps from 12 and one of 8 from 6.
SETTINGS = RunSettings(
    steps=24, eval_every=2, cooldown=0.25, batch_size=8, task_kwargs={"n_eval": 64}
)


def _trunk() -> ProxyConfig:
    return make_config(SETTINGS, "btt", 16, seed=1, warmup_steps=2)


def _branch(trunk: ProxyConfig, steps: int) -> ProxyConfig:
    start = steps - round(0.25 * steps)
    parent = run_id(trunk.to_dict())
    return make_config(
        SETTINGS, "btt", 16, seed=1, steps=steps, parent=parent, branch_step=start, warmup_steps=2
    )


def _standalone(branch: ProxyConfig) -> ProxyConfig:
    return replace(branch, parent=None, branch_step=None)


def test_a_branch_is_the_standalone_run_of_its_horizon(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    trunk = _trunk()
    short = _branch(trunk, 8)
    assert run_config(short, store=store).status == "waiting"  # the trunk has not run
    assert store.runs().empty  # nothing claimed
    trunk_run = run_config(trunk, store=store, keep_steps=[6, 12])
    assert trunk_run.status == "finished"
    assert store.load_checkpoint(trunk_run.run_id, step=6) is not None  # pinned: kept
    branch = run_config(short, store=store)
    alone = run_config(_standalone(short))
    assert branch.status == "finished" and branch.run_id != alone.run_id
    assert branch.points == alone.points  # losses, compute, tokens and lr, bit for bit
    assert branch.trained_steps == 2 and branch.resumed_from == 6
    assert [p.step for p in branch.points] == [0, 2, 4, 6, 8]
    assert branch.points[-1].compute == alone.points[-1].compute  # the whole schedule's
    # the branch's first points are the trunk's
    assert branch.points[:3] == trunk_run.points[:3]
    frame = store.points()
    mine = frame[frame["run_id"] == branch.run_id]
    assert mine["eval_loss"].tolist() == [p.eval_loss for p in alone.points]
    assert set(mine["parent"]) == {trunk_run.run_id}
    assert mine["final"].tolist() == [False, False, False, False, True]
    theirs = frame[frame["run_id"] == trunk_run.run_id]
    assert theirs["final"].tolist() == [False] * 12 + [True] and theirs["parent"].isna().all()
    again = run_config(short, store=store)
    assert again.cached and again.points == branch.points


def test_a_branch_must_match_its_trunk(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    trunk = _trunk()
    run_config(trunk, store=store, keep_steps=[6])
    other = replace(_branch(trunk, 8), lr=0.01)
    with pytest.raises(EinspaceError, match="differs from it in lr"):
        run_config(other, store=store)
    with pytest.raises(EinspaceError, match="give the store"):
        run_config(_branch(trunk, 8))
    assert set(store.runs()["run_id"]) == {run_id(trunk.to_dict())}


def test_a_killed_branch_resumes_bit_identically(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    trunk = _trunk()
    long = _branch(trunk, 16)  # from step 12, checkpoints every 2 steps
    run_config(trunk, store=RunStore(path), keep_steps=[12])
    alone = run_config(_standalone(long))

    def stop_at_14(point: CurvePoint) -> None:
        if point.step == 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_config(long, store=RunStore(path), checkpoint_every=2, on_point=stop_at_14)
    rid = run_id(long.to_dict())
    runs = RunStore(path).runs()
    assert runs.set_index("run_id").loc[rid, "status"] == "running"
    resumed = run_config(long, store=RunStore(path, lease_s=0), checkpoint_every=2)
    assert resumed.resumed_from == 14 and resumed.trained_steps == 2
    assert resumed.points == alone.points
    stored = RunStore(path).points(run_ids=[rid])
    assert stored["eval_loss"].tolist() == [p.eval_loss for p in alone.points]


def test_a_branch_killed_with_sigkill_resumes_bit_identically(
    tmp_path: Path, kill_after_checkpoint: Callable[[dict[str, object], str, int], None]
) -> None:
    path = tmp_path / "runs.sqlite"
    trunk = _trunk()
    long = _branch(trunk, 16)
    run_config(trunk, store=RunStore(path), keep_steps=[12])
    kill_after_checkpoint(long.to_dict(), str(path), 14)  # mid-cooldown, its own first
    rid = run_id(long.to_dict())
    assert RunStore(path).load_checkpoint(rid) is not None
    resumed = run_config(long, store=RunStore(path, lease_s=0))
    assert resumed.resumed_from == 14 and resumed.status == "finished"
    assert resumed.points == run_config(_standalone(long)).points


def test_a_branch_of_a_trunk_that_diverged_before_it_diverges_there_too(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    trunk = replace(_trunk(), lr=1e6)
    trunk_run = run_config(trunk, store=store, keep_steps=[6])
    assert trunk_run.status == "diverged" and trunk_run.points[-1].step < 6
    short = replace(_branch(trunk, 8), lr=1e6)
    branch = run_config(short, store=store)
    alone = run_config(_standalone(short))
    assert branch.status == alone.status == "diverged"
    assert branch.points == alone.points
    status = store.runs().set_index("run_id").loc[branch.run_id, "status"]
    assert status == "diverged"
