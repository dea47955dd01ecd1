"""The run store: every proxy run's config, status and logged curve, in a database.

A :class:`RunStore` keeps three tables through SQLAlchemy 2 Core, so any database
SQLAlchemy speaks works; a plain path means an SQLite file:

- ``runs``: one row per run, keyed by :func:`run_id`, the stable hash of the run's
  canonical JSON config. It holds the config, labels for analysis (sweep, structure,
  task, width, seed), the status (``pending``, ``running``, ``finished``, ``diverged``,
  ``failed``), the worker that holds it (host, pid, heartbeat time), timestamps, the
  last step, the final losses and an error message.
- ``points``: ``(run_id, step, compute, train_loss, eval_loss)`` with primary key
  ``(run_id, step)``, so logging a step again replaces it instead of duplicating it.
- ``checkpoints``: ``(run_id, step, blob)`` to resume a run a dead worker left behind.

A ``meta`` table holds the application name and the schema version; opening a database
that is not an einspace run store, or one of another schema version, raises.

Workers call :meth:`RunStore.claim` with a config. The claim is atomic: of several
processes that claim the same config at once exactly one gets a :class:`Claim`. A run
is taken if it is new, pending, or running but stale (its worker's pid is dead on this
host, or its heartbeat is older than the lease). Finished, diverged and failed runs are
never taken again, and their points are never deleted or overwritten.

SQLite files are opened in WAL mode with a busy timeout, and every write transaction
starts with ``BEGIN IMMEDIATE``, so concurrent worker processes on one machine write
safely. On other databases the claim is a compare-and-swap on the run's ``attempt``
counter under ``SELECT … FOR UPDATE``. The attempt is also the claim's fencing token:
heartbeats, points, checkpoints and endings of an attempt that is no longer the run's
(its worker paused past the lease and another took the run over) are refused with
:class:`RunTakenOver`, checked in the same transaction as the write.

Opening a new database is safe when many processes do it at once: the tables are
created in one locked transaction (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory
lock), a lost race is retried, and only a file not yet in WAL mode is switched to it.

Times are stored as UNIX seconds (float) and shown as UTC timestamps in DataFrames.

The package's modules: :mod:`~search.store.schema` (the tables), :mod:`~search.store.identity`
(canonical configs and run ids), :mod:`~search.store.engine` (opening the database),
:mod:`~search.store.migration` (creating, upgrading and checking a store's tables),
:mod:`~search.store.claims` (claims and leases: :class:`Claim`, :class:`RunTakenOver`),
:mod:`~search.store.fencing` (writes checked against the claim's attempt),
:mod:`~search.store.validation` (checks of logged points), :mod:`~search.store.queries`
(DataFrames) and :mod:`~search.store.runs` (:class:`RunStore`, the façade over them).
"""

from search.store.identity import canonical_config, run_id
from search.store.runs import Claim, RunStore, RunTakenOver
from search.store.schema import LABEL_KEYS, POINT_FIELDS, RUN_STATUSES, SCHEMA_VERSION

__all__ = [
    "LABEL_KEYS",
    "POINT_FIELDS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "Claim",
    "RunStore",
    "RunTakenOver",
    "canonical_config",
    "run_id",
]
