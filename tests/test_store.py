"""Tests of search.store: the run store (claims, curves, checkpoints, endings, errors)."""

from __future__ import annotations

import math
import multiprocessing as mp
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import make_url

from einspace.errors import EinspaceError
from search.store import RunStore, run_id

CONTESTED = {"structure": "contested", "width": 1, "seed": 0}


def _configs(n: int) -> list[dict[str, Any]]:
    return [
        {"structure": f"s{i % 3}", "task": "mlp_regression", "width": 8 * (i + 1)} for i in range(n)
    ]


# --------------------------------------------------------------------------- workers
# Module-level so that "spawn" child processes can import them.


def _claim_log_and_die(path: str, config: dict[str, Any]) -> None:
    """A worker that claims a run, logs 3 points and a checkpoint, then dies unfinished."""
    store = RunStore(path)
    claim = store.claim(config, sweep="crash")
    assert claim is not None
    store.log_points(
        claim.run_id,
        [{"step": s, "compute": 1e3 * (s + 1), "train_loss": 2.0 - 0.1 * s} for s in range(3)],
    )
    store.save_checkpoint(claim.run_id, 2, b"weights@2")
    store.close()


def _race_worker(
    path: str,
    configs: list[dict[str, Any]],
    start: Any,
    done: Any,
    results: Any,
) -> None:
    """Claim the contested config and hold it, then claim, log and finish each config."""
    store = RunStore(path)
    start.wait()
    won_contested = store.claim(CONTESTED, sweep="race") is not None
    claimed: list[str] = []
    for config in configs:
        claim = store.claim(config, sweep="race")
        if claim is None:
            continue
        claimed.append(claim.run_id)
        store.log_points(claim.run_id, [{"step": 1, "compute": 10.0, "train_loss": 1.0}])
        store.finish(claim.run_id)
    results.put((won_contested, claimed))
    done.wait()  # stay alive until every worker is through, so held runs stay held
    store.close()


# --------------------------------------------------------------------------- round trip


def test_round_trip_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    config = {"structure": "btt", "task": "digits", "width": 64, "seed": 3, "lr": 1e-3}
    with RunStore(path) as store:
        claim = store.claim(config, sweep="sweep-a")
        assert claim is not None
        assert claim.run_id == run_id(config)
        assert (claim.attempt, claim.previous_status, claim.last_step) == (1, None, None)
        assert claim.config == config
        rows = [
            {"step": s, "compute": 6e6 * s, "train_loss": 3.0 / (s + 1), "eval_loss": 3.1 / (s + 1)}
            for s in range(5)
        ]
        assert store.log_points(claim.run_id, rows) == 5
        store.save_checkpoint(claim.run_id, 4, b"\x00state\xff")
        assert store.load_checkpoint(claim.run_id) == (4, b"\x00state\xff")
        store.finish(claim.run_id, eval_loss=0.5)

    with RunStore(str(path)) as store:
        runs = store.runs()
        assert len(runs) == 1
        run = runs.iloc[0]
        assert run["run_id"] == run_id(config)
        assert run["config"] == config
        assert (run["sweep"], run["structure"], run["task"]) == ("sweep-a", "btt", "digits")
        assert (run["width"], run["seed"], run["last_step"]) == (64, 3, 4)
        assert run["status"] == "finished"
        assert run["final_train_loss"] == pytest.approx(3.0 / 5)  # from the last point
        assert run["final_eval_loss"] == 0.5  # given explicitly
        assert run["worker_pid"] > 0
        points = store.points()
        assert points["step"].tolist() == [0, 1, 2, 3, 4]
        assert points["compute"].tolist() == [6e6 * s for s in range(5)]
        assert points["train_loss"].tolist() == [3.0 / (s + 1) for s in range(5)]
        assert set(points["structure"]) == {"btt"}
        assert set(points["status"]) == {"finished"}
        assert store.load_checkpoint(claim.run_id) is None  # dropped on finish
    with sqlite3.connect(path) as conn:  # concurrent workers need WAL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_relogging_a_step_replaces_it(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        store.log_points(rid, [{"step": 0, "compute": 1.0, "train_loss": 5.0}])
        store.log_points(
            rid, [{"step": 0, "compute": 1.0, "train_loss": 4.0}, {"step": 1, "compute": 2.0}]
        )
        points = store.points()
        assert points["step"].tolist() == [0, 1]
        assert points["train_loss"].iloc[0] == 4.0
        assert math.isnan(points["train_loss"].iloc[1])


def test_numpy_scalars_and_key_order_give_the_same_run() -> None:
    a = {"width": 64, "structure": "btt", "lr": 0.001}
    b = {"lr": 0.001, "structure": "btt", "width": np.int64(64)}
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id({**a, "width": 65})
    assert run_id(a) != run_id({**a, "width": 64.0})
    assert len(run_id(a)) == 16


# --------------------------------------------------------------------------- claims


def test_finished_run_is_not_claimed_again_and_keeps_its_points(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    config = {"structure": "dense", "width": 16}
    with RunStore(path) as store:
        claim = store.claim(config, sweep="s")
        assert claim is not None
        assert store.claim(config) is None  # held by this live process
        store.log_points(claim.run_id, [{"step": 7, "compute": 70.0, "eval_loss": 0.3}])
        store.finish(claim.run_id)
    with RunStore(path, lease_s=0.0) as other:  # even with no lease, finished is final
        assert other.claim(config, sweep="s") is None
        with pytest.raises(EinspaceError, match="'finished'"):
            other.log_points(claim.run_id, [{"step": 7, "compute": 70.0, "eval_loss": 9.9}])
        with pytest.raises(EinspaceError, match="'finished'"):
            other.finish(claim.run_id)
        assert other.points()["eval_loss"].tolist() == [0.3]
        assert other.runs()["attempt"].tolist() == [1]


def test_pending_run_is_claimed(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.register({"width": 8}, sweep="queue")
        assert store.register({"width": 8}, sweep="queue") == rid
        assert store.runs()["status"].tolist() == ["pending"]
        claim = store.claim({"width": 8})
        assert claim is not None
        assert (claim.previous_status, claim.attempt, claim.sweep) == ("pending", 1, "queue")


def test_stale_run_of_a_dead_worker_is_reclaimed_with_its_points(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sqlite")
    config = {"structure": "monarch", "width": 32, "seed": 1}
    RunStore(path).close()
    worker = mp.get_context("spawn").Process(target=_claim_log_and_die, args=(path, config))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0

    with RunStore(path) as store:  # default lease: the heartbeat is fresh, the pid is dead
        [held] = store.runs().to_dict("records")
        assert held["status"] == "running"
        assert held["worker_pid"] == worker.pid
        claim = store.claim(config)
        assert claim is not None
        assert claim.resumed
        assert (claim.attempt, claim.previous_status, claim.last_step) == (2, "running", 2)
        assert claim.sweep == "crash"
        assert store.load_checkpoint(claim.run_id) == (2, b"weights@2")
        assert store.points()["step"].tolist() == [0, 1, 2]
        store.log_points(claim.run_id, [{"step": 3, "compute": 4e3, "train_loss": 1.7}])
        store.finish(claim.run_id)
        assert store.points()["train_loss"].tolist() == pytest.approx([2.0, 1.9, 1.8, 1.7])
        assert store.claim(config) is None


def test_expired_heartbeat_lets_another_worker_take_over(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with RunStore(path, lease_s=3600.0) as patient, RunStore(path, lease_s=0.0) as eager:
        claim = patient.claim({"width": 8})
        assert claim is not None
        assert patient.claim({"width": 8}) is None  # live pid, fresh heartbeat
        time.sleep(0.01)
        taken = eager.claim({"width": 8})
        assert taken is not None
        assert (taken.attempt, taken.previous_status) == (2, "running")


def test_heartbeat_refreshes_the_heartbeat_time(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        before = store.runs()["heartbeat_at"].iloc[0]
        time.sleep(0.01)
        store.heartbeat(rid)
        assert store.runs()["heartbeat_at"].iloc[0] > before
        store.finish(rid)
        with pytest.raises(EinspaceError, match="cannot heartbeat"):
            store.heartbeat(rid)


def test_concurrent_processes_claim_each_run_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "race.sqlite")
    configs = _configs(12)
    RunStore(path).close()
    ctx = mp.get_context("spawn")
    n_workers = 3
    start, done = ctx.Barrier(n_workers), ctx.Barrier(n_workers)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_race_worker, args=(path, configs, start, done, results))
        for _ in range(n_workers)
    ]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(60)
        assert w.exitcode == 0

    assert sum(won for won, _ in outcomes) == 1  # exactly one took the contested run
    claimed = [rid for _, ids in outcomes for rid in ids]
    assert sorted(claimed) == sorted(run_id(c) for c in configs)  # each once, none twice
    with RunStore(path) as store:
        runs = store.runs(sweep="race").set_index("run_id")
        assert len(runs) == len(configs) + 1
        assert runs.loc[run_id(CONTESTED), "status"] == "running"
        finished = runs.drop(index=run_id(CONTESTED))
        assert set(finished["status"]) == {"finished"}
        assert set(finished["attempt"]) == {1}
        assert len(store.points()) == len(configs)


# --------------------------------------------------------------------------- endings


def test_diverged_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    config = {"structure": "kron", "width": 16, "lr": 3.0}
    with RunStore(path) as store:
        rid = store.claim(config).run_id  # type: ignore[union-attr]
        store.log_points(
            rid, [{"step": s, "compute": 1.0 + s, "train_loss": 1.0 / (s + 1)} for s in range(5)]
        )
        store.save_checkpoint(rid, 4, b"x")
        with pytest.raises(EinspaceError, match="mark_diverged"):
            store.log_points(rid, [{"step": 5, "compute": 6.0, "train_loss": math.nan}])
        store.mark_diverged(rid, 3, "train loss became nan")
    with RunStore(path, lease_s=0.0) as store:
        [run] = store.runs().to_dict("records")
        assert run["status"] == "diverged"
        assert run["last_step"] == 3
        assert "train loss became nan" in run["error"]
        assert store.points()["step"].tolist() == [0, 1, 2]  # the last good points
        assert store.load_checkpoint(rid) is None
        assert store.claim(config) is None
        assert store.runs(status="diverged")["run_id"].tolist() == [rid]


def test_failed_run_is_not_claimed_again(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite", lease_s=0.0) as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        store.log_points(rid, [{"step": 0, "compute": 1.0, "train_loss": 2.0}])
        store.mark_failed(rid, ValueError("shape mismatch"))
        assert store.claim({"width": 8}) is None
        [run] = store.runs().to_dict("records")
        assert (run["status"], run["error"]) == ("failed", "ValueError: shape mismatch")
        assert len(store.points()) == 1


def test_summary_and_point_filters(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        ids = []
        for config in _configs(4):
            rid = store.claim(config, sweep="s").run_id  # type: ignore[union-attr]
            store.log_points(rid, [{"step": 0, "compute": 1.0}, {"step": 1, "compute": 2.0}])
            ids.append(rid)
        store.finish(ids[0])
        store.mark_failed(ids[1], "boom")
        store.register({"width": 1})
        table = store.summary()
        counts = table.loc["s", ["running", "finished", "failed", "total", "points"]]
        assert list(counts) == [
            2,
            1,
            1,
            4,
            8,
        ]
        assert table.loc["", "pending"] == 1
        assert set(store.points(run_ids=ids[:2])["run_id"]) == set(ids[:2])
        assert len(store.points(sweep="nope")) == 0


# --------------------------------------------------------------------------- bad input


def test_corrupt_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    junk = np.random.default_rng(0).bytes(4096)
    path.write_bytes(junk)
    with pytest.raises(EinspaceError, match="is not an SQLite database"):
        RunStore(path)
    assert path.read_bytes() == junk


def test_truncated_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "half.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + np.random.default_rng(1).bytes(2000))
    with pytest.raises(EinspaceError, match=r"half\.sqlite"):
        RunStore(path)


def test_foreign_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(EinspaceError, match=r"not an einspace run store.*'users'"):
        RunStore(path)
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert tables == ["users"]
    assert mode == "delete"  # not switched to WAL either


def test_foreign_table_named_meta_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (a INTEGER)")
    with pytest.raises(EinspaceError, match="not an einspace run store"):
        RunStore(path)


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    RunStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(EinspaceError, match="schema version '999'"):
        RunStore(path)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("://no-dialect", "cannot parse"),
        ("postgresql+psycopg://user@host:notaport/db", "cannot parse"),
        ("nosuchdialect://host/db", "unknown database dialect"),
        ("postgresql+nosuchdriver://user@host/db", "unknown database dialect"),
    ],
)
def test_malformed_url_is_refused(url: str, match: str) -> None:
    with pytest.raises(EinspaceError, match=match) as info:
        RunStore(url)
    message = str(info.value)
    assert "sqlite" in message  # shows a valid example
    assert url.split("://")[0] in message  # names what was given


def test_folder_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EinspaceError, match="is a folder"):
        RunStore(tmp_path)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"step": 1, "compute": 1.0, "eval_los": 0.1}, "did you mean 'eval_loss'"),
        ({"step": -1, "compute": 1.0}, "step of point 0 = -1 must be an integer ≥ 0"),
        ({"step": 1.5, "compute": 1.0}, "step of point 0 = 1.5 must be an integer"),
        ({"compute": 1.0}, "needs 'step'"),
        ({"step": 1, "compute": math.inf}, "compute = inf"),
        ({"step": 1, "compute": 1.0, "train_loss": "low"}, "'low'"),
    ],
)
def test_bad_points_are_refused(tmp_path: Path, row: dict[str, Any], match: str) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        with pytest.raises(EinspaceError, match=match):
            store.log_points(rid, [row])
        assert len(store.points()) == 0


def test_bad_checkpoint_keep_and_steps(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        with pytest.raises(EinspaceError, match="keep = 0 must be an integer ≥ 1; the nearest"):
            store.save_checkpoint(rid, 1, b"x", keep=0)
        with pytest.raises(EinspaceError, match="step = -2 must be an integer ≥ 0"):
            store.save_checkpoint(rid, -2, b"x")
        store.save_checkpoint(rid, 3.0, b"at 3", keep=1.0)  # type: ignore[arg-type]
        assert store.load_checkpoint(rid) == (3, b"at 3")


def test_unknown_run_and_bad_config(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        with pytest.raises(EinspaceError, match=f"no run with id 'nope'.*{rid}"):
            store.load_checkpoint("nope")
        with pytest.raises(EinspaceError, match="JSON-serializable"):
            store.claim({"width": 8, "fn": object()})
        with pytest.raises(EinspaceError, match="JSON-serializable"):
            store.claim({"lr": math.nan})
        with pytest.raises(EinspaceError, match=r"config\['width'\] must be an integer"):
            store.claim({"width": "wide"})
        with pytest.raises(EinspaceError, match="unknown status 'done'"):
            store.runs(status="done")


def test_importing_search_does_not_import_torch() -> None:
    code = "import sys, search; print('torch' in sys.modules, hasattr(search, 'RunStore'))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]


# --------------------------------------------------------------------------- fencing


def test_a_taken_over_run_refuses_every_write_of_its_old_owner(tmp_path: Path) -> None:
    from search.store import RunTakenOver

    path = tmp_path / "r.sqlite"
    config = {"structure": "btt", "width": 8}
    with RunStore(path, lease_s=3600.0) as old, RunStore(path, lease_s=0.0) as new:
        first = old.claim(config)
        assert first is not None and first.attempt == 1
        rid = first.run_id
        old.log_points(rid, [{"step": s, "compute": 1.0 + s, "train_loss": 1.0} for s in range(3)])
        old.save_checkpoint(rid, 1, b"at 1")
        time.sleep(0.01)
        second = new.claim(config)
        assert second is not None and (second.attempt, second.resumed) == (2, True)
        # the old owner's point after its checkpoint is gone; the checkpoint is kept
        assert new.points()["step"].tolist() == [0, 1] and second.last_step == 1
        assert new.load_checkpoint(rid) == (1, b"at 1")
        writes = [
            lambda: old.heartbeat(rid),
            lambda: old.log_points(rid, [{"step": 2, "compute": 3.0, "train_loss": 9.0}]),
            lambda: old.save_checkpoint(rid, 2, b"stale"),
            lambda: old.finish(rid),
            lambda: old.mark_diverged(rid, 2),
            lambda: old.mark_failed(rid, "stale"),
            lambda: new.heartbeat(rid, attempt=1),  # an explicit old token, any store
        ]
        for write in writes:
            with pytest.raises(RunTakenOver, match=r"taken over by another worker at .*stops"):
                write()
        assert new.points()["step"].tolist() == [0, 1]
        assert new.load_checkpoint(rid) == (1, b"at 1")
        new.log_points(rid, [{"step": 2, "compute": 3.0, "train_loss": 0.5}])
        new.finish(rid)
        row = new.runs().iloc[0]
        assert (row["status"], row["attempt"], row["final_train_loss"]) == ("finished", 2, 0.5)
        with pytest.raises(RunTakenOver):
            old.finish(rid)


def test_a_bad_attempt_token_is_refused(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        with pytest.raises(EinspaceError, match="attempt must be the positive integer"):
            store.heartbeat(rid, attempt=0)


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    with RunStore(path) as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        store.finish(rid)
    _downgrade(path, "1")
    with RunStore(path) as store:
        assert store.runs()["status"].tolist() == ["finished"]
        assert store.claim({"width": 16}) is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "3",
        )


_V2_LACKS = {
    "points": ("tokens", "lr", "extra"),
    "runs": ("params", "macs_per_token"),
    "checkpoints": ("pinned",),
}


def _downgrade(path: Path, version: str) -> None:
    """Make the store at ``path`` what schema ``version`` wrote (drop the later columns)."""
    with sqlite3.connect(path) as conn:
        for table, columns in _V2_LACKS.items():
            for column in columns:
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        if version == "1":
            conn.execute("ALTER TABLE runs DROP COLUMN claimed_at")
        conn.execute(f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'")


def test_a_version_2_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    with RunStore(path) as store:
        rid = store.claim({"width": 8, "steps": 4}).run_id  # type: ignore[union-attr]
        store.log_points(rid, [{"step": 0, "compute": 0.0}, {"step": 4, "compute": 8.0}])
        store.finish(rid)
        running = store.claim({"width": 16}).run_id  # type: ignore[union-attr]
        store.save_checkpoint(running, 3, b"state")
    _downgrade(path, "2")
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(points)")}
        assert "lr" not in columns and "eval_loss" in columns
    with RunStore(path) as store:
        points = store.points(run_ids=[rid])
        assert points["step"].tolist() == [0, 4]
        assert points["lr"].isna().all() and points["tokens"].isna().all()
        assert points["extra"].tolist() == [None, None]
        # a run logged without a schedule: whether a point ends one is unknown
        assert points["final"].isna().all()
        assert store.load_checkpoint(running) == (3, b"state")  # an old checkpoint, unpinned
        store.save_checkpoint(running, 5, b"newer")
        assert store.load_checkpoint(running, step=3) is None  # dropped by keep=1
        store.log_points(running, [{"step": 1, "compute": 1.0, "lr": 0.5}], params=7)
        assert store.points(run_ids=[running])["lr"].tolist() == [0.5]
        assert store.runs()["params"].tolist()[1] == 7
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "3",
        )


# --------------------------------------------------------------------------- faults


def test_a_read_only_store_names_the_store_the_operation_and_the_fix(tmp_path: Path) -> None:
    from sqlalchemy import event

    with RunStore(tmp_path / "r.sqlite") as store:
        store.claim({"width": 8})

        @event.listens_for(store._engine, "connect")
        def _read_only(dbapi_connection: Any, record: Any) -> None:  # as on a read-only mount
            dbapi_connection.execute("PRAGMA query_only = ON")

        store._engine.dispose()
        assert len(store.runs()) == 1  # reading works
        with pytest.raises(EinspaceError, match=r"r\.sqlite: cannot claim a run: it is read-only"):
            store.claim({"width": 16})


def test_a_full_disk_names_the_store_the_operation_and_the_fix(tmp_path: Path) -> None:
    from sqlalchemy import event

    with RunStore(tmp_path / "r.sqlite") as store:
        rid = store.claim({"width": 8}).run_id  # type: ignore[union-attr]
        with sqlite3.connect(tmp_path / "r.sqlite") as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]

        @event.listens_for(store._engine, "connect")
        def _full(dbapi_connection: Any, record: Any) -> None:  # the file may not grow
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        store._engine.dispose()
        with pytest.raises(EinspaceError, match=r"cannot save a checkpoint: the disk is full"):
            store.save_checkpoint(rid, 1, bytes(1 << 20))
        assert store.load_checkpoint(rid) is None  # nothing half-written


def test_an_unreachable_server_names_the_store_and_the_fix() -> None:
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://einspace:secret@127.0.0.1:{port}/runs"
    with pytest.raises(EinspaceError, match="unreachable or refused the connection") as info:
        RunStore(url)
    assert f"127.0.0.1:{port}/runs" in str(info.value) and "secret" not in str(info.value)
    assert "open or create its tables" in str(info.value)


# --------------------------------------------------------------------------- first open


def _open_and_claim(url: str, go: Any, results: Any) -> None:
    go.wait()
    try:
        with RunStore(url) as store:
            claim = store.claim(CONTESTED)
            results.put(("ok", claim is not None))
    except BaseException as err:
        results.put(("error", repr(err)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_many_processes_create_a_fresh_store_at_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ctx = mp.get_context("spawn")
    for rep in range(3):
        if backend == "sqlite":
            url = str(tmp_path / f"fresh{rep}.sqlite")
        else:
            url = str(request.getfixturevalue("postgres_server")())
        go, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_and_claim, args=(url, go, results)) for _ in range(6)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
        assert [kind for kind, _ in outcomes] == ["ok"] * 6, outcomes
        assert sum(won for _, won in outcomes) == 1  # exactly one claimed the run


def test_sqlite_uri_urls_keep_their_file_prefix_and_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///file:…?uri=true`` opens the file the URI names (relative to the working
    folder, like a plain path), and ``mode=ro`` reads it but refuses writes by name."""
    monkeypatch.chdir(tmp_path)
    with RunStore("sqlite:///file:runs.sqlite?uri=true") as store:
        rid = store.register({"width": 8})
        url = make_url(store.url)  # rendered with ':' escaped as %3A; parsed back whole
        assert url.database == f"file:{tmp_path / 'runs.sqlite'}" and url.query == {"uri": "true"}
    assert (tmp_path / "runs.sqlite").is_file() and not (tmp_path / "file:runs.sqlite").exists()
    with RunStore("sqlite:///file:runs.sqlite?mode=ro&uri=true") as store:
        assert list(store.runs()["run_id"]) == [rid]
        with pytest.raises(EinspaceError, match="read-only") as info:
            store.register({"width": 16})
        assert "runs.sqlite" in str(info.value)
    with pytest.raises(EinspaceError, match="is not an SQLite URI; expected 'sqlite:///file:r"):
        RunStore("sqlite:///r.sqlite?uri=true")
