"""Many processes on one run store: fresh starts, fencing, killed and paused workers.

Every test here starts real processes at once, on SQLite (an ext4 folder and tmpfs) and
on a private PostgreSQL (the ``postgres_url`` fixture; skipped with a reason where it is
missing). ``EINSPACE_STRESS_REPS`` raises the number of repeated fresh starts (the
suite runs a few; 20 or more for a measurement).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from search.store import RunStore

REPS = int(os.environ.get("EINSPACE_STRESS_REPS", "4"))
ROOT = Path(__file__).resolve().parents[1]

# One process of a stress test: for each repetition, wait at a file barrier with the
# other processes, then run the same search on that repetition's fresh store.
SEARCH = """
import json, os, sys, time, traceback
args = json.loads(sys.argv[1])
from search.driver import RunSettings, run_search
settings = RunSettings(steps=4, eval_every=2, batch_size=8, depth=1, mode="exact",
                       task_kwargs={"n_eval": 32})
outcomes = []
for rep, store in enumerate(args["stores"]):
    barrier = os.path.join(args["barrier"], str(rep))
    os.makedirs(barrier, exist_ok=True)
    open(os.path.join(barrier, str(args["me"])), "w").close()
    deadline = time.monotonic() + 300
    while len(os.listdir(barrier)) < args["n"] and time.monotonic() < deadline:
        time.sleep(0.002)
    started = time.perf_counter()
    try:
        result = run_search(args["structures"], [8, 16], settings=settings, store=store,
                            sweep="stress", workers=args["workers"], trials=args["trials"],
                            promote=0, theta_width=16, progress=False)
        outcomes.append({"ok": True, "wall_s": time.perf_counter() - started,
                         "statuses": sorted(result.runs["status"])})
    except BaseException as err:
        outcomes.append({"ok": False, "error": "".join(traceback.format_exception(err))[-800:]})
print("OUTCOMES " + json.dumps(outcomes), flush=True)
"""


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def _start(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _python(code, *args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _outcomes(proc: subprocess.Popen[str], timeout: float) -> list[dict[str, Any]]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"a search process did not finish in {timeout} s:\n{out[-3000:]}")
    lines = [line for line in out.splitlines() if line.startswith("OUTCOMES ")]
    assert proc.returncode == 0 and lines, out[-3000:]
    return list(json.loads(lines[-1][len("OUTCOMES ") :]))


def _stress(
    stores: list[str],
    tmp_path: Path,
    *,
    processes: int = 3,
    workers: int = 1,
    trials: int = 0,
    structures: tuple[str, ...] = ("dense", "low_rank", "monarch"),
) -> list[list[dict[str, Any]]]:
    """Start ``processes`` searches together on each store in turn; their outcomes."""
    barrier = tmp_path / "barrier"
    procs = [
        _start(
            SEARCH,
            json.dumps(
                {
                    "stores": stores,
                    "barrier": str(barrier),
                    "me": i,
                    "n": processes,
                    "workers": workers,
                    "trials": trials,
                    "structures": list(structures),
                }
            ),
        )
        for i in range(processes)
    ]
    # read every pipe at once: a process whose output fills its pipe while the test waits
    # on another blocks, and the rest then wait for it at the next barrier
    with ThreadPoolExecutor(len(procs)) as pool:
        per_process = list(pool.map(lambda p: _outcomes(p, 120 + 60 * len(stores)), procs))
    return [[per_process[i][rep] for i in range(processes)] for rep in range(len(stores))]


def _check_reps(
    what: str,
    stores: list[str],
    results: list[list[dict[str, Any]]],
    check: Callable[[list[dict[str, Any]], str], None],
) -> None:
    """Check every repetition; fail with how many failed and the first failure."""
    failed: list[str] = []
    for store, outcomes in zip(stores, results, strict=True):
        try:
            check(outcomes, store)
        except Exception as err:
            failed.append(f"{store}: {err}")
    walls = [o["wall_s"] for rep in results for o in rep if o["ok"]]
    spread = (
        f"{min(walls):.2f}/{sorted(walls)[len(walls) // 2]:.2f}/{max(walls):.2f}" if walls else "-"
    )
    print(
        f"\nSTRESS {what}: {len(stores)} starts of {len(results[0])} processes, "
        f"{len(failed)} failed; wall s min/median/max {spread}"
    )
    assert not failed, f"{len(failed)} of {len(stores)} starts failed; first: {failed[0]}"


def _check_rep(outcomes: list[dict[str, Any]], store: str, grid_runs: int) -> None:
    failures = [o["error"] for o in outcomes if not o["ok"]]
    assert not failures, failures[0]
    for o in outcomes:  # a run another live process still trains is 'running' here
        assert len(o["statuses"]) == grid_runs
        assert set(o["statuses"]) <= {"finished", "running"}
    with RunStore(store) as run_store:
        runs = run_store.runs(sweep="stress")
        assert len(runs) == grid_runs and set(runs["status"]) == {"finished"}
        assert set(runs["attempt"]) == {1}  # each run trained once, never twice
        counts = run_store.points(sweep="stress").groupby("run_id")["step"].count()
        assert (counts == 3).all()


@pytest.mark.parametrize("where", ["ext4", "tmpfs"])
def test_fresh_sqlite_file_three_processes_never_fail_or_corrupt(
    where: str, tmp_path: Path
) -> None:
    if where == "tmpfs":
        if not Path("/dev/shm").is_dir():
            pytest.skip("no tmpfs at /dev/shm")
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="einspace-stress-", dir="/dev/shm"))
    else:
        folder = tmp_path / "stores"
        folder.mkdir()
    try:
        stores = [str(folder / f"rep{r}.sqlite") for r in range(REPS)]
        results = _stress(stores, tmp_path, trials=2)

        def check(outcomes: list[dict[str, Any]], store: str) -> None:
            with sqlite3.connect(store) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            _check_rep(outcomes, store, 6)
            _check_trials(f"sqlite:///{store}", 2)

        _check_reps(f"sqlite {where}", stores, results, check)
    finally:
        if where == "tmpfs":
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


def _check_trials(storage: str, expected: int) -> None:
    """The study has exactly ``expected`` trained trials, whatever the processes."""
    import optuna
    from optuna.trial import TrialState

    [summary] = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trained = [
        t
        for t in study.trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and "rejection" not in t.user_attrs
    ]
    assert len(trained) == expected
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_fresh_postgres_database_three_processes_grid_and_theta(
    postgres_server: Callable[[], str], tmp_path: Path
) -> None:
    stores = [postgres_server() for _ in range(max(2, REPS // 2))]
    results = _stress(stores, tmp_path, trials=3)

    def check(outcomes: list[dict[str, Any]], store: str) -> None:
        _check_rep(outcomes, store, 6)
        _check_trials(store, 3)

    _check_reps("postgresql, 3 processes", stores, results, check)


def test_fresh_postgres_database_one_search_with_three_workers(
    postgres_server: Callable[[], str], tmp_path: Path
) -> None:
    stores = [postgres_server() for _ in range(max(2, REPS // 2))]
    results = _stress(stores, tmp_path, processes=1, workers=3, trials=3)

    def check(outcomes: list[dict[str, Any]], store: str) -> None:
        _check_rep(outcomes, store, 6)
        _check_trials(store, 3)

    _check_reps("postgresql, 1 process of 3 workers", stores, results, check)


# --------------------------------------------------------------------------- fencing

# One long run, claimed with a short lease (heartbeats every quarter of it).
LONG_RUN = """
import json, sys
args = json.loads(sys.argv[1])
from search.proxy import run_config
from search.store import RunStore
store = RunStore(args["store"], lease_s=args["lease"])
result = run_config(args["config"], store=store, checkpoint_every=10)
print("RESULT " + json.dumps({"status": result.status, "error": result.error,
                              "resumed_from": result.resumed_from}), flush=True)
"""


def _long_config() -> dict[str, Any]:
    from search.proxy_config import ProxyConfig

    return ProxyConfig(
        "dense", 16, steps=400, eval_every=10, batch_size=8, task_kwargs={"n_eval": 32}
    ).to_dict()


def _result(proc: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def _poll(ready: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _pause_between_transactions(pid: int, store: str) -> None:
    """SIGSTOP ``pid`` (a GC pause, a suspended laptop) where it holds no SQLite write lock.

    A process paused inside a write transaction blocks every writer of an SQLite file
    until it resumes (SQLite's locks cannot be revoked); fencing covers the pause between
    transactions. PostgreSQL aborts a transaction left idle past half the lease, so there
    any pause will do.
    """
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        if "://" in store:
            return
        conn = sqlite3.connect(store, timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # paused holding the lock: let it go on a little
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            conn.close()
    pytest.fail("could not pause the worker outside a write transaction")


def _row(store: str, rid: str) -> dict[str, Any]:
    with RunStore(store) as s:
        rows = s.runs()
    found = rows[rows["run_id"] == rid].to_dict("records")
    return dict(found[0]) if found else {}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite")
    return str(request.getfixturevalue("postgres_url"))


def test_stale_owner_paused_past_its_lease_cannot_write_and_the_new_owner_finishes(
    store_url: str,
) -> None:
    from search.proxy import run_config
    from search.store import run_id

    config = _long_config()
    rid = run_id(config)
    lease = 3.0
    RunStore(store_url).close()
    args = json.dumps({"store": store_url, "config": config, "lease": lease})
    first = _start(LONG_RUN, args)

    def checkpointed() -> bool:
        with RunStore(store_url) as s:
            return bool(_row(store_url, rid)) and s.load_checkpoint(rid) is not None

    _poll(checkpointed, "the first worker's checkpoint")
    _pause_between_transactions(first.pid, store_url)
    try:
        _poll(
            lambda: time.time() - _row(store_url, rid)["heartbeat_at"].timestamp() > lease,
            "the lease to lapse",
        )
        second = _start(LONG_RUN, args)
        _poll(lambda: _row(store_url, rid)["attempt"] == 2, "the take-over")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stale = _result(first)
    assert stale["status"] == "busy"
    assert "was taken over by another worker at" in stale["error"]
    assert "this worker stops" in stale["error"]
    new = _result(second)
    assert new["status"] == "finished" and new["resumed_from"] is not None
    row = _row(store_url, rid)
    assert (row["status"], row["attempt"]) == ("finished", 2)
    with RunStore(store_url) as s:
        points = s.points(run_ids=[rid])
    fresh = run_config(config)  # the uninterrupted run, bit for bit
    assert points["step"].tolist() == [p.step for p in fresh.points]
    assert points["eval_loss"].tolist() == [p.eval_loss for p in fresh.points]
    assert points["train_loss"].tolist() == [p.train_loss for p in fresh.points]


# --------------------------------------------------------------------------- killed processes

WORKERS = """
import json, sys
args = json.loads(sys.argv[1])
from search.driver import RunSettings, run_search
from einspace.errors import EinspaceError
settings = RunSettings(steps=1500, eval_every=100, batch_size=8, task_kwargs={"n_eval": 32})
if __name__ == "__main__":
    try:
        run_search(["dense", "monarch", "low_rank"], [16], settings=settings,
                   store=args["store"], sweep="kill", workers=2, checkpoint_every=200,
                   progress=False)
    except EinspaceError as err:
        print("ERROR " + str(err), flush=True)
        sys.exit(2)
"""
KILL_SETTINGS = {"steps": 1500, "eval_every": 100, "batch_size": 8, "task_kwargs": {"n_eval": 32}}


def _worker_pids(store: str, parent: int) -> dict[int, str]:
    """pid → run id of the running runs held by processes other than ``parent``."""
    try:
        with RunStore(store) as s:
            runs = s.runs(status="running")
            ready = {str(rid) for rid in runs["run_id"] if s.load_checkpoint(str(rid)) is not None}
    except Exception:  # the store may not exist yet
        return {}
    return {
        int(row["worker_pid"]): str(row["run_id"])
        for row in runs.to_dict("records")
        if int(row["worker_pid"]) != parent and str(row["run_id"]) in ready
    }


def _resume_and_check(store: str) -> None:
    """Rerun the sweep: every run finishes, with the curve of an uninterrupted run."""
    from search.driver import RunSettings, run_search
    from search.proxy import run_config

    result = run_search(
        ["dense", "monarch", "low_rank"],
        [16],
        settings=RunSettings(**KILL_SETTINGS),  # type: ignore[arg-type]
        store=store,
        sweep="kill",
        checkpoint_every=200,
        progress=False,
    )
    assert set(result.runs["status"]) == {"finished"} and len(result.runs) == 3
    with RunStore(store) as s:
        runs = s.runs()
        points = s.points()
    resumed = runs[runs["attempt"] > 1]
    assert len(resumed) >= 1
    for row in resumed.to_dict("records"):
        own = points[points["run_id"] == row["run_id"]]
        fresh = run_config(row["config"])
        assert own["eval_loss"].tolist() == [p.eval_loss for p in fresh.points]
        assert own["step"].tolist() == [p.step for p in fresh.points]


def test_killed_worker_is_named_and_its_run_resumes(store_url: str) -> None:
    RunStore(store_url).close()
    parent = _start(WORKERS, json.dumps({"store": store_url}))
    _poll(lambda: bool(_worker_pids(store_url, parent.pid)), "a worker's checkpoint")
    pid, rid = next(iter(_worker_pids(store_url, parent.pid).items()))
    os.kill(pid, signal.SIGKILL)
    out, _ = parent.communicate(timeout=300)
    assert parent.returncode == 2, out[-3000:]
    assert "Traceback" not in out
    message = next(line for line in out.splitlines() if line.startswith("ERROR "))
    assert f"(pid {pid}) was killed by signal SIGKILL while training" in message
    assert "run the same command again to resume it" in message
    assert "__main__" not in message
    # the other worker may have taken the run over already (its holder's pid is dead)
    assert _row(store_url, rid)["status"] in ("running", "finished")
    _resume_and_check(store_url)


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    store = str(tmp_path / "runs.sqlite")
    RunStore(store).close()
    parent = _start(WORKERS, json.dumps({"store": store}))
    _poll(lambda: bool(_worker_pids(store, parent.pid)), "a worker's checkpoint")
    workers = list(_worker_pids(store, parent.pid))
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=60)  # not communicate(): orphaned workers would hold its stdout

    def gone() -> bool:
        for pid in workers:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
                if stat.read().split(")")[-1].split()[0] != "Z":
                    return False
        return True

    _poll(gone, "the orphaned workers to exit", timeout=60)
    if parent.stdout is not None:
        parent.stdout.close()
    with RunStore(store) as s:
        assert (s.runs()["status"] == "running").sum() >= 1  # left for the next search
    _resume_and_check(store)
