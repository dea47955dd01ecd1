"""The run store's tables: ``meta``, ``runs``, ``points`` and ``checkpoints`` (SQLAlchemy Core).

Examples:
    >>> sorted(TABLES)
    ['checkpoints', 'meta', 'points', 'runs']
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    exc,
    false,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

__all__ = [
    "APPLICATION",
    "CHECKPOINTS",
    "DONE_STATUSES",
    "LABEL_KEYS",
    "META",
    "METADATA",
    "POINTS",
    "POINT_COLUMNS",
    "POINT_FIELDS",
    "RUNS",
    "RUN_COLUMNS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "TABLES",
    "read_meta",
    "upgrade_schema",
]

SCHEMA_VERSION: Final = 3
"""Version of the table layout; a store of another version is refused, except that older
versions are upgraded in place when opened (:func:`upgrade_schema`): version 1 lacks
``runs.claimed_at``; version 2 lacks ``points.tokens``/``lr``/``extra``,
``runs.params``/``macs_per_token`` and ``checkpoints.pinned``."""

RUN_STATUSES: Final = ("pending", "running", "finished", "diverged", "failed")
"""Every status a run can have, in lifecycle order."""

LABEL_KEYS: Final = ("structure", "task", "width", "seed")
"""Config keys copied into columns of ``runs`` for analysis (all optional)."""

POINT_FIELDS: Final = ("step", "compute", "train_loss", "eval_loss", "tokens", "lr", "extra")
"""Keys of a logged point; ``step`` and ``compute`` are required. ``tokens`` is the tokens
trained on so far, ``lr`` the learning rate the point was trained at, ``extra`` a mapping of
other numbers by name (stored as JSON text)."""

APPLICATION: Final = "einspace"
DONE_STATUSES: Final = frozenset({"finished", "diverged", "failed"})


METADATA = MetaData()

META = Table(
    "meta",
    METADATA,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

RUNS = Table(
    "runs",
    METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("config", Text, nullable=False),
    Column("sweep", String(255), index=True),
    Column("structure", Text),
    Column("task", String(255)),
    Column("width", Integer),
    Column("seed", Integer),
    Column("status", String(16), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("worker_host", String(255)),
    Column("worker_pid", Integer),
    Column("heartbeat_at", Float),
    Column("claimed_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_step", Integer),
    Column("final_train_loss", Float),
    Column("final_eval_loss", Float),
    Column("error", Text),
    Column("params", BigInteger),
    Column("macs_per_token", Float),
    CheckConstraint(
        "status IN ({})".format(", ".join(f"'{s}'" for s in RUN_STATUSES)),
        name="runs_status_valid",
    ),
)

POINTS = Table(
    "points",
    METADATA,
    Column(
        "run_id",
        String(64),
        ForeignKey("runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("step", Integer, primary_key=True),
    Column("compute", Float, nullable=False),
    Column("train_loss", Float),
    Column("eval_loss", Float),
    Column("tokens", BigInteger),
    Column("lr", Float),
    Column("extra", Text),
)

CHECKPOINTS = Table(
    "checkpoints",
    METADATA,
    Column(
        "run_id",
        String(64),
        ForeignKey("runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("step", Integer, primary_key=True),
    Column("blob", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("pinned", Boolean, nullable=False, server_default=false()),
)

TABLES: Final = frozenset(METADATA.tables)

RUN_COLUMNS: Final = tuple(c.name for c in RUNS.columns)
POINT_COLUMNS: Final = (
    "run_id",
    "sweep",
    "structure",
    "task",
    "width",
    "seed",
    "status",
    "step",
    "compute",
    "tokens",
    "lr",
    "train_loss",
    "eval_loss",
    "params",
    "macs_per_token",
    "parent",
    "final",
    "extra",
)

_ADDED: Final = {
    "1": (("runs", "claimed_at"),),
    "2": (
        ("points", "tokens"),
        ("points", "lr"),
        ("points", "extra"),
        ("runs", "params"),
        ("runs", "macs_per_token"),
        ("checkpoints", "pinned"),
    ),
}
"""The columns each old schema version lacks (what its successor added)."""


def upgrade_schema(conn: Connection, version: str) -> bool:
    """Bring a store of schema ``version`` to :data:`SCHEMA_VERSION` in place, adding the
    columns later versions added (old rows get NULL, checkpoints ``pinned = false``); returns
    whether it did (False: a version it cannot upgrade, or already current)."""
    if version not in _ADDED:
        return False
    missing = [c for v in sorted(_ADDED) if int(v) >= int(version) for c in _ADDED[v]]
    for table, name in missing:
        column = METADATA.tables[table].c[name]
        kind = column.type.compile(dialect=conn.dialect)
        default = ""
        if not column.nullable:
            default = " NOT NULL DEFAULT " + ("false" if conn.dialect.name == "postgresql" else "0")
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}{default}"))
    conn.execute(
        update(META).where(META.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
    )
    return True


def read_meta(conn: Connection) -> dict[str, str]:
    """The ``meta`` rows, or ``{}`` when a foreign table of that name has other columns."""
    try:
        with conn.begin_nested():
            rows = conn.execute(select(META.c.key, META.c.value)).all()
    except exc.SQLAlchemyError:
        return {}
    return {str(key): str(value) for key, value in rows}
