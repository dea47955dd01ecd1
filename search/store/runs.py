"""The run store's façade: :class:`RunStore` opens a database as a run store
(:mod:`~search.store.migration`), claims runs under leases (:mod:`~search.store.claims`),
writes their state fenced by the claim's attempt (:mod:`~search.store.fencing`), logs their
curves and checkpoints, ends them, and reads them back (:mod:`~search.store.queries`).

See :mod:`search.store` for the tables and how claims stay atomic across processes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exc, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from einspace.errors import EinspaceError
from einspace.validation import check_int
from search.store.claims import Claim, NotADatabase, RunTakenOver, new_run_row, take_run
from search.store.engine import (
    READ_ONLY,
    describe_error,
    foreign_file_error,
    make_engine,
    resolve_url,
)
from search.store.fencing import check_attempt, fenced, held_run, run_row
from search.store.identity import canonical_config, config_hash
from search.store.migration import open_schema
from search.store.queries import chunks, points_frame, runs_frame, summary_frame
from search.store.schema import CHECKPOINTS, POINTS, RUNS
from search.store.validation import check_loss, check_point

if TYPE_CHECKING:  # pandas is imported where DataFrames are made: workers do not need it
    import pandas as pd

__all__ = ["Claim", "RunStore", "RunTakenOver"]


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
            open_schema(self._engine, self._url)
        except NotADatabase as err:
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

    def _run_row(self, conn: Connection, rid: str, *, lock: bool = False) -> RowMapping:
        return run_row(conn, rid, self.url, lock=lock)

    def _token(self, rid: str, attempt: int | None) -> int | None:
        """The fencing token of a write: ``attempt`` if given, else the attempt this store
        claimed ``rid`` with (None for a run it never claimed: then unfenced)."""
        if attempt is None:
            return self._tokens.get(rid)
        return check_attempt(attempt)

    def _running_row(
        self, conn: Connection, rid: str, action: str, attempt: int | None = None
    ) -> RowMapping:
        """The run's row, locked, checked to be running and still held by ``attempt``."""
        token = self._token(rid, attempt)
        return held_run(conn, rid, token, action, url=self.url, lease_s=self.lease_s)

    @staticmethod
    def _fenced(rid: str, token: int | None) -> list[Any]:
        """WHERE clauses of a run-state UPDATE held by ``token``."""
        return fenced(rid, token)

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
        rid = config_hash(canonical)
        row = new_run_row(rid, canonical, config, sweep, "pending", self._host)
        with self._write("register a run") as conn:
            exists = conn.execute(select(RUNS.c.run_id).where(RUNS.c.run_id == rid)).first()
            if exists is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(RUNS).values(**row))
                except exc.IntegrityError:
                    pass  # registered concurrently
        return rid

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
        rid = config_hash(canonical)
        new_row = new_run_row(rid, canonical, config, sweep, "running", self._host)
        stored = json.loads(canonical)
        with self._write("claim a run") as conn:
            claim = take_run(conn, stored, sweep, new_row, host=self._host, lease_s=self.lease_s)
        if claim is not None:
            self._tokens[rid] = claim.attempt
        return claim

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
                update(RUNS)
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
                    delete(POINTS).where(POINTS.c.run_id == run_id, POINTS.c.step.in_(chunk))
                )
            conn.execute(insert(POINTS), [{"run_id": run_id, **clean[s]} for s in steps])
            last = max(steps[-1], current["last_step"] if current["last_step"] is not None else -1)
            size = {"params": params, "macs_per_token": macs_per_token}
            conn.execute(
                update(RUNS)
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
        step = check_int(step, "step", low=0)
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise EinspaceError(
                f"a checkpoint blob must be bytes (e.g. from torch.save into io.BytesIO); "
                f"got {type(blob).__name__}"
            )
        keep = check_int(keep, "keep", example=2)
        now = time.time()
        token = self._token(run_id, attempt)
        with self._write("save a checkpoint") as conn:
            self._running_row(conn, run_id, "save a checkpoint of", token)
            conn.execute(
                delete(CHECKPOINTS).where(
                    CHECKPOINTS.c.run_id == run_id, CHECKPOINTS.c.step == step
                )
            )
            conn.execute(
                insert(CHECKPOINTS).values(
                    run_id=run_id, step=step, blob=bytes(blob), created_at=now, pinned=pin
                )
            )
            steps = conn.execute(
                select(CHECKPOINTS.c.step)
                .where(CHECKPOINTS.c.run_id == run_id, CHECKPOINTS.c.pinned.is_(False))
                .order_by(CHECKPOINTS.c.step.desc())
            ).scalars()
            old = list(steps)[keep:]
            for chunk in chunks(old):
                conn.execute(
                    delete(CHECKPOINTS).where(
                        CHECKPOINTS.c.run_id == run_id, CHECKPOINTS.c.step.in_(chunk)
                    )
                )
            conn.execute(
                update(RUNS)
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
        where = [CHECKPOINTS.c.run_id == run_id]
        if step is not None:
            where.append(CHECKPOINTS.c.step == check_int(step, "step", low=0))
        with self._read("load a checkpoint") as conn:
            self._run_row(conn, run_id)
            row = conn.execute(
                select(CHECKPOINTS.c.step, CHECKPOINTS.c.blob)
                .where(*where)
                .order_by(CHECKPOINTS.c.step.desc())
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

        def settle(conn: Connection, now: float) -> dict[str, Any]:
            finals = {"train_loss": train_loss, "eval_loss": eval_loss}
            for name in finals:
                if finals[name] is None:
                    column = POINTS.c[name]
                    finals[name] = conn.execute(
                        select(column)
                        .where(POINTS.c.run_id == run_id, column.is_not(None))
                        .order_by(POINTS.c.step.desc())
                        .limit(1)
                    ).scalar()
            if drop_checkpoints:
                conn.execute(
                    delete(CHECKPOINTS).where(
                        CHECKPOINTS.c.run_id == run_id, CHECKPOINTS.c.pinned.is_(False)
                    )
                )
            return {
                "final_train_loss": finals["train_loss"],
                "final_eval_loss": finals["eval_loss"],
                "heartbeat_at": now,
                "error": None,
            }

        self._end(run_id, attempt, "finished", settle, op="finish a run", action="finish")

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
        step = check_int(step, "step", low=0)

        def settle(conn: Connection, now: float) -> dict[str, Any]:
            conn.execute(delete(POINTS).where(POINTS.c.run_id == run_id, POINTS.c.step >= step))
            conn.execute(
                delete(CHECKPOINTS).where(
                    CHECKPOINTS.c.run_id == run_id, CHECKPOINTS.c.pinned.is_(False)
                )
            )
            return {
                "last_step": step,
                "error": f"diverged at step {step}: {reason}",
                "heartbeat_at": now,
            }

        op, action = "mark a run diverged", "mark diverged"
        self._end(run_id, attempt, "diverged", settle, op=op, action=action)

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

        def settle(conn: Connection, now: float) -> dict[str, Any]:
            return {"error": str(message)}

        op, action = "mark a run failed", "mark failed"
        self._end(run_id, attempt, "failed", settle, op=op, action=action, from_pending=True)

    def _end(
        self,
        run_id: str,
        attempt: int | None,
        status: str,
        settle: Callable[[Connection, float], dict[str, Any]],
        *,
        op: str,
        action: str,
        from_pending: bool = False,
    ) -> None:
        """The one way a run ends (:meth:`finish`, :meth:`mark_diverged`, :meth:`mark_failed`).

        In one write transaction (``op`` words its errors): lock the run's row, check that
        ``attempt`` (default: the one this store claimed it with) still holds it and that
        it is running (or, ``from_pending``, pending or running; ``action`` words the
        refusal); ``settle(conn, now)`` drops what the ending drops and returns the columns
        it sets; then ``status`` and those columns are written, fenced by the same attempt.
        """
        now = time.time()
        token = self._token(run_id, attempt)
        with self._write(op) as conn:
            row = held_run(
                conn,
                run_id,
                token,
                action,
                url=self.url,
                lease_s=self.lease_s,
                running=not from_pending,
            )
            if row["status"] not in ("pending", "running"):
                raise EinspaceError(
                    f"cannot mark run {run_id!r} {status}: its status is {row['status']!r}, "
                    f"which is final; expected 'pending' or 'running'"
                )
            values = settle(conn, now)
            conn.execute(
                update(RUNS)
                .where(*fenced(run_id, token))
                .values(status=status, updated_at=now, **values)
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
