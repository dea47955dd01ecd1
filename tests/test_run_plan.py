"""The plan of a search (search/run_plan.py, --dry-run): horizons that grow with the model,
counted by hand; totals by hand (a trunk once, each branch for its own steps); a dry run
trains nothing; the CLI's horizons and their precedence."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from einspace.cli import app
from einspace.errors import EinspaceError
from search.driver import RunSettings, SearchOptions, run_search
from search.options import parse_tokens_per_param, with_options
from search.run_plan import horizon_steps, model_size, plan_grid
from search.settings import parse_structures

QUIET = {"progress": False}

# the proxy MLP of mlp_regression (d_in 8, d_out 1) at width 16, depth 2, dense hidden layers:
# weights and biases of 8→16, 16→16, 16→16, 16→1, counted by hand
DENSE16_PARAMS = (8 * 16 + 16) + 2 * (16 * 16 + 16) + (16 * 1 + 1)  # 705
DENSE16_MACS = 8 * 16 + 2 * 16 * 16 + 16 * 1  # 656 per example (= token)


def test_dense16_size_is_the_hand_count_and_the_built_models() -> None:
    from search.models import build_model
    from search.proxy_config import make_config

    settings = RunSettings()
    size = model_size(settings, "dense", 16)
    model = build_model(make_config(settings, "dense", 16), settings.make_task())
    assert size.params == DENSE16_PARAMS == sum(p.numel() for p in model.parameters())
    assert size.macs_per_token == DENSE16_MACS and size.tokens_per_example == 1


def test_horizons_from_tokens_per_param_by_hand() -> None:
    # tpp × 705 tokens at 64 tokens per step: 55.08, 110.16, 220.3, 440.6 steps
    constant = RunSettings(schedule="constant")
    runs = plan_grid(parse_structures(["dense"]), [16], [0], constant, (5, 10, 20, 40))
    by_tpp = {r.tokens_per_param: r for r in runs}
    assert {t: r.config.steps for t, r in by_tpp.items()} == {5: 55, 10: 110, 20: 220, 40: 441}
    assert all(r.role == "run" for r in runs)  # constant schedule: independent runs
    assert {t: r.tokens for t, r in by_tpp.items()} == {5: 3520, 10: 7040, 20: 14080, 40: 28224}
    for run in runs:  # an independent run pays all its steps: 6 × MACs × batch per step
        assert run.flops == run.config.steps * 6 * DENSE16_MACS * 64
    assert horizon_steps(0.5, 64, 64) == 1  # half a step rounds up
    assert horizon_steps(0.49, 64, 64) == 1  # and never below one


def test_tokens_per_step_counts_every_token_of_an_lm_example() -> None:
    settings = RunSettings(task="lm", task_kwargs={"n_ctx": 8, "n_eval": 16}, batch_size=4)
    (run,) = plan_grid(parse_structures(["dense"]), [32], [0], settings, (1,))
    n = run.size.params
    assert run.size.tokens_per_example == 8
    assert run.config.steps == max(1, int(n / 32 + 0.5))  # N tokens at 4 × 8 per step
    assert run.tokens == run.config.steps * 32


def test_horizons_that_round_alike_are_one_run() -> None:
    # at width 16 the model has 705 parameters: 1 and 1.02 tokens per param both give 11 steps
    runs = plan_grid(parse_structures(["dense"]), [16], [0], RunSettings(), (1, 1.02))
    assert [r.config.steps for r in runs] == [11]


@pytest.mark.parametrize("bad", ["0", "-1", "x", "nan", ""])
def test_bad_tokens_per_param_names_the_flag(bad: str) -> None:
    with pytest.raises(EinspaceError, match="--tokens-per-param"):
        parse_tokens_per_param(bad)


def test_unknown_search_option_suggests_the_nearest() -> None:
    with pytest.raises(EinspaceError, match="did you mean 'workers'"):
        with_options(workrs=2)
    with pytest.raises(EinspaceError, match="did you mean 'workers'"):
        run_search(["dense"], [16], workrs=2)


def test_dry_run_plans_tuning_and_grid_and_trains_nothing(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    settings = RunSettings(steps=7)
    result = run_search(
        ["dense", "low_rank"],
        [16, 32],
        settings=settings,
        store=store,
        dry_run=True,
        lr_grid=3,
        **QUIET,
    )
    assert not store.exists() and result.dry_run and result.runs.empty
    plan = result.plan
    assert plan is not None
    roles = plan.frame().groupby("role").size().to_dict()
    # 3 tuning runs per structure at width 16; the grid's own run there is the winner
    assert roles == {"lr-tuning": 6, "run": 2}
    sizes = {(r.config.structure, r.config.width): r.size.macs_per_token for r in plan.runs}
    total = sum(7 * 6 * 64 * sizes[(r.config.structure, r.config.width)] for r in plan.runs)
    assert plan.total_flops == total
    assert sizes[("dense", 16)] == DENSE16_MACS


def run_cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_cli_dry_run_csv_lists_horizons_and_trains_nothing(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    args = ["search", "dense", "--widths", "16", "--store", str(store), "--dry-run"]
    out = run_cli(*args, "--format", "csv", "--lr-grid", "0")
    frame = pd.read_csv(io.StringIO(out))
    assert not store.exists()
    assert {"tokens", "parent", "flops", "steps", "tokens_per_param"} <= set(frame.columns)
    # the command line's default horizons: 5, 10, 20, 40 tokens per parameter
    assert sorted(frame["steps"]) == [55, 110, 220, 441]
    assert sorted(frame["tokens"]) == [3520, 7040, 14080, 28224]
    fixed = pd.read_csv(io.StringIO(run_cli(*args, "--format", "csv", "--steps", "9")))
    assert fixed["steps"].tolist() == [9] * 5 and (fixed["role"] == "lr-tuning").all()
    both = run_cli(
        *args, "--format", "csv", "--steps", "9", "--tokens-per-param", "20", "--lr", "0.01"
    )
    assert pd.read_csv(io.StringIO(both))["steps"].tolist() == [220]
    table = run_cli(*args, "--tokens-per-param", "20", "--lr", "0.01")
    assert "total 5.54e+07 FLOPs" in table  # 220 × 6 × 656 × 64
    bad = run_cli(*args, "--tokens-per-param", "5,-2", code=2)
    assert "--tokens-per-param '-2'" in bad


def test_every_search_option_is_an_option_of_the_search_command() -> None:
    import typer

    from search.options import flag, option_fields

    command = typer.main.get_command(app).commands["search"]  # type: ignore[attr-defined]
    options = {p.name: p for p in command.params}
    for f in option_fields():
        assert f.name in options, f.name
        assert flag(f.name) in options[f.name].opts
        assert options[f.name].help == f.metadata["help"]
    assert options["lease_s"].default == SearchOptions().lease_s == 120.0
    assert options["lr_grid"].default == "5" and SearchOptions().lr_grid is None


# --------------------------------------------------------------------------- branches wait


def _family() -> tuple:
    """A wsd trunk of dense at width 16 and its one branch (88 and 44 steps)."""
    from search.grid import GridItem

    settings = RunSettings(
        schedule="wsd", warmup=0.1, eval_every=4, batch_size=8, task_kwargs={"n_eval": 32}
    )
    runs = plan_grid(parse_structures(["dense"]), [16], [0], settings, (0.5, 1))
    trunk, branch = sorted(runs, key=lambda r: r.role == "branch")
    return trunk, GridItem.of(branch)


def _row(target: str, run_id: str) -> dict:
    from search.store import RunStore

    with RunStore(target) as store:
        runs = store.runs()
    return runs[runs["run_id"] == run_id].iloc[0].to_dict()


def test_a_branch_of_a_failed_trunk_ends_failed_with_the_reason(tmp_path: Path) -> None:
    from search.grid import GridJob, grid_loop
    from search.store import RunStore

    trunk, branch = _family()
    target = str(tmp_path / "runs.sqlite")
    with RunStore(target) as store:
        store.claim(trunk.config.to_dict(), sweep="s")
        store.mark_failed(trunk.run_id, "RuntimeError: out of memory")
    messages: list[tuple] = []
    grid_loop(GridJob(target, "s", SearchOptions()), [branch], 0, messages.append)
    row = _row(target, branch.run_id)
    assert row["status"] == "failed"
    assert trunk.run_id in row["error"] and "ended failed" in row["error"]
    assert [m[2]["status"] for m in messages if m[0] == "done"] == ["failed"]


def test_a_branch_waits_for_a_trunk_held_elsewhere_then_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.grid as grid_module
    from search.grid import GridJob, grid_loop
    from search.store import RunStore

    monkeypatch.setattr(grid_module, "POLL_S", 0.01)
    trunk, branch = _family()
    target = str(tmp_path / "runs.sqlite")
    with RunStore(target) as other:  # another live worker holds the trunk and never moves
        other.claim(trunk.config.to_dict(), sweep="s")
        job = GridJob(target, "s", SearchOptions(wait_s=0.3))
        with pytest.raises(EinspaceError, match=r"waited 0\.3 s .*--branch-wait"):
            grid_loop(job, [branch], 0, lambda message: None)
    assert _row(target, trunk.run_id)["status"] == "running"
    with RunStore(target) as store:  # the branch claimed nothing while it waited
        assert branch.run_id not in set(store.runs()["run_id"])


# --------------------------------------------------------------------------- wsd trunks


def test_wsd_plan_is_a_trunk_and_branches_counted_by_hand() -> None:
    settings = RunSettings(schedule="wsd", warmup=0.1, cooldown=0.2)
    runs = plan_grid(parse_structures(["dense"]), [16], [0], settings, (5, 10, 20, 40))
    (trunk,) = [r for r in runs if r.role == "trunk"]
    branches = sorted((r for r in runs if r.role == "branch"), key=lambda r: r.config.steps)
    # horizons 55, 110, 220, 441 steps; a branch decays over round(0.2 × steps) steps
    assert trunk.config.steps == 441 and trunk.keep_steps == (44, 88, 176)
    assert [(b.config.steps, b.branch_step) for b in branches] == [(55, 44), (110, 88), (220, 176)]
    assert all(b.parent == trunk.run_id == b.config.parent for b in branches)
    assert {r.config.warmup_steps for r in runs} == {6}  # round(0.1 × 55 = 5.5), halves up
    assert [b.flops for b in branches] == [n * 6 * DENSE16_MACS * 64 for n in (11, 22, 44)]
    assert [b.tokens for b in branches] == [55 * 64, 110 * 64, 220 * 64]  # trunk's included
    from search.run_plan import SearchPlan

    total = (441 + 11 + 22 + 44) * 6 * DENSE16_MACS * 64  # the trunk once, branches' own
    assert SearchPlan(tuple(runs)).total_flops == total
    cosine = plan_grid(
        parse_structures(["dense"]), [16], [0], RunSettings(schedule="cosine"), (5, 10)
    )
    assert [r.role for r in cosine] == ["run", "run"] and all(r.parent is None for r in cosine)


def test_cli_dry_run_csv_names_each_branchs_trunk(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    args = ["search", "dense", "--widths", "16", "--store", str(store), "--dry-run"]
    out = run_cli(*args, "--format", "csv", "--schedule", "wsd", "--lr-grid", "3")
    frame = pd.read_csv(io.StringIO(out))
    assert not store.exists()
    tuning = frame[frame["role"] == "lr-tuning"]
    branches = frame[frame["role"] == "branch"]
    assert len(tuning) == 3 and (tuning["steps"] == 441).all()  # the trunk, at 3 rates
    assert len(branches) == 3 and set(branches["parent"]) <= set(tuning["run_id"])
    assert "trunk" not in set(frame["role"])  # the tuned trunk is a tuning run


def _wsd_search(store: Path, lr: float = 3e-3, **kwargs: object) -> object:
    settings = RunSettings(
        schedule="wsd", warmup=0.1, eval_every=4, batch_size=8, task_kwargs={"n_eval": 32}, lr=lr
    )
    # dense at width 16 has 705 parameters: 0.5 and 1 token per parameter at 8 per step
    # are 44 and 88 steps; the branch resumes at 44 − round(8.8) = 35
    options = SearchOptions(tokens_per_param=(0.5, 1), progress=False, checkpoint_every=5)
    return run_search(
        ["dense"], [16], settings=settings, options=options, store=store, console=_quiet(), **kwargs
    )


def _quiet() -> object:
    from rich.console import Console

    return Console(file=io.StringIO())


def test_a_wsd_search_trains_a_trunk_and_its_branch(tmp_path: Path) -> None:
    from search.store import RunStore

    result = _wsd_search(tmp_path / "runs.sqlite", workers=2)
    runs = result.runs.set_index("role")  # type: ignore[attr-defined]
    assert sorted(runs.index) == ["branch", "trunk"]
    assert set(runs["status"]) == {"finished"}
    assert runs.loc["branch", "parent"] == runs.loc["trunk", "run_id"]
    assert list(runs["steps"].sort_values()) == [44, 88]
    points = result.points  # type: ignore[attr-defined]
    own = points[points["run_id"] == runs.loc["branch", "run_id"]].set_index("step")
    trunk = points[points["run_id"] == runs.loc["trunk", "run_id"]].set_index("step")
    assert own.index.max() == 44 and trunk.index.max() == 88
    columns = ["compute", "eval_loss", "lr"]
    before = [s for s in own.index if s < 35]  # the trunk's points, up to its checkpoint
    assert before and own.loc[before, columns].equals(trunk.loc[before, columns])
    # then its own cooldown (the update of step 35 is the last at the peak rate, logged at 36)
    after = [s for s in own.index if s > 36]
    assert after and (own.loc[after, "lr"] < trunk.loc[after, "lr"]).all()
    assert (own.loc[after, "eval_loss"] != trunk.loc[after, "eval_loss"]).all()
    with RunStore(tmp_path / "runs.sqlite") as store:
        assert len(store.runs()) == 2


def test_a_real_search_prints_the_dry_runs_total_first(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    args = ["search", "dense", "low_rank", "--widths", "16", "--store", str(store)]
    args += ["--steps", "4", "--eval-every", "2", "--lr-grid", "2", "--no-progress"]
    dry = run_cli(*args, "--dry-run")
    (line,) = [x for x in dry.splitlines() if x.startswith("plan: ")]
    # 2 structures × 2 tuning rates, 4 steps each, and the grid's own run is the winner
    assert line.startswith("plan: 4 runs (4 lr-tuning)")
    assert not store.exists()
    real = run_cli(*args)
    assert real.splitlines()[0] == line and store.exists()


BRANCH_SWEEP = """
import time
from search.driver import RunSettings, run_search
from search.store import RunStore
save = RunStore.save_checkpoint
def held(self, *args, **kwargs):  # hold each checkpoint long enough to be killed after it
    out = save(self, *args, **kwargs)
    time.sleep(0.2)
    return out
RunStore.save_checkpoint = held
settings = RunSettings(
    schedule="wsd", warmup=0.1, eval_every=4, batch_size=8, task_kwargs={{"n_eval": 32}}
)
run_search(["dense"], [16], settings=settings, store={store!r}, tokens_per_param=(0.5, 1),
           checkpoint_every=4, progress=False)
"""


def _branch_mid_run(path: Path) -> bool:
    """A branch is running with a checkpoint of its own past its branch step."""
    from search.store import RunStore

    if not path.exists():
        return False
    with RunStore(path) as store:
        for row in store.runs(status="running").to_dict("records"):
            saved = store.load_checkpoint(row["run_id"])
            parent = row["config"].get("parent")
            if parent and saved is not None and saved[0] > row["config"]["branch_step"]:
                return True
    return False


def test_a_search_killed_mid_branch_resumes_bit_identical(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    killed = tmp_path / "killed.sqlite"
    code = BRANCH_SWEEP.format(store=str(killed))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 120
    while not _branch_mid_run(killed):
        assert proc.poll() is None, "the search ended before a branch could be killed"
        assert time.monotonic() < deadline, "no branch reached a checkpoint in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 in the middle of the branch
    proc.wait(timeout=30)
    resumed = _wsd_search(killed)
    clean = _wsd_search(tmp_path / "clean.sqlite")
    for result in (resumed, clean):
        assert set(result.runs["status"]) == {"finished"}  # type: ignore[attr-defined]

    def curves(result: object) -> dict[str, list[tuple[int, float]]]:
        points = result.points  # type: ignore[attr-defined]
        return {
            rid: list(zip(part["step"], part["eval_loss"], strict=True))
            for rid, part in points.groupby("run_id")
        }

    assert curves(resumed) == curves(clean)  # same run ids, bit-identical curves
    branch = resumed.runs.set_index("role").loc["branch", "run_id"]  # type: ignore[attr-defined]
    assert _row(str(killed), branch)["attempt"] == 2  # the killed branch was taken over


def test_a_search_whose_trunk_diverges_ends_its_branch_diverged(tmp_path: Path) -> None:
    result = _wsd_search(tmp_path / "runs.sqlite", lr=1e6, workers=2)
    runs = result.runs.set_index("role")  # type: ignore[attr-defined]
    assert runs.loc["trunk", "status"] == "diverged" == runs.loc["branch", "status"]
    row = _row(str(tmp_path / "runs.sqlite"), runs.loc["branch", "run_id"])
    assert runs.loc["trunk", "run_id"] in row["error"]
    assert (
        row["last_step"]
        == _row(str(tmp_path / "runs.sqlite"), runs.loc["trunk", "run_id"])["last_step"]
    )


def test_theta_budget_is_dense_at_its_longest_horizon(tmp_path: Path) -> None:
    result = run_search(
        ["dense"],
        [16],
        store=tmp_path / "runs.sqlite",
        trials=2,
        tokens_per_param=(5, 40),
        dry_run=True,
        console=_quiet(),
    )
    plan = result.plan
    assert plan is not None and plan.theta_trials == 2
    assert plan.theta_budget == 441 * 6 * DENSE16_MACS * 64  # 40 tokens per parameter
    grid = 441 * 6 * DENSE16_MACS * 64 + (55 - 44) * 6 * DENSE16_MACS * 64  # trunk + branch
    assert plan.total_flops == 2 * plan.theta_budget + grid
    assert not (tmp_path / "runs.sqlite").exists()


def test_integer_options_name_their_flags_and_become_ints() -> None:
    options = SearchOptions(workers=2.0, theta_width=64.0)  # type: ignore[arg-type]
    options.check()
    assert (type(options.workers), options.workers, type(options.theta_width)) == (int, 2, int)
    with pytest.raises(EinspaceError, match=r"^trials \(--trials\) = -1 must be an integer ≥ 0;"):
        SearchOptions(trials=-1).check()
    with pytest.raises(EinspaceError, match=r"threads \(--threads\) = 'x' must be an integer ≥ 0"):
        SearchOptions(threads="x").check()  # type: ignore[arg-type]
