"""Benchmark: one search with 1 worker against the same search with 3 workers, on a fresh
run store each time (a new PostgreSQL database, or a new SQLite file).

Prints, from one run on this machine, the wall seconds of each (min / median / max over
``--reps`` repetitions, alternating) and the ratio of the medians. The grid is 6 small
proxy runs (dense, low_rank, monarch at widths 16 and 36) plus ``--trials`` θ trials.
The ratio says how much of the store's cost (claims, points, checkpoints, heartbeats)
stays out of the way when workers share it; on a shared or 2-core machine it is bounded
by the cores free, which the script prints.

Usage:
    python benchmarks/store_workers.py --postgres postgresql+psycopg://user@127.0.0.1:5432/postgres
    python benchmarks/store_workers.py --sqlite /tmp/einspace-bench
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# benchmarks/search.py is named like the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from rich.console import Console  # noqa: E402

from search.driver import RunSettings, run_search  # noqa: E402

_counter = itertools.count()


def _fresh_postgres(server: str) -> Callable[[], str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def new() -> str:
        name = f"einspace_bench_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return url.set(database=name).render_as_string(hide_password=False)

    return new


def _fresh_sqlite(folder: str) -> Callable[[], str]:
    root = Path(tempfile.mkdtemp(prefix="bench-", dir=folder))

    def new() -> str:
        return str(root / f"runs{next(_counter)}.sqlite")

    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--postgres", help="URL of a PostgreSQL maintenance database")
    where.add_argument("--sqlite", help="folder for the SQLite files")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    fresh = _fresh_postgres(args.postgres) if args.postgres else _fresh_sqlite(args.sqlite)
    settings = RunSettings(
        steps=args.steps, eval_every=20, batch_size=16, mode="exact", task_kwargs={"n_eval": 64}
    )
    walls: dict[int, list[float]] = {1: [], 3: []}
    for _ in range(args.reps):
        for workers in (1, 3):
            store = fresh()
            started = time.perf_counter()
            result = run_search(
                ["dense", "low_rank", "monarch"],
                [16, 36],
                settings=settings,
                store=store,
                sweep="bench",
                workers=workers,
                trials=args.trials,
                promote=0,
                theta_width=16,
                progress=False,
                console=Console(file=io.StringIO()),
            )
            walls[workers].append(time.perf_counter() - started)
            assert set(result.runs["status"]) == {"finished"}
    backend = "postgresql" if args.postgres else "sqlite"
    print(f"{backend}: 6 grid runs of {args.steps} steps + {args.trials} θ trials, fresh store")
    print(f"cores: {os.cpu_count()}, load average now: {os.getloadavg()[0]:.1f}")
    for workers, values in walls.items():
        print(
            f"  {workers} worker(s): wall s min {min(values):.1f} / median "
            f"{statistics.median(values):.1f} / max {max(values):.1f} over {len(values)}"
        )
    ratio = statistics.median(walls[1]) / statistics.median(walls[3])
    print(f"  median speed-up of 3 workers over 1: {ratio:.2f}x")


if __name__ == "__main__":
    main()
