"""The run store: claims and leases of runs, their logged curves, checkpoints and endings.

See :mod:`search.store` for the tables and how claims stay atomic across processes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import delete, exc, func, insert, inspect, select, update
from sqlalchemy.engine import Connection, RowMapping

from einspace.errors import EinspaceError, suggest
from search.store.engine import READ_ONLY, make_engine, resolve_url
from search.store.identity import _hash, _labels, canonical_config
from search.store.schema import (
    _APPLICATION,
    _DONE,
    _POINT_COLUMNS,
    _RUN_COLUMNS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    TABLES,
    _checkpoints,
    _meta,
    _metadata,
    _points,
    _read_meta,
    _runs,
)
from search.store.validation import check_loss, check_point, check_step

if TYPE_CHECKING:  # pandas is imported where DataFrames are made: workers do not need it
    import pandas as pd

__all__ = ["Claim", "RunStore"]

_CHUNK: Final = 500  # bound parameters per IN (...) list


@dataclass(frozen=True)
class Claim:
    """A run taken by this process with :meth:`RunStore.claim`.

    Attributes:
        run_id: the run's id (:func:`run_id` of its config).
        config: the config as stored (canonical JSON parsed back).
        sweep: the sweep the run was registered under.
        attempt: 1 for the first claim of a run, 2 for the next, and so on.
        previous_status: ``None`` when the run was new, ``"pending"``, or ``"running"``
            when a stale run of a dead worker was taken over.
        last_step: the last step logged before this claim, or ``None``; a run taken over
            keeps its points, and :meth:`RunStore.load_checkpoint` gives where to resume.

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


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (always True on Windows)."""
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
    return True


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
        self._url = resolve_url(url_or_path)
        self._engine = make_engine(self._url, busy_timeout_s)
        try:
            self._init_schema()
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
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); database errors wrapped."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except exc.SQLAlchemyError as err:
            raise self._database_error(err) from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred ``BEGIN`` on SQLite); database errors wrapped."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except exc.SQLAlchemyError as err:
            raise self._database_error(err) from None

    def _database_error(self, err: exc.SQLAlchemyError) -> EinspaceError:
        orig = getattr(err, "orig", None) or err
        text = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        if "file is not a database" in text or "malformed" in text:
            return EinspaceError(
                f"{self.url} is not a readable SQLite database ({text}); expected an "
                f"einspace run store or a path to a new file"
            )
        if "locked" in text:
            return EinspaceError(
                f"{self.url} stayed locked by another process past the busy timeout "
                f"({text}); retry, or raise busy_timeout_s"
            )
        return EinspaceError(f"run store {self.url}: database error: {text}")

    def _init_schema(self) -> None:
        """Create the tables in an empty database, or check an existing run store."""
        with self._write() as conn:
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
                meta = {"application": _APPLICATION, "schema_version": str(SCHEMA_VERSION)}
                names = set(TABLES)
            else:
                meta = _read_meta(conn) if "meta" in names else {}
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

    def _enable_wal(self) -> None:
        """Switch an SQLite file to WAL (persistent; needs no open transaction)."""
        if self._engine.dialect.name != "sqlite" or self._url.database in (None, "", ":memory:"):
            return
        try:
            raw = self._engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.close()
            finally:
                raw.close()
        except exc.DBAPIError as err:
            raise self._database_error(err) from None

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

    def _running_row(self, conn: Connection, rid: str, action: str) -> RowMapping:
        row = self._run_row(conn, rid, lock=True)
        if row["status"] != "running":
            raise EinspaceError(
                f"cannot {action} run {rid!r}: its status is {row['status']!r}, expected "
                f"'running' (claim it first; finished, diverged and failed runs are final)"
            )
        return row

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
        with self._write() as conn:
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
            row.update(attempt=1, worker_host=self._host, worker_pid=os.getpid(), heartbeat_at=now)
        return row

    def claim(self, config: Mapping[str, Any], sweep: str | None = None) -> Claim | None:
        """Atomically take the run of ``config`` for this process, if it is free.

        The run is registered if new. It is taken (status ``running``, this host and pid,
        a fresh heartbeat) if it is new or ``pending``, or ``running`` but stale: its
        worker's pid is dead on this host, or its heartbeat is older than ``lease_s``.
        Otherwise (finished, diverged, failed, or held by a live worker, this process
        included) the result is ``None``. Of several processes claiming one config at
        once, exactly one gets a :class:`Claim`. A taken-over run keeps its points.

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
        with self._write() as conn:
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
            now = time.time()
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
                    updated_at=now,
                    sweep=row["sweep"] if row["sweep"] is not None else sweep,
                )
            )
            if result.rowcount != 1:
                return None
            return Claim(
                rid,
                stored,
                row["sweep"] if row["sweep"] is not None else sweep,
                row["attempt"] + 1,
                row["status"],
                row["last_step"],
            )

    def _is_stale(self, row: RowMapping) -> bool:
        heartbeat = row["heartbeat_at"]
        if heartbeat is None or time.time() - heartbeat > self.lease_s:
            return True
        pid = row["worker_pid"]
        return row["worker_host"] == self._host and pid is not None and not _pid_alive(pid)

    # ---------------------------------------------------------------- while running

    def heartbeat(self, run_id: str) -> None:
        """Record that the worker of a running run is alive (keeps it from being taken).

        Examples:
            >>> store = RunStore("sqlite://")
            >>> store.heartbeat(store.claim({"width": 8}).run_id)
        """
        now = time.time()
        with self._write() as conn:
            self._running_row(conn, run_id, "heartbeat")
            conn.execute(
                update(_runs)
                .where(_runs.c.run_id == run_id)
                .values(heartbeat_at=now, updated_at=now)
            )

    def log_points(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store logged points of a running run; return how many.

        Each row has ``step`` (int ≥ 0) and ``compute`` (finite, ≥ 0), and optionally
        ``train_loss`` and ``eval_loss`` (finite or None). A step logged again replaces
        the earlier values. Logging also refreshes the heartbeat. A NaN or infinite
        loss is refused: report it with :meth:`mark_diverged`.

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
        with self._write() as conn:
            current = self._running_row(conn, run_id, "log points to")
            for chunk in _chunks(steps):
                conn.execute(
                    delete(_points).where(_points.c.run_id == run_id, _points.c.step.in_(chunk))
                )
            conn.execute(insert(_points), [{"run_id": run_id, **clean[s]} for s in steps])
            last = max(steps[-1], current["last_step"] if current["last_step"] is not None else -1)
            conn.execute(
                update(_runs)
                .where(_runs.c.run_id == run_id)
                .values(last_step=last, heartbeat_at=now, updated_at=now)
            )
        return len(steps)

    def save_checkpoint(self, run_id: str, step: int, blob: bytes, *, keep: int = 1) -> None:
        """Store a checkpoint of a running run at ``step``; keep only the newest ``keep``.

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
        with self._write() as conn:
            self._running_row(conn, run_id, "save a checkpoint of")
            conn.execute(
                delete(_checkpoints).where(
                    _checkpoints.c.run_id == run_id, _checkpoints.c.step == step
                )
            )
            conn.execute(
                insert(_checkpoints).values(
                    run_id=run_id, step=step, blob=bytes(blob), created_at=now
                )
            )
            steps = conn.execute(
                select(_checkpoints.c.step)
                .where(_checkpoints.c.run_id == run_id)
                .order_by(_checkpoints.c.step.desc())
            ).scalars()
            old = list(steps)[keep:]
            for chunk in _chunks(old):
                conn.execute(
                    delete(_checkpoints).where(
                        _checkpoints.c.run_id == run_id, _checkpoints.c.step.in_(chunk)
                    )
                )
            conn.execute(
                update(_runs)
                .where(_runs.c.run_id == run_id)
                .values(heartbeat_at=now, updated_at=now)
            )

    def load_checkpoint(self, run_id: str) -> tuple[int, bytes] | None:
        """Return ``(step, blob)`` of the newest checkpoint of a run, or ``None``.

        Examples:
            >>> store = RunStore("sqlite://")
            >>> store.load_checkpoint(store.claim({"width": 8}).run_id) is None
            True
        """
        with self._read() as conn:
            self._run_row(conn, run_id)
            row = conn.execute(
                select(_checkpoints.c.step, _checkpoints.c.blob)
                .where(_checkpoints.c.run_id == run_id)
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
    ) -> None:
        """Mark a running run finished, with its final losses.

        A loss not given is taken from the last logged point that has one. Checkpoints
        are dropped unless ``drop_checkpoints=False``; points are kept for good.

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
        with self._write() as conn:
            self._running_row(conn, run_id, "finish")
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
                conn.execute(delete(_checkpoints).where(_checkpoints.c.run_id == run_id))
            conn.execute(
                update(_runs)
                .where(_runs.c.run_id == run_id)
                .values(
                    status="finished",
                    final_train_loss=finals["train_loss"],
                    final_eval_loss=finals["eval_loss"],
                    heartbeat_at=now,
                    updated_at=now,
                    error=None,
                )
            )

    def mark_diverged(self, run_id: str, step: int, reason: str = "loss is not finite") -> None:
        """Mark a running run diverged at ``step`` (the first bad step).

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
        with self._write() as conn:
            self._running_row(conn, run_id, "mark diverged")
            conn.execute(delete(_points).where(_points.c.run_id == run_id, _points.c.step >= step))
            conn.execute(delete(_checkpoints).where(_checkpoints.c.run_id == run_id))
            conn.execute(
                update(_runs)
                .where(_runs.c.run_id == run_id)
                .values(
                    status="diverged",
                    last_step=step,
                    error=f"diverged at step {step}: {reason}",
                    heartbeat_at=now,
                    updated_at=now,
                )
            )

    def mark_failed(self, run_id: str, error: str | BaseException) -> None:
        """Mark a pending or running run failed with an error message (or exception).

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
        with self._write() as conn:
            row = self._run_row(conn, run_id, lock=True)
            if row["status"] in _DONE:
                raise EinspaceError(
                    f"cannot mark run {run_id!r} failed: its status is {row['status']!r}, "
                    f"which is final; expected 'pending' or 'running'"
                )
            conn.execute(
                update(_runs)
                .where(_runs.c.run_id == run_id)
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
        import pandas as pd

        query = select(_runs).order_by(_runs.c.created_at, _runs.c.run_id)
        if sweep is not None:
            query = query.where(_runs.c.sweep == sweep)
        if status is not None:
            if status not in RUN_STATUSES:
                raise EinspaceError(f"unknown status {status!r}; {suggest(status, RUN_STATUSES)}")
            query = query.where(_runs.c.status == status)
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        frame = pd.DataFrame(rows, columns=list(_RUN_COLUMNS))
        frame["config"] = [json.loads(text) for text in frame["config"]]
        for column in ("width", "seed", "attempt", "worker_pid", "last_step"):
            frame[column] = frame[column].astype("Int64")
        for column in ("heartbeat_at", "created_at", "updated_at"):
            frame[column] = pd.to_datetime(frame[column].astype(float), unit="s", utc=True)
        return frame

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
        import pandas as pd

        from_runs = ("sweep", "structure", "task", "width", "seed", "status")
        columns = [_runs.c[c] if c in from_runs else _points.c[c] for c in _POINT_COLUMNS]
        base = (
            select(*columns)
            .join_from(_points, _runs, _points.c.run_id == _runs.c.run_id)
            .order_by(_points.c.run_id, _points.c.step)
        )
        if sweep is not None:
            base = base.where(_runs.c.sweep == sweep)
        rows: list[dict[str, Any]] = []
        with self._read() as conn:
            if run_ids is None:
                rows = [dict(r) for r in conn.execute(base).mappings()]
            else:
                ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
                for chunk in _chunks(ids):
                    query = base.where(_points.c.run_id.in_(chunk))
                    rows.extend(dict(r) for r in conn.execute(query).mappings())
        frame = pd.DataFrame(rows, columns=list(_POINT_COLUMNS))
        if run_ids is not None:
            frame = frame.sort_values(["run_id", "step"], ignore_index=True)
        for column in ("width", "seed", "step"):
            frame[column] = frame[column].astype("Int64")
        for column in ("compute", "train_loss", "eval_loss"):
            frame[column] = frame[column].astype(float)
        return frame

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
        import pandas as pd

        sweep = func.coalesce(_runs.c.sweep, "")
        with self._read() as conn:
            counts = conn.execute(
                select(sweep, _runs.c.status, func.count()).group_by(sweep, _runs.c.status)
            ).all()
            n_points = conn.execute(
                select(sweep, func.count())
                .select_from(_points.join(_runs, _points.c.run_id == _runs.c.run_id))
                .group_by(sweep)
            ).all()
        sweeps = sorted({str(s) for s, _, _ in counts})
        table = pd.DataFrame(0, index=pd.Index(sweeps, name="sweep"), columns=list(RUN_STATUSES))
        for s, status, n in counts:
            table.loc[str(s), str(status)] = int(n)
        table["total"] = table[list(RUN_STATUSES)].sum(axis=1)
        table["points"] = 0
        for s, n in n_points:
            table.loc[str(s), "points"] = int(n)
        return table


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


def _nearest_ids(conn: Connection, rid: str) -> str:
    ids = [str(r) for r in conn.execute(select(_runs.c.run_id).limit(1000)).scalars()]
    if not ids:
        return "none are stored yet"
    return suggest(str(rid), ids[:20]) if len(ids) > 20 else suggest(str(rid), ids)
