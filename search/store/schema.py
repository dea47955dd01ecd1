"""The run store's tables: ``meta``, ``runs``, ``points`` and ``checkpoints`` (SQLAlchemy Core).

Examples:
    >>> sorted(TABLES)
    ['checkpoints', 'meta', 'points', 'runs']
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
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
    select,
)
from sqlalchemy.engine import Connection

__all__ = ["LABEL_KEYS", "POINT_FIELDS", "RUN_STATUSES", "SCHEMA_VERSION", "TABLES"]

SCHEMA_VERSION: Final = 2
"""Version of the table layout; a store of another version is refused (version 1, without
``runs.claimed_at``, is upgraded in place when opened)."""

RUN_STATUSES: Final = ("pending", "running", "finished", "diverged", "failed")
"""Every status a run can have, in lifecycle order."""

LABEL_KEYS: Final = ("structure", "task", "width", "seed")
"""Config keys copied into columns of ``runs`` for analysis (all optional)."""

POINT_FIELDS: Final = ("step", "compute", "train_loss", "eval_loss")
"""Keys of a logged point; ``step`` and ``compute`` are required."""

_APPLICATION: Final = "einspace"
_DONE: Final = frozenset({"finished", "diverged", "failed"})


_metadata = MetaData()

_meta = Table(
    "meta",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

_runs = Table(
    "runs",
    _metadata,
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
    CheckConstraint(
        "status IN ({})".format(", ".join(f"'{s}'" for s in RUN_STATUSES)),
        name="runs_status_valid",
    ),
)

_points = Table(
    "points",
    _metadata,
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
)

_checkpoints = Table(
    "checkpoints",
    _metadata,
    Column(
        "run_id",
        String(64),
        ForeignKey("runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("step", Integer, primary_key=True),
    Column("blob", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)

TABLES: Final = frozenset(_metadata.tables)

_RUN_COLUMNS: Final = tuple(c.name for c in _runs.columns)
_POINT_COLUMNS: Final = (
    "run_id",
    "sweep",
    "structure",
    "task",
    "width",
    "seed",
    "status",
    "step",
    "compute",
    "train_loss",
    "eval_loss",
)


def _read_meta(conn: Connection) -> dict[str, str]:
    """The ``meta`` rows, or ``{}`` when a foreign table of that name has other columns."""
    try:
        with conn.begin_nested():
            rows = conn.execute(select(_meta.c.key, _meta.c.value)).all()
    except exc.SQLAlchemyError:
        return {}
    return {str(key): str(value) for key, value in rows}
