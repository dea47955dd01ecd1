"""Opening a database as a run store: create the tables of an empty one, upgrade a store of
an older schema version, refuse a database that is not a run store or is of another version,
and switch an SQLite file to WAL mode.

Safe when many processes open a new database at once: the check and the create run in one
transaction under a lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL transaction-scoped
advisory lock), and a lost race (a busy or serialization error, a unique violation of a
concurrent ``CREATE``) is retried with backoff.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Final

from sqlalchemy import exc, insert, inspect, text
from sqlalchemy.engine import URL, Connection, Engine

from einspace.errors import EinspaceError
from search.store.engine import describe_error, enable_wal, transient_error
from search.store.schema import (
    APPLICATION,
    META,
    METADATA,
    SCHEMA_VERSION,
    TABLES,
    read_meta,
    upgrade_schema,
)

__all__ = ["open_schema"]

_SCHEMA_LOCK: Final = 0x65696E73  # PostgreSQL advisory lock key of schema creation ("eins")
_INIT_TRIES: Final = 8
"""How many times opening a new store is tried when it races another process."""


def open_schema(engine: Engine, url: URL) -> None:
    """Create the tables in an empty database, or check an existing run store, then switch
    an SQLite file to WAL mode.

    Raises:
        EinspaceError: the database cannot be opened (the message names ``url``), is not an
            einspace run store, is of another schema version, or misses tables.

    Examples:
        >>> from search.store.engine import make_engine, resolve_url
        >>> url = resolve_url("sqlite://")
        >>> engine = make_engine(url, 1.0)
        >>> open_schema(engine, url)
        >>> sorted(inspect(engine).get_table_names()) == sorted(TABLES)
        True
    """
    shown = url.render_as_string(hide_password=True)
    remote = engine.dialect.name != "sqlite"
    for attempt in range(_INIT_TRIES):
        try:
            with engine.begin() as conn:
                names, meta = _create_or_read_schema(conn)
            break
        except (exc.SQLAlchemyError, OSError) as err:
            if attempt + 1 == _INIT_TRIES or not transient_error(err):
                raise describe_error(
                    shown, err, "open or create its tables", remote=remote
                ) from None
            time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
    _check_schema(shown, names, meta)
    if engine.dialect.name != "sqlite" or url.database in (None, "", ":memory:"):
        return
    try:
        enable_wal(engine, _INIT_TRIES)
    except (exc.DBAPIError, sqlite3.Error, OSError) as err:
        raise describe_error(shown, err, "switch it to WAL mode", remote=remote) from None


def _check_schema(shown: str, names: set[str], meta: dict[str, str]) -> None:
    if meta.get("application") != APPLICATION:
        raise EinspaceError(
            f"{shown} is a database but not an einspace run store: it has tables "
            f"{sorted(names)} and no einspace 'meta' row. Expected tables "
            f"{sorted(TABLES)}; use a new path or an empty database"
        )
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise EinspaceError(
            f"{shown} is an einspace run store of schema version {version!r}; this "
            f"einspace reads version {SCHEMA_VERSION!r}. Use a new path for new runs"
        )
    missing = TABLES - names
    if missing:
        raise EinspaceError(
            f"{shown} is an einspace run store missing tables {sorted(missing)}; it is "
            f"damaged. Expected tables {sorted(TABLES)}"
        )


def _create_or_read_schema(conn: Connection) -> tuple[set[str], dict[str, str]]:
    """In one locked transaction: create an empty database's tables, upgrade a
    store of an older schema version (:func:`~search.store.schema.upgrade_schema`), or just
    read the meta rows."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
    names = set(inspect(conn).get_table_names())
    if not names:
        METADATA.create_all(conn)
        conn.execute(
            insert(META),
            [
                {"key": "application", "value": APPLICATION},
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
            ],
        )
        return set(TABLES), {"application": APPLICATION, "schema_version": str(SCHEMA_VERSION)}
    meta = read_meta(conn) if "meta" in names else {}
    if meta.get("application") == APPLICATION and upgrade_schema(
        conn, meta.get("schema_version", "")
    ):
        meta["schema_version"] = str(SCHEMA_VERSION)
    return names, meta
