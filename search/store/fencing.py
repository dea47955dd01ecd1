"""Fenced writes: every write of a run's state names the attempt (fencing token) of the
claim it comes from, and is refused with :class:`~search.store.claims.RunTakenOver` when,
checked in the same transaction under the run's row lock, that attempt is no longer the
run's (its worker paused past the lease and another worker took the run over).

:func:`held_run` locks and checks the run's row; :func:`fenced` gives the WHERE clauses that
make the write itself conditional on the token as well.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, RowMapping

from einspace.errors import EinspaceError, suggest
from search.store.claims import RunTakenOver
from search.store.schema import RUNS

__all__ = ["check_attempt", "fenced", "held_run", "run_row", "taken_over"]


def check_attempt(attempt: object) -> int:
    """``attempt`` if it is a claim's attempt (an integer >= 1), else an error naming it.

    Examples:
        >>> check_attempt(2)
        2
        >>> check_attempt(0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einspace.errors.EinspaceError: attempt must be the positive integer a claim ...; got 0
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise EinspaceError(
            f"attempt must be the positive integer a claim returned (Claim.attempt); "
            f"got {attempt!r}"
        )
    return attempt


def fenced(rid: str, token: int | None) -> list[Any]:
    """WHERE clauses of a run-state UPDATE held by ``token`` (``None``: unfenced).

    Examples:
        >>> [str(c) for c in fenced("r", 3)]
        ['runs.run_id = :run_id_1', 'runs.attempt = :attempt_1']
    """
    where = [RUNS.c.run_id == rid]
    if token is not None:
        where.append(RUNS.c.attempt == token)
    return where


def run_row(conn: Connection, rid: str, url: str, *, lock: bool = False) -> RowMapping:
    """The ``runs`` row of ``rid`` (locked ``FOR UPDATE`` with ``lock``); an unknown id is
    an error naming the store ``url`` and the nearest stored ids."""
    query = select(RUNS).where(RUNS.c.run_id == rid)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise EinspaceError(
            f"no run with id {rid!r} in {url}; ids are run_id(config), e.g. "
            f"{_nearest_ids(conn, rid)}"
        )
    return row


def held_run(
    conn: Connection,
    rid: str,
    token: int | None,
    action: str,
    *,
    url: str,
    lease_s: float,
    running: bool = True,
) -> RowMapping:
    """The run's row, locked, checked to be still held by ``token`` and (with ``running``)
    to be running; ``action`` words the refusal (``"cannot {action} run …"``)."""
    row = run_row(conn, rid, url, lock=True)
    if token is not None and row["attempt"] != token:
        raise taken_over(row, token, action, lease_s)
    if running and row["status"] != "running":
        raise EinspaceError(
            f"cannot {action} run {rid!r}: its status is {row['status']!r}, expected "
            f"'running' (claim it first; finished, diverged and failed runs are final)"
        )
    return row


def taken_over(row: RowMapping, token: int, action: str, lease_s: float) -> RunTakenOver:
    """The refusal of attempt ``token``'s write to the run of ``row``, now another attempt's.

    Examples:
        >>> row = {"run_id": "r", "claimed_at": 0.0, "updated_at": 0.0, "attempt": 3,
        ...        "worker_host": "h", "worker_pid": 7, "status": "running"}
        >>> print(taken_over(row, 2, "finish", 120.0))  # doctest: +NORMALIZE_WHITESPACE
        run 'r' was taken over by another worker at 1970-01-01 00:00:00 UTC (attempt 3,
        h:7, now 'running') after this worker's attempt 2 missed its 120 s lease; this
        worker stops (cannot finish it) and leaves the run to its new owner
    """
    when = row["claimed_at"] if row["claimed_at"] is not None else row["updated_at"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(when)))
    return RunTakenOver(
        f"run {row['run_id']!r} was taken over by another worker at {stamp} (attempt "
        f"{row['attempt']}, {row['worker_host']}:{row['worker_pid']}, now "
        f"{row['status']!r}) after this worker's attempt {token} missed its "
        f"{lease_s:g} s lease; this worker stops (cannot {action} it) and leaves "
        f"the run to its new owner",
        str(row["run_id"]),
        token,
        int(row["attempt"]),
    )


def _nearest_ids(conn: Connection, rid: str) -> str:
    ids = [str(r) for r in conn.execute(select(RUNS.c.run_id).limit(1000)).scalars()]
    if not ids:
        return "none are stored yet"
    return suggest(str(rid), ids[:20]) if len(ids) > 20 else suggest(str(rid), ids)
