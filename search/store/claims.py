"""Claims and leases: taking a run for a worker (:func:`take_run`, which hands back a
:class:`Claim`), when a running run's lease has lapsed (:func:`is_stale`, :func:`pid_alive`),
the row a new run starts with (:func:`new_run_row`), and the refusal a worker that lost its
run gets (:class:`RunTakenOver`). :class:`NotADatabase` (a file SQLite refuses, raised by
:mod:`~search.store.engine` while a store is opened) lives here too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exc, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from einspace.errors import EinspaceError
from search.store.identity import label_columns
from search.store.schema import CHECKPOINTS, DONE_STATUSES, POINTS, RUNS

__all__ = [
    "Claim",
    "NotADatabase",
    "RunTakenOver",
    "is_stale",
    "new_run_row",
    "pid_alive",
    "take_run",
]


class RunTakenOver(EinspaceError):
    """A write of a run by a worker that lost it: its lease lapsed and another worker
    claimed the run (a newer attempt). The write is refused; the worker should stop that
    run and go on (:func:`search.proxy.run_config` does).

    Attributes:
        run_id: the run.
        attempt: the attempt (fencing token) this worker held.
        current: the attempt that holds the run now.
    """

    def __init__(self, message: str, run_id: str, attempt: int, current: int) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.attempt = attempt
        self.current = current


class NotADatabase(EinspaceError):
    """SQLite refused the file as a database (described once the engine is disposed)."""


@dataclass(frozen=True)
class Claim:
    """A run taken by this process with :meth:`RunStore.claim`.

    Attributes:
        run_id: the run's id (:func:`run_id` of its config).
        config: the config as stored (canonical JSON parsed back).
        sweep: the sweep the run was registered under.
        attempt: 1 for the first claim of a run, 2 for the next, and so on; the claim's
            fencing token (writes of an attempt that is no longer the run's are refused).
        previous_status: ``None`` when the run was new, ``"pending"``, or ``"running"``
            when a stale run of a dead worker was taken over.
        last_step: the last step logged before this claim, or ``None``; a run taken over
            keeps its points up to its newest checkpoint, and
            :meth:`RunStore.load_checkpoint` gives where to resume.

    Examples:
        >>> c = Claim("74cb99c0e5b9dbf7", {"width": 64}, None, 2, "running", 300)
        >>> c.resumed
        True
    """

    run_id: str
    config: dict[str, Any]
    sweep: str | None
    attempt: int
    previous_status: str | None
    last_step: int | None

    @property
    def resumed(self) -> bool:
        """Whether this claim took over a run another worker had started."""
        return self.previous_status == "running"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (always True on Windows).

    Examples:
        >>> pid_alive(os.getpid()), pid_alive(0)
        (True, False)
    """
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it; rely on the lease there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    try:  # a zombie has exited (nobody reaped it yet)
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[:1] != [b"Z"]
    except OSError:
        return True


def new_run_row(
    rid: str,
    canonical: str,
    config: Mapping[str, Any],
    sweep: str | None,
    status: str,
    host: str,
) -> dict[str, Any]:
    """The ``runs`` row of a new run: ``pending`` (registered), or ``running`` (claimed by
    this process on ``host``, attempt 1).

    Examples:
        >>> row = new_run_row("r", '{"width":8}', {"width": 8}, "s", "running", "here")
        >>> row["status"], row["attempt"], row["width"], row["worker_pid"] == os.getpid()
        ('running', 1, 8, True)
        >>> new_run_row("r", "{}", {}, 3, "pending", "here")
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: sweep must be a string or None; got 3
    """
    if sweep is not None and not isinstance(sweep, str):
        raise EinspaceError(f"sweep must be a string or None; got {sweep!r}")
    now = time.time()
    row: dict[str, Any] = {
        "run_id": rid,
        "config": canonical,
        "sweep": sweep,
        **label_columns(config),
        "status": status,
        "attempt": 0,
        "created_at": now,
        "updated_at": now,
    }
    if status == "running":
        row.update(
            attempt=1,
            worker_host=host,
            worker_pid=os.getpid(),
            heartbeat_at=now,
            claimed_at=now,
        )
    return row


def take_run(
    conn: Connection,
    stored: dict[str, Any],
    sweep: str | None,
    new_row: dict[str, Any],
    *,
    host: str,
    lease_s: float,
) -> Claim | None:
    """In the write transaction ``conn``: take the run of ``new_row`` for this process if it
    is new, pending, or running but stale (:func:`is_stale`), else ``None``.

    A new run is inserted as ``new_row`` (attempt 1). Otherwise the run's attempt goes up by
    one in a compare-and-swap on its attempt and status, so of several processes exactly one
    takes it; a take-over keeps the points its newest checkpoint covers and drops the rest.
    ``stored`` is the config as the claim reports it.
    """
    rid = new_row["run_id"]
    query = select(RUNS).where(RUNS.c.run_id == rid).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(RUNS).values(**new_row))
            return Claim(rid, stored, sweep, 1, None, None)
        except exc.IntegrityError:  # inserted concurrently (non-SQLite backends)
            row = conn.execute(query).mappings().one()
    if row["status"] in DONE_STATUSES:
        return None
    if row["status"] == "running" and not is_stale(row, host, lease_s):
        return None
    last_step = row["last_step"]
    if row["status"] == "running":  # a take-over: keep what the checkpoint covers
        last_step = _drop_uncheckpointed_points(conn, rid)
    now = time.time()
    chosen = row["sweep"] if row["sweep"] is not None else sweep
    result = conn.execute(
        update(RUNS)
        .where(
            RUNS.c.run_id == rid,
            RUNS.c.attempt == row["attempt"],
            RUNS.c.status == row["status"],
        )
        .values(
            status="running",
            attempt=row["attempt"] + 1,
            worker_host=host,
            worker_pid=os.getpid(),
            heartbeat_at=now,
            claimed_at=now,
            updated_at=now,
            last_step=last_step,
            sweep=chosen,
        )
    )
    if result.rowcount != 1:
        return None
    return Claim(rid, stored, chosen, row["attempt"] + 1, row["status"], last_step)


def _drop_uncheckpointed_points(conn: Connection, rid: str) -> int | None:
    """Delete the run's points after its newest checkpoint (all of them without one);
    return the last step left."""
    kept = conn.execute(
        select(func.max(CHECKPOINTS.c.step)).where(CHECKPOINTS.c.run_id == rid)
    ).scalar()
    stale = POINTS.c.run_id == rid
    if kept is not None:
        stale = stale & (POINTS.c.step > kept)
    conn.execute(delete(POINTS).where(stale))
    last: int | None = conn.execute(
        select(func.max(POINTS.c.step)).where(POINTS.c.run_id == rid)
    ).scalar()
    return last


def is_stale(row: RowMapping, host: str, lease_s: float) -> bool:
    """Whether a running run's lease has lapsed: its heartbeat is older than ``lease_s``
    seconds, or its worker's pid is dead on this ``host``.

    Examples:
        >>> fresh = {"heartbeat_at": time.time(), "worker_host": "h", "worker_pid": os.getpid()}
        >>> is_stale(fresh, "h", 60.0), is_stale(fresh | {"heartbeat_at": 0.0}, "h", 60.0)
        (False, True)
    """
    heartbeat = row["heartbeat_at"]
    if heartbeat is None or time.time() - heartbeat > lease_s:
        return True
    pid = row["worker_pid"]
    return row["worker_host"] == host and pid is not None and not pid_alive(pid)
