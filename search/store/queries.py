"""Reading a run store into DataFrames: runs, points joined with their run's labels, and a
per-sweep summary (the bodies of :meth:`RunStore.runs`, ``points`` and ``summary``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from einspace.errors import EinspaceError, suggest
from search.store.schema import POINT_COLUMNS, POINTS, RUN_COLUMNS, RUN_STATUSES, RUNS

if TYPE_CHECKING:
    import pandas as pd

_CHUNK: Final = 500  # bound parameters per IN (...) list
_FROM_CONFIG: Final = ("parent", "final")  # point columns derived from the run's config


def runs_frame(conn: Connection, sweep: str | None, status: str | None) -> pd.DataFrame:
    """The runs, oldest first, optionally of one sweep and/or status."""
    import pandas as pd

    query = select(RUNS).order_by(RUNS.c.created_at, RUNS.c.run_id)
    if sweep is not None:
        query = query.where(RUNS.c.sweep == sweep)
    if status is not None:
        if status not in RUN_STATUSES:
            raise EinspaceError(f"unknown status {status!r}; {suggest(status, RUN_STATUSES)}")
        query = query.where(RUNS.c.status == status)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    frame["config"] = [json.loads(text) for text in frame["config"]]
    for column in ("width", "seed", "attempt", "worker_pid", "last_step"):
        frame[column] = frame[column].astype("Int64")
    for column in ("heartbeat_at", "created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column].astype(float), unit="s", utc=True)
    return frame


def points_frame(
    conn: Connection, run_ids: Sequence[str] | None, sweep: str | None
) -> pd.DataFrame:
    """Logged points joined with their run's labels, status and size, by run and step, with
    the run's ``parent`` (its config's, for a cooldown branch) and ``final``: whether the
    point ends a finished run whose schedule completed (its step is the config's ``steps``,
    where the config has one; a run stopped early by pruning has no final point). ``final``
    is unknown (``<NA>``) for runs whose config has no ``schedule`` (logged by an older
    einspace, or by hand): their points are not known to end a schedule or not."""
    import pandas as pd

    from_runs = (
        "sweep",
        "structure",
        "task",
        "width",
        "seed",
        "status",
        "params",
        "macs_per_token",
    )
    stored = [c for c in POINT_COLUMNS if c not in _FROM_CONFIG]
    columns = [RUNS.c[c] if c in from_runs else POINTS.c[c] for c in stored]
    base = (
        select(*columns)
        .join_from(POINTS, RUNS, POINTS.c.run_id == RUNS.c.run_id)
        .order_by(POINTS.c.run_id, POINTS.c.step)
    )
    if sweep is not None:
        base = base.where(RUNS.c.sweep == sweep)
    rows: list[dict[str, Any]] = []
    if run_ids is None:
        rows = [dict(r) for r in conn.execute(base).mappings()]
    else:
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        for chunk in chunks(ids):
            query = base.where(POINTS.c.run_id.in_(chunk))
            rows.extend(dict(r) for r in conn.execute(query).mappings())
    frame = pd.DataFrame(rows, columns=stored)
    if run_ids is not None:
        frame = frame.sort_values(["run_id", "step"], ignore_index=True)
    for column in ("width", "seed", "step", "tokens", "params"):
        frame[column] = frame[column].astype("Int64")
    for column in ("compute", "train_loss", "eval_loss", "lr", "macs_per_token"):
        frame[column] = frame[column].astype(float)
    # pandas 3 infers a string column from mixed None and text and turns None into NaN
    frame["extra"] = [
        json.loads(text) if isinstance(text, str) else None for text in frame["extra"]
    ]
    configs = _configs(conn, sorted(set(frame["run_id"])))
    frame["parent"] = [configs[rid].get("parent") for rid in frame["run_id"]]
    last = frame.groupby("run_id")["step"].transform("max")
    horizon = [_steps(configs[rid], step) for rid, step in zip(frame["run_id"], last, strict=True)]
    ends = (frame["step"] == last) & (frame["step"] == pd.Series(horizon, index=frame.index))
    final = (ends & (frame["status"] == "finished")).fillna(False).astype("boolean")
    scheduled = pd.Series(["schedule" in configs[rid] for rid in frame["run_id"]], frame.index)
    frame["final"] = final.where(scheduled)  # <NA>: unknown for runs logged without a schedule
    return frame[list(POINT_COLUMNS)]


def _steps(config: dict[str, Any], default: int) -> int:
    """A run's horizon: its config's ``steps``, or ``default`` where it has none."""
    steps = config.get("steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else default


def _configs(conn: Connection, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored config of each run, by id."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(run_ids):
        query = select(RUNS.c.run_id, RUNS.c.config).where(RUNS.c.run_id.in_(chunk))
        out.update({str(rid): json.loads(text) for rid, text in conn.execute(query)})
    return out


def summary_frame(conn: Connection) -> pd.DataFrame:
    """Per sweep: runs in each status, their total and the number of points."""
    import pandas as pd

    sweep = func.coalesce(RUNS.c.sweep, "")
    counts = conn.execute(
        select(sweep, RUNS.c.status, func.count()).group_by(sweep, RUNS.c.status)
    ).all()
    n_points = conn.execute(
        select(sweep, func.count())
        .select_from(POINTS.join(RUNS, POINTS.c.run_id == RUNS.c.run_id))
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


def chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])
