"""Opening a run store's database: resolve a path or URL, make the engine, set SQLite up.

SQLite files get a busy timeout, foreign keys and our own ``BEGIN`` (``IMMEDIATE`` for
writes, ``DEFERRED`` for reads), so concurrent worker processes on one machine write
safely.

Examples:
    >>> resolve_url("sqlite://").get_backend_name()
    'sqlite'
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from einspace.errors import EinspaceError
from search.store.claims import NotADatabase

__all__ = ["READ_ONLY", "foreign_file_error", "make_engine", "resolve_url", "transient_error"]

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
READ_ONLY: Final = "einspace_read_only"
_URL_EXAMPLES: Final = (
    "'runs.sqlite' (a file path), 'sqlite:////abs/path/runs.sqlite', "
    "'postgresql+psycopg://user:password@host:5432/einspace'"
)


def resolve_url(target: str | os.PathLike[str]) -> URL:
    """Turn a path or URL string into a URL, refusing malformed input."""
    if isinstance(target, os.PathLike) or "://" not in str(target):
        if not isinstance(target, str | os.PathLike):
            raise EinspaceError(
                f"a run store location must be a path or URL string; got "
                f"{type(target).__name__} {target!r}. Examples: {_URL_EXAMPLES}"
            )
        text = os.fspath(target)
        if text in ("", ":memory:"):
            return URL.create("sqlite")
        path = Path(text).expanduser().resolve()
        _check_sqlite_file(path)
        return URL.create("sqlite", database=str(path))
    try:
        url = make_url(str(target))
    except (exc.ArgumentError, ValueError) as err:
        raise EinspaceError(
            f"cannot parse run store URL {target!r} ({err}); expected a path or an "
            f"SQLAlchemy URL such as {_URL_EXAMPLES}"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if str(url.query.get("uri", "")).lower() in ("true", "1"):
            return _resolve_sqlite_uri(url, str(target))
        path = Path(url.database).expanduser().resolve()
        _check_sqlite_file(path)
        url = url.set(database=str(path))
    return url


def _resolve_sqlite_uri(url: URL, target: str) -> URL:
    """An SQLite URI database (``sqlite:///file:runs.sqlite?mode=ro&uri=true``): its path
    made absolute like a plain path's, the ``file:`` prefix and the query kept.

    Examples:
        >>> url = _resolve_sqlite_uri(make_url("sqlite:///file:/tmp/r.sqlite?uri=true"), "")
        >>> url.database, dict(url.query)
        ('file:/tmp/r.sqlite', {'uri': 'true'})
    """
    database = str(url.database)
    if not database.startswith("file:"):
        raise EinspaceError(
            f"run store URL {target!r} has uri=true but its database {database!r} is not an "
            f"SQLite URI; expected 'sqlite:///file:{database}?uri=true' or drop uri=true"
        )
    rest = database[len("file:") :]
    if rest.startswith("//") or rest.startswith(":memory:") or url.query.get("mode") == "memory":
        return url  # file://host/path and in-memory URIs are SQLite's to read
    path = Path(rest).expanduser().resolve()
    _check_sqlite_file(path)
    return url.set(database=f"file:{path}")


def _check_sqlite_file(path: Path) -> None:
    """Refuse a folder; make the parent folders of a new file.

    The file itself is not opened here. POSIX advisory locks belong to the process, and
    closing *any* descriptor of a file drops all of the process's locks on it, so reading
    the header with ``open()`` while this process (another :class:`RunStore`, optuna's
    storage) holds an SQLite connection on the file silently releases SQLite's locks.
    Another process then takes the exclusive lock as it closes, believes it is the last
    connection, checkpoints and deletes the ``-wal``/``-shm`` files still in use, and
    the store ends up with lost writes, ``disk I/O error`` or ``database disk image is
    malformed``. SQLite reads the header itself; :func:`foreign_file_error` describes a
    file it refused.
    """
    if path.is_dir():
        raise EinspaceError(
            f"run store path {str(path)!r} is a folder; expected an SQLite file such as "
            f"{str(path / 'einspace-runs.sqlite')!r}"
        )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)


def foreign_file_error(path: str, reason: str) -> EinspaceError:
    """The error for a file SQLite refused as a database (``reason``: SQLite's words).

    Only called once SQLite has refused the file, after the store's engine is disposed:
    then no connection of this process holds SQLite locks on it, and reading its first
    bytes cannot release any (see :func:`_check_sqlite_file`).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError:
        head = b""
    if head and head != _SQLITE_MAGIC:
        return EinspaceError(
            f"{path!r} is not an SQLite database (its first bytes are {head[:8]!r}, expected "
            f"{_SQLITE_MAGIC[:15]!r}); expected an einspace run store or a path to a new file"
        )
    return EinspaceError(
        f"{path!r} is not a readable SQLite database ({reason}); expected an einspace run "
        f"store or a path to a new file"
    )


def make_engine(url: URL, busy_timeout_s: float, *, idle_timeout_s: float = 60.0) -> Engine:
    """An engine for ``url``. On PostgreSQL every session gets an
    ``idle_in_transaction_session_timeout`` of ``idle_timeout_s`` (at least 1 s): a worker
    paused in the middle of a transaction (SIGSTOP, a suspended laptop, a partition) has
    its transaction aborted by the server, so it cannot hold a run's row lock past its
    lease and block the worker that takes the run over."""
    shown = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {}
    memory = backend == "sqlite" and url.database in (None, "", ":memory:")
    if memory:
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif backend != "sqlite":
        kwargs.update(pool_pre_ping=True)  # a session the server ended is replaced
    try:
        engine = create_engine(url, **kwargs)
    except exc.NoSuchModuleError:
        raise EinspaceError(
            f"unknown database dialect or driver in run store URL {shown!r}; expected a "
            f"dialect SQLAlchemy knows, such as {_URL_EXAMPLES}"
        ) from None
    except ImportError as err:
        raise EinspaceError(
            f"the database driver for {shown!r} is not installed ({err}); install it "
            f"(e.g. pip install 'psycopg[binary]' for postgresql+psycopg) or use an SQLite "
            f"path such as 'einspace-runs.sqlite'"
        ) from None
    except (exc.ArgumentError, TypeError, ValueError) as err:
        raise EinspaceError(
            f"cannot open run store URL {shown!r} ({err}); examples: {_URL_EXAMPLES}"
        ) from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, busy_timeout_s, wal=not memory)
    elif engine.dialect.name == "postgresql":
        idle_ms = max(1000, int(idle_timeout_s * 1000))

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"SET idle_in_transaction_session_timeout = {idle_ms}")
            finally:
                cursor.close()
            dbapi_connection.commit()

    return engine


def _configure_sqlite(engine: Engine, busy_timeout_s: float, *, wal: bool) -> None:
    """A busy timeout, foreign keys, and our own BEGIN (IMMEDIATE for writes).

    WAL mode is persistent in the file, so :meth:`RunStore._init_schema` sets it once,
    after the file has been recognised as a run store (a foreign file is left as it is).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not emit its own BEGIN
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if wal:
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def transient_error(err: BaseException) -> bool:
    """Whether a failed first open lost a race another process wins: a busy or locked
    SQLite file, a PostgreSQL serialization failure or deadlock, a concurrent create."""
    if isinstance(err, exc.IntegrityError):
        return True
    orig = getattr(err, "orig", None) or err
    words = str(orig).lower()
    code = str(getattr(orig, "sqlstate", "") or "")
    return code in ("40001", "40P01", "23505", "42P07") or any(
        w in words for w in ("locked", "busy", "serializ", "deadlock", "already exists")
    )


def describe_error(url: str, err: BaseException, op: str, *, remote: bool) -> EinspaceError:
    """What went wrong with the store at ``url`` during ``op``, and what to do.

    A file SQLite refuses as a database gives :class:`~search.store.claims.NotADatabase`
    (described in full once the engine is closed)."""
    orig = getattr(err, "orig", None) or err
    words = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    low = words.lower()
    where = f"run store {url}: cannot {op}"
    if "file is not a database" in low:
        return NotADatabase(words)
    if "malformed" in low:
        return EinspaceError(
            f"{where}: the database file is damaged ({words}); restore it from a copy, "
            f"or start a new store with another path"
        )
    if "full" in low or "no space" in low or "could not extend" in low:
        return EinspaceError(
            f"{where}: the disk is full ({words}); free space on it (or pass another "
            f"store) and run the same command again: finished runs are kept and "
            f"interrupted ones resume"
        )
    if "readonly" in low or "read-only" in low or "permission denied" in low:
        return EinspaceError(
            f"{where}: it is read-only ({words}); make the file and its folder writable "
            f"(SQLite writes '-wal' and '-shm' files next to it) or pass a writable store"
        )
    if "unable to open database file" in low:
        return EinspaceError(
            f"{where}: SQLite cannot open or create the file ({words}); check that its "
            f"folder exists and is writable, or pass another store path"
        )
    if "locked" in low:
        return EinspaceError(
            f"{where}: it stayed locked by another process past the busy timeout "
            f"({words}); retry, or raise busy_timeout_s"
        )
    if "disk i/o error" in low:
        return EinspaceError(
            f"{where}: disk I/O error ({words}); check the disk (full? removed?); SQLite "
            f"needs a local disk: on a network filesystem use a PostgreSQL store instead"
        )
    if isinstance(err, exc.OperationalError | exc.InterfaceError) and remote:
        return EinspaceError(
            f"{where}: the database server is unreachable or refused the connection "
            f"({words}); check that it is running and that the URL's host, port, user "
            f"and database are right, then run the same command again"
        )
    return EinspaceError(f"{where}: database error: {words}")


def enable_wal(engine: Engine, tries: int) -> None:
    """Switch an SQLite file to WAL once (persistent; needs no open transaction).

    Only a file not yet in WAL mode is switched, so the processes that open the store later
    leave the journal mode alone. The switch runs on a raw DB-API cursor, whose errors
    SQLAlchemy does not wrap: a busy or locked file (another process is switching or
    writing) is retried with backoff; the last error, or any other, is raised.
    """
    for attempt in range(tries):
        try:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode = WAL")
                cursor.close()
            finally:
                raw.close()
            return
        except (exc.DBAPIError, sqlite3.Error, OSError) as err:
            if attempt + 1 == tries or not transient_error(err):
                raise
            time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
