"""The run store: claims and leases of runs, their logged curves, checkpoints and endings.

See :mod:`search.store` for the tables and how claims stay atomic across processes.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import delete, exc, func, insert, inspect, select, text, update
from sqlalchemy.engine import Connection, RowMapping

from einspace.errors import EinspaceError, suggest
from search.store.claims import Claim, RunTakenOver, _NotADatabase, _pid_alive
from search.store.engine import (
    READ_ONLY,
    describe_error,
    enable_wal,
    foreign_file_error,
    make_engine,
    resolve_url,
    transient_error,
)
from search.store.identity import _hash, _labels, canonical_config
from search.store.queries import chunks, points_frame, runs_frame, summary_frame
from search.store.schema import (
    _APPLICATION,
    _DONE,
    SCHEMA_VERSION,
    TABLES,
    _checkpoints,
    _meta,
    _metadata,
    _points,
    _read_meta,
    _runs,
    upgrade_schema,
)
from search.store.validation import check_loss, check_point, check_step

if TYPE_CHECKING:  # pandas is imported where DataFrames are made: workers do not need it
    import pandas as pd

__all__ = ["Claim", "RunStore", "RunTakenOver"]

_SCHEMA_LOCK: Final = 0x65696E73  # PostgreSQL advisory lock key of schema creation ("eins")
_INIT_TRIES: Final = 8


# --------------------------------------------------------------------------- the store


class RunStore:
    """A database of proxy runs, their curves and checkpoints (see the module docs).

    Args:
        url_or_path: a file path (an SQLite database, created with its parent folders if
            absent) or any SQLAlchemy URL, e.g. ``postgresql+psycopg://u:p@host/db``.
            ``"sqlite://"`` is a private in-memory store.
        lease_s: a running run whose heartbeat is older than this many seconds counts as
            abandoned and may be claimed again.
        busy_timeout_s: how long an SQLite writer waits for the lock before giving up.

    Raises:
        EinspaceError: a malformed URL, an unknown dialect or missing driver, a file
            that is not SQLite, a database that is not an einspace run store, or a store
            of another schema version.

    Examples:
        >>> store = RunStore("sqlite://")
        >>> claim = store.claim({"structure": "btt", "width": 32, "seed": 0}, sweep="demo")
        >>> claim.attempt, claim.previous_status
        (1, None)
        >>> store.log_points(claim.run_id, [{"step": 0, "compute": 0.0, "train_loss": 2.3},
        ...                                 {"step": 10, "compute": 6e6, "train_loss": 1.1}])
        2
        >>> store.finish(claim.run_id)
        >>> store.claim({"structure": "btt", "width": 32, "seed": 0}) is None
        True
        >>> store.runs()[["structure", "width", "status", "last_step", "final_train_loss"]]
          structure  width    status  last_step  final_train_loss
        0       btt     32  finished         10               1.1
        >>> store.close()
    """

    def __init__(
        self,
        url_or_path: str | os.PathLike[str] = "einspace-runs.sqlite",
        *,
        lease_s: float = 120.0,
        busy_timeout_s: float = 60.0,
    ) -> None:
        if not (lease_s >= 0 and math.isfinite(lease_s)):
            raise EinspaceError(f"lease_s must be a finite number >= 0; got {lease_s!r}")
        if not (busy_timeout_s >= 0 and math.isfinite(busy_timeout_s)):
            raise EinspaceError(
                f"busy_timeout_s must be a finite number >= 0; got {busy_timeout_s!r}"
            )
        self.lease_s = float(lease_s)
        self._host = socket.gethostname()
        self._tokens: dict[str, int] = {}  # run id → attempt this store claimed
        self._url = resolve_url(url_or_path)
        self._engine = make_engine(self._url, busy_timeout_s, idle_timeout_s=self.lease_s / 2)
        try:
            self._init_schema()
        except _NotADatabase as err:
            self._engine.dispose()  # no SQLite lock of ours is left on the file to lose
            raise foreign_file_error(str(self._url.database), str(err)) from None
        except BaseException:
            self._engine.dispose()
            raise

    # ---------------------------------------------------------------- plumbing

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"RunStore({self.url!r}, lease_s={self.lease_s!r})"

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _write(self, op: str) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite) for ``op`` (words for errors);
        database and OS errors become an :class:`EinspaceError` naming the store and ``op``."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except (exc.SQLAlchemyError, OSError) as err:
            raise self._database_error(err, op) from None

    @contextmanager
    def _read(self, op: str) -> Iterator[Connection]:
        """A read-only transaction (deferred ``BEGIN`` on SQLite); errors as in :meth:`_write`."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except (exc.SQLAlchemyError, OSError) as err:
            raise self._database_error(err, op) from None

    def _database_error(self, err: BaseException, op: str) -> EinspaceError:
        """What went wrong with the store, during which operation, and what to do."""
        return describe_error(self.url, err, op, remote=self._remote())

    def _remote(self) -> bool:
        return self._engine.dialect.name != "sqlite"

    def _init_schema(self) -> None:
        """Create the tables in an empty database, or check an existing run store.

        Safe when many processes open a new database at once: the check and the create
        run in one transaction under a lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL
        transaction-scoped advisory lock), and a lost race (a busy or serialization error,
        a unique violation of a concurrent ``CREATE``) is retried with backoff.
        """
        for attempt in range(_INIT_TRIES):
            try:
                with self._engine.begin() as conn:
                    names, meta = self._create_or_read_schema(conn)
                break
            except (exc.SQLAlchemyError, OSError) as err:
                if attempt + 1 == _INIT_TRIES or not transient_error(err):
                    raise self._database_error(err, "open or create its tables") from None
                time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
        if meta.get("application") != _APPLICATION:
            raise EinspaceError(
                f"{self.url} is a database but not an einspace run store: it has tables "
                f"{sorted(names)} and no einspace 'meta' row. Expected tables "
                f"{sorted(TABLES)}; use a new path or an empty database"
            )
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise EinspaceError(
                f"{self.url} is an einspace run store of schema version {version!r}; this "
                f"einspace reads version {SCHEMA_VERSION!r}. Use a new path for new runs"
            )
        missing = TABLES - names
        if missing:
            raise EinspaceError(
                f"{self.url} is an einspace run store missing tables {sorted(missing)}; it is "
                f"damaged. Expected tables {sorted(TABLES)}"
            )
        self._enable_wal()

    def _create_or_read_schema(self, conn: Connection) -> tuple[set[str], dict[str, str]]:
        """In one locked transaction: create an empty database's tables, upgrade a
        version-1 store, or just read the meta rows."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        names = set(inspect(conn).get_table_names())
        if not names:
            _metadata.create_all(conn)
            conn.execute(
                insert(_meta),
                [
                    {"key": "application", "value": _APPLICATION},
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                ],
            )
            return set(TABLES), {"application": _APPLICATION, "schema_version": str(SCHEMA_VERSION)}
        meta = _read_meta(conn) if "meta" in names else {}
        if meta.get("application") == _APPLICATION and upgrade_schema(
            conn, meta.get("schema_version", "")
        ):
            meta["schema_version"] = str(SCHEMA_VERSION)
        return names, meta

    def _enable_wal(self) -> None:
        """Switch an SQLite file to WAL once (see :func:`~search.store.engine.enable_wal`)."""
        if self._engine.dialect.name != "sqlite" or self._url.database in (None, "", ":memory:"):
            return
        try:
            enable_wal(self._engine, _INIT_TRIES)
        except (exc.DBAPIError, sqlite3.Error, OSError) as err:
            raise self._database_error(err, "switch it to WAL mode") from None

    def _run_row(self, conn: Connection, rid: str, *, lock: bool = False) -> RowMapping:
        query = select(_runs).where(_runs.c.run_id == rid)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise EinspaceError(
                f"no run with id {rid!r} in {self.url}; ids are run_id(config), e.g. "
                f"{_nearest_ids(conn, rid)}"
            )
        return row

    def _token(self, rid: str, attempt: int | None) -> int | None:
        """The fencing token of a write: ``attempt`` if given, else the attempt this store
        claimed ``rid`` with (None for a run it never claimed: then unfenced)."""
        if attempt is None:
            return self._tokens.get(rid)
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise EinspaceError(
                f"attempt must be the positive integer a claim returned (Claim.attempt); "
                f"got {attempt!r}"
            )
        return attempt

    def _running_row(
        self, conn: Connection, rid: str, action: str, attempt: int | None = None
    ) -> RowMapping:
        """The run's row, locked, checked to be running and still held by ``attempt``."""
        row = self._run_row(conn, rid, lock=True)
        token = self._token(rid, attempt)
        if token is not None and row["attempt"] != token:
            raise self._taken_over(row, token, action)
        if row["status"] != "running":
            raise EinspaceError(
                f"cannot {action} run {rid!r}: its status is {row['status']!r}, expected "
                f"'running' (claim it first; finished, diverged and failed runs are final)"
            )
        return row

    def _taken_over(self, row: RowMapping, token: int, action: str) -> RunTakenOver:
        when = row["claimed_at"] if row["claimed_at"] is not None else row["updated_at"]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(when)))
        return RunTakenOver(
            f"run {row['run_id']!r} was taken over by another worker at {stamp} (attempt "
            f"{row['attempt']}, {row['worker_host']}:{row['worker_pid']}, now "
            f"{row['status']!r}) after this worker's attempt {token} missed its "
            f"{self.lease_s:g} s lease; this worker stops (cannot {action} it) and leaves "
            f"the run to its new owner",
            str(row["run_id"]),
            token,
            int(row["attempt"]),
        )

    @staticmethod
    def _fenced(rid: str, token: int | None) -> list[Any]:
        """WHERE clauses of a run-state UPDATE held by ``token``."""
        where = [_runs.c.run_id == rid]
        if token is not None:
            where.append(_runs.c.attempt == token)
        return where

    # ---------------------------------------------------------------- registering

    def register(self, config: Mapping[str, Any], sweep: str | None = None) -> str:
        """Add a run as ``pending`` unless it exists; return its id.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.register({"width": 8}, sweep="s")
            >>> store.runs()["status"].tolist()
            ['pending']
        """
        canonical = canonical_config(config)
        rid = _hash(canonical)
        row = self._new_row(rid, canonical, config, sweep, "pending")
        with self._write("register a run") as conn:
            exists = conn.execute(select(_runs.c.run_id).where(_runs.c.run_id == rid)).first()
            if exists is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(_runs).values(**row))
                except exc.IntegrityError:
                    pass  # registered concurrently
        return rid

    def _new_row(
        self,
        rid: str,
        canonical: str,
        config: Mapping[str, Any],
        sweep: str | None,
        status: str,
    ) -> dict[str, Any]:
        if sweep is not None and not isinstance(sweep, str):
            raise EinspaceError(f"sweep must be a string or None; got {sweep!r}")
        now = time.time()
        row: dict[str, Any] = {
            "run_id": rid,
            "config": canonical,
            "sweep": sweep,
            **_labels(config),
            "status": status,
            "attempt": 0,
            "created_at": now,
            "updated_at": now,
        }
        if status == "running":
            row.update(
                attempt=1,
                worker_host=self._host,
                worker_pid=os.getpid(),
                heartbeat_at=now,
                claimed_at=now,
            )
        return row

    def claim(self, config: Mapping[str, Any], sweep: str | None = None) -> Claim | None:
        """Atomically take the run of ``config`` for this process, if it is free.

        The run is registered if new. It is taken (status ``running``, this host and pid,
        a fresh heartbeat, the next attempt) if it is new or ``pending``, or ``running``
        but stale: its worker's pid is dead on this host, or its heartbeat is older than
        ``lease_s``. Otherwise (finished, diverged, failed, or held by a live worker, this
        process included) the result is ``None``. Of several processes claiming one config
        at once, exactly one gets a :class:`Claim`.

        The claim's ``attempt`` is its fencing token: every later write of the run's state
        (:meth:`heartbeat`, :meth:`log_points`, :meth:`save_checkpoint`, :meth:`finish`,
        :meth:`mark_diverged`, :meth:`mark_failed`) is checked against it in the same
        transaction, so a worker whose run was taken over is refused with
        :class:`RunTakenOver`. This store remembers the token, so its own writes are
        fenced without passing it. A taken-over run keeps its checkpoints and the points
        up to its newest checkpoint; points the old owner logged after it are dropped
        (the new owner logs them again from the checkpoint on).

        Examples:
            >>> store = RunStore("sqlite://")
            >>> first = store.claim({"structure": "dense", "width": 16}, sweep="s")
            >>> first is not None, store.claim({"structure": "dense", "width": 16})
            (True, None)
        """
        canonical = canonical_config(config)
        rid = _hash(canonical)
        new_row = self._new_row(rid, canonical, config, sweep, "running")
        stored = json.loads(canonical)
        with self._write("claim a run") as conn:
            claim = self._claim_in(conn, rid, stored, sweep, new_row)
        if claim is not None:
            self._tokens[rid] = claim.attempt
        return claim

    def _claim_in(
        self,
        conn: Connection,
        rid: str,
        stored: dict[str, Any],
        sweep: str | None,
        new_row: dict[str, Any],
    ) -> Claim | None:
        query = select(_runs).where(_runs.c.run_id == rid).with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(_runs).values(**new_row))
                return Claim(rid, stored, sweep, 1, None, None)
            except exc.IntegrityError:  # inserted concurrently (non-SQLite backends)
                row = conn.execute(query).mappings().one()
        if row["status"] in _DONE:
            return None
        if row["status"] == "running" and not self._is_stale(row):
            return None
        last_step = row["last_step"]
        if row["status"] == "running":  # a take-over: keep what the checkpoint covers
            kept = conn.execute(
                select(func.max(_checkpoints.c.step)).where(_checkpoints.c.run_id == rid)
            ).scalar()
            stale = _points.c.run_id == rid
            if kept is not None:
                stale = stale & (_points.c.step > kept)
            conn.execute(delete(_points).where(stale))
            last_step = conn.execute(
                select(func.max(_points.c.step)).where(_points.c.run_id == rid)
            ).scalar()
        now = time.time()
        chosen = row["sweep"] if row["sweep"] is not None else sweep
        result = conn.execute(
            update(_runs)
            .where(
                _runs.c.run_id == rid,
                _runs.c.attempt == row["attempt"],
                _runs.c.status == row["status"],
            )
            .values(
                status="running",
                attempt=row["attempt"] + 1,
                worker_host=self._host,
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

    def _is_stale(self, row: RowMapping) -> bool:
        heartbeat = row["heartbeat_at"]
        if heartbeat is None or time.time() - heartbeat > self.lease_s:
            return True
        pid = row["worker_pid"]
        return row["worker_host"] == self._host and pid is not None and not _pid_alive(pid)

    # ---------------------------------------------------------------- while running

    def heartbeat(self, run_id: str, *, attempt: int | None = None) -> None:
        """Record that the worker of a running run is alive (keeps it from being taken).

        ``attempt`` is the claim's fencing token (default: the one this store claimed the
        run with); a worker whose run was taken over gets :class:`RunTakenOver`.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> store.heartbeat(store.claim({"width": 8}).run_id)
        """
        now = time.time()
        token = self._token(run_id, attempt)
        with self._write("record a heartbeat") as conn:
            self._running_row(conn, run_id, "heartbeat", token)
            conn.execute(
                update(_runs)
                .where(*self._fenced(run_id, token))
                .values(heartbeat_at=now, updated_at=now)
            )

    def log_points(
        self,
        run_id: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        attempt: int | None = None,
        params: int | None = None,
        macs_per_token: float | None = None,
    ) -> int:
        """Store logged points of a running run; return how many (fenced like
        :meth:`heartbeat`).

        Each row has ``step`` (int ≥ 0) and ``compute`` (finite, ≥ 0), and optionally
        ``train_loss`` and ``eval_loss`` (finite or None), ``tokens`` (int ≥ 0), ``lr``
        and ``extra`` (a mapping of names to finite numbers, stored as JSON). A step
        logged again replaces the earlier values. Logging also refreshes the heartbeat. A
        NaN or infinite loss is refused: report it with :meth:`mark_diverged`. ``params``
        and ``macs_per_token``, when given, are stored on the run (the model's size).

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.claim({"width": 8}).run_id
            >>> store.log_points(rid, [{"step": 1, "compute": 1e3, "train_loss": 0.5}])
            1
            >>> store.log_points(rid, [{"step": 1, "compute": 1e3, "train_loss": 0.4}])
            1
            >>> store.points()[["step", "train_loss"]].to_dict("records")
            [{'step': 1, 'train_loss': 0.4}]
        """
        clean: dict[int, dict[str, Any]] = {}
        for i, row in enumerate(rows):
            point = check_point(row, i)
            clean[point["step"]] = point  # the last of duplicate steps wins
        if not clean:
            return 0
        now = time.time()
        steps = sorted(clean)
        token = self._token(run_id, attempt)
        with self._write("log points") as conn:
            current = self._running_row(conn, run_id, "log points to", token)
            for chunk in chunks(steps):
                conn.execute(
                    delete(_points).where(_points.c.run_id == run_id, _points.c.step.in_(chunk))
                )
            conn.execute(insert(_points), [{"run_id": run_id, **clean[s]} for s in steps])
            last = max(steps[-1], current["last_step"] if current["last_step"] is not None else -1)
            size = {"params": params, "macs_per_token": macs_per_token}
            conn.execute(
                update(_runs)
                .where(*self._fenced(run_id, token))
                .values(
                    last_step=last,
                    heartbeat_at=now,
                    updated_at=now,
                    **{k: v for k, v in size.items() if v is not None},
                )
            )
        return len(steps)

    def save_checkpoint(
        self,
        run_id: str,
        step: int,
        blob: bytes,
        *,
        keep: int = 1,
        pin: bool = False,
        attempt: int | None = None,
    ) -> None:
        """Store a checkpoint of a running run at ``step``; keep only the newest ``keep``
        unpinned ones (fenced like :meth:`heartbeat`). A ``pin``-ned checkpoint is never
        dropped, not even when the run finishes: a trunk pins those its cooldown branches
        resume from (:meth:`load_checkpoint` with ``step``).

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.claim({"width": 8}).run_id
            >>> store.save_checkpoint(rid, 100, b"state")
            >>> store.load_checkpoint(rid)
            (100, b'state')
        """
        step = check_step(step, "step")
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise EinspaceError(
                f"a checkpoint blob must be bytes (e.g. from torch.save into io.BytesIO); "
                f"got {type(blob).__name__}"
            )
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise EinspaceError(f"keep must be an integer >= 1; got {keep!r}")
        now = time.time()
        token = self._token(run_id, attempt)
        with self._write("save a checkpoint") as conn:
            self._running_row(conn, run_id, "save a checkpoint of", token)
            conn.execute(
                delete(_checkpoints).where(
                    _checkpoints.c.run_id == run_id, _checkpoints.c.step == step
                )
            )
            conn.execute(
                insert(_checkpoints).values(
                    run_id=run_id, step=step, blob=bytes(blob), created_at=now, pinned=pin
                )
            )
            steps = conn.execute(
                select(_checkpoints.c.step)
                .where(_checkpoints.c.run_id == run_id, _checkpoints.c.pinned.is_(False))
                .order_by(_checkpoints.c.step.desc())
            ).scalars()
            old = list(steps)[keep:]
            for chunk in chunks(old):
                conn.execute(
                    delete(_checkpoints).where(
                        _checkpoints.c.run_id == run_id, _checkpoints.c.step.in_(chunk)
                    )
                )
            conn.execute(
                update(_runs)
                .where(*self._fenced(run_id, token))
                .values(heartbeat_at=now, updated_at=now)
            )

    def load_checkpoint(self, run_id: str, step: int | None = None) -> tuple[int, bytes] | None:
        """Return ``(step, blob)`` of the newest checkpoint of a run (or of the one at
        ``step``), or ``None``.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.claim({"width": 8}).run_id
            >>> store.load_checkpoint(rid) is None
            True
            >>> store.save_checkpoint(rid, 10, b"early", pin=True)
            >>> store.save_checkpoint(rid, 20, b"late")
            >>> store.load_checkpoint(rid), store.load_checkpoint(rid, step=10)
            ((20, b'late'), (10, b'early'))
        """
        where = [_checkpoints.c.run_id == run_id]
        if step is not None:
            where.append(_checkpoints.c.step == check_step(step, "step"))
        with self._read("load a checkpoint") as conn:
            self._run_row(conn, run_id)
            row = conn.execute(
                select(_checkpoints.c.step, _checkpoints.c.blob)
                .where(*where)
                .order_by(_checkpoints.c.step.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return int(row[0]), bytes(row[1])

    # ---------------------------------------------------------------- endings

    def finish(
        self,
        run_id: str,
        *,
        train_loss: float | None = None,
        eval_loss: float | None = None,
        drop_checkpoints: bool = True,
        attempt: int | None = None,
    ) -> None:
        """Mark a running run finished, with its final losses (fenced like :meth:`heartbeat`).

        A loss not given is taken from the last logged point that has one. Checkpoints
        are dropped unless ``drop_checkpoints=False`` (pinned ones are kept); points are
        kept for good.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.claim({"width": 8}).run_id
            >>> store.finish(rid, train_loss=0.25)
            >>> store.runs()[["status", "final_train_loss"]].to_dict("records")
            [{'status': 'finished', 'final_train_loss': 0.25}]
        """
        for name, value in (("train_loss", train_loss), ("eval_loss", eval_loss)):
            if value is not None:
                check_loss(value, name, "finish")
        now = time.time()
        token = self._token(run_id, attempt)
        with self._write("finish a run") as conn:
            self._running_row(conn, run_id, "finish", token)
            finals = {"train_loss": train_loss, "eval_loss": eval_loss}
            for name in finals:
                if finals[name] is None:
                    column = _points.c[name]
                    finals[name] = conn.execute(
                        select(column)
                        .where(_points.c.run_id == run_id, column.is_not(None))
                        .order_by(_points.c.step.desc())
                        .limit(1)
                    ).scalar()
            if drop_checkpoints:
                conn.execute(
                    delete(_checkpoints).where(
                        _checkpoints.c.run_id == run_id, _checkpoints.c.pinned.is_(False)
                    )
                )
            conn.execute(
                update(_runs)
                .where(*self._fenced(run_id, token))
                .values(
                    status="finished",
                    final_train_loss=finals["train_loss"],
                    final_eval_loss=finals["eval_loss"],
                    heartbeat_at=now,
                    updated_at=now,
                    error=None,
                )
            )

    def mark_diverged(
        self,
        run_id: str,
        step: int,
        reason: str = "loss is not finite",
        *,
        attempt: int | None = None,
    ) -> None:
        """Mark a running run diverged at ``step`` (the first bad step; fenced like
        :meth:`heartbeat`).

        Points logged before ``step`` are kept as the run's last good points; any at or
        after it are removed. ``last_step`` becomes ``step`` and the error column says
        ``diverged at step …: reason``. A diverged run is never claimed again.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.claim({"width": 8, "lr": 10.0}).run_id
            >>> _ = store.log_points(rid, [{"step": s, "compute": s * 1e3 + 1, "train_loss": 1.0}
            ...                            for s in range(4)])
            >>> store.mark_diverged(rid, 3, "loss became nan")
            >>> store.points()["step"].tolist(), store.runs()["status"].tolist()
            ([0, 1, 2], ['diverged'])
        """
        step = check_step(step, "step")
        now = time.time()
        token = self._token(run_id, attempt)
        with self._write("mark a run diverged") as conn:
            self._running_row(conn, run_id, "mark diverged", token)
            conn.execute(delete(_points).where(_points.c.run_id == run_id, _points.c.step >= step))
            conn.execute(delete(_checkpoints).where(_checkpoints.c.run_id == run_id))
            conn.execute(
                update(_runs)
                .where(*self._fenced(run_id, token))
                .values(
                    status="diverged",
                    last_step=step,
                    error=f"diverged at step {step}: {reason}",
                    heartbeat_at=now,
                    updated_at=now,
                )
            )

    def mark_failed(
        self, run_id: str, error: str | BaseException, *, attempt: int | None = None
    ) -> None:
        """Mark a pending or running run failed with an error message (or exception);
        fenced like :meth:`heartbeat` when this store claimed it or ``attempt`` is given.

        Its points are kept; a failed run is never claimed again.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.claim({"width": 8}).run_id
            >>> store.mark_failed(rid, RuntimeError("CUDA out of memory"))
            >>> store.runs()["error"].tolist()
            ['RuntimeError: CUDA out of memory']
        """
        message = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        now = time.time()
        token = self._token(run_id, attempt)
        with self._write("mark a run failed") as conn:
            row = self._run_row(conn, run_id, lock=True)
            if token is not None and row["attempt"] != token:
                raise self._taken_over(row, token, "mark failed")
            if row["status"] in _DONE:
                raise EinspaceError(
                    f"cannot mark run {run_id!r} failed: its status is {row['status']!r}, "
                    f"which is final; expected 'pending' or 'running'"
                )
            conn.execute(
                update(_runs)
                .where(*self._fenced(run_id, token))
                .values(status="failed", error=str(message), updated_at=now)
            )

    # ---------------------------------------------------------------- reading

    def runs(self, sweep: str | None = None, status: str | None = None) -> pd.DataFrame:
        """Return the runs (optionally of one sweep and/or status), oldest first.

        Columns are those of the ``runs`` table; ``config`` is parsed into a dict, and
        the ``*_at`` times are UTC timestamps.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> _ = store.register({"structure": "btt", "width": 8}, sweep="a")
            >>> _ = store.register({"structure": "dense", "width": 8}, sweep="b")
            >>> store.runs(sweep="a")[["structure", "config"]].to_dict("records")
            [{'structure': 'btt', 'config': {'structure': 'btt', 'width': 8}}]
        """
        with self._read("read runs") as conn:
            return runs_frame(conn, sweep, status)

    def points(
        self, run_ids: Sequence[str] | None = None, sweep: str | None = None
    ) -> pd.DataFrame:
        """Return logged points joined with their run's labels and status.

        Columns: ``run_id, sweep, structure, task, width, seed, status, step, compute,
        train_loss, eval_loss``, sorted by run and step. Ready for
        :func:`analysis.scaling.fit_table` (pass ``loss="eval_loss"`` or ``"train_loss"``;
        it leaves out the compute-0 points of step 0).

        Examples:
            >>> store = RunStore("sqlite://")
            >>> rid = store.claim({"structure": "btt", "width": 8}).run_id
            >>> _ = store.log_points(rid, [{"step": 5, "compute": 1e4, "eval_loss": 0.7}])
            >>> store.points()[["structure", "width", "step", "eval_loss"]].to_dict("records")
            [{'structure': 'btt', 'width': 8, 'step': 5, 'eval_loss': 0.7}]
        """
        with self._read("read runs") as conn:
            return points_frame(conn, run_ids, sweep)

    def summary(self) -> pd.DataFrame:
        """Return, per sweep, the number of runs in each status, the total and the points.

        Runs registered without a sweep are counted under the sweep ``""``.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> _ = store.register({"width": 8}, sweep="s")
            >>> store.finish(store.claim({"width": 16}, sweep="s").run_id)
            >>> store.summary().loc["s", ["pending", "finished", "total", "points"]].tolist()
            [1, 1, 2, 0]
        """
        with self._read("read runs") as conn:
            return summary_frame(conn)


def _nearest_ids(conn: Connection, rid: str) -> str:
    ids = [str(r) for r in conn.execute(select(_runs.c.run_id).limit(1000)).scalars()]
    if not ids:
        return "none are stored yet"
    return suggest(str(rid), ids[:20]) if len(ids) > 20 else suggest(str(rid), ids)
