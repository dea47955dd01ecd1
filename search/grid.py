"""The grid of a search: structures × widths × seeds as proxy runs, trained by workers
that claim them from the shared run store (finished runs are skipped, interrupted ones
resume from their checkpoints).

Examples:
    >>> from search.settings import RunSettings, parse_structures
    >>> [c.width for c in grid_configs(parse_structures(["dense"]), [16, 64], [0], RunSettings())]
    [64, 16]
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from einspace.errors import EinspaceError
from einspace.structure import Structure
from search.proxy_config import compute_per_step, make_config
from search.settings import RunSettings
from search.space import check_widths
from search.workers import (
    Emit,
    _processes,
    _pump,
    _raise_crashes,
    _rotate,
    _set_threads,
    _torch_threads,
)

if TYPE_CHECKING:
    import pandas as pd

    from search.progress import _Display
    from search.proxy_config import ProxyConfig
    from search.run_result import CurvePoint, RunResult
    from search.store import RunStore

__all__ = ["grid_configs"]


def grid_configs(
    structures: Mapping[str, Structure],
    widths: Sequence[int],
    seeds: Sequence[int],
    settings: RunSettings,
) -> list[ProxyConfig]:
    """One config per structure × width × seed, most expensive first (for load balance).

    Raises:
        EinspaceError: no structures, or a structure that does not realize at a width
            (naming both and the nearest width that works).

    Examples:
        >>> from search.settings import parse_structures
        >>> cfgs = grid_configs(parse_structures(["dense", "btt"]), [16, 64], [0], RunSettings())
        >>> [(c.structure, c.width) for c in cfgs]
        [('dense', 64), ('btt(r=0.25)', 64), ('dense', 16), ('btt(r=0.25)', 16)]
    """
    if not structures:
        raise EinspaceError(
            "the candidate list is empty: give structures (e.g. 'dense btt monarch "
            "low_rank kronecker') or θ-space trials (--trials N)"
        )
    if not seeds:
        raise EinspaceError("no seeds given; expected e.g. [0]")
    check_widths(structures, widths, mode=settings.mode, pad_tol=settings.pad_tol)
    configs = [
        make_config(settings, label, width, seed)
        for label in structures
        for width in widths
        for seed in seeds
    ]
    cost = {id(c): c.steps * compute_per_step(c, structures[c.structure], c.width) for c in configs}
    return sorted(configs, key=lambda c: -cost[id(c)])


def _summary(result: RunResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "structure": result.config.structure,
        "width": result.config.width,
        "seed": result.config.seed,
        "status": result.status,
        "final_eval_loss": result.final_eval_loss,
        "cached": result.cached,
        "trained_steps": result.trained_steps,
        "resumed_from": result.resumed_from,
        "error": result.error,
    }


def _done_runs(store: RunStore) -> dict[str, dict[Any, Any]]:
    """Finished, diverged and failed runs of the store by id (they are never run again)."""
    runs = store.runs()
    final = runs[runs["status"].isin(["finished", "diverged", "failed"])]
    return {str(row["run_id"]): row for row in final.to_dict("records")}


def _stored_summary(config: Mapping[str, Any], row: Mapping[Any, Any]) -> dict[str, Any]:
    loss = row.get("final_eval_loss")
    return {
        "run_id": row["run_id"],
        "structure": config["structure"],
        "width": config["width"],
        "seed": config["seed"],
        "status": row["status"],
        "final_eval_loss": None if loss is None or math.isnan(loss) else float(loss),
        "cached": True,
        "trained_steps": 0,
        "resumed_from": None,
        "error": row.get("error"),
    }


def _grid_loop(
    store_target: str,
    configs: Sequence[Mapping[str, Any]],
    sweep: str,
    device: str | None,
    checkpoint_every: int | None,
    wid: int,
    emit: Emit,
    lease_s: float = 120.0,
) -> None:
    """Claim and train each config in turn (a worker; runs in-process or in a child)."""
    from search.proxy import run_config
    from search.store import RunStore, run_id

    with RunStore(store_target, lease_s=lease_s) as store:
        done = _done_runs(store)
        for config in configs:
            rid = run_id(config)
            if rid in done:  # nothing to train: report it without building the model
                emit(("done", wid, _stored_summary(config, done[rid])))
                continue
            label = f"{config['structure']} @{config['width']} s{config['seed']}"
            emit(("start", wid, label, int(config["steps"])))

            def on_point(point: CurvePoint, label: str = label) -> None:
                emit(("point", wid, label, point.step, point.eval_loss))

            result = run_config(
                config,
                store=store,
                sweep=sweep,
                device=device,
                checkpoint_every=checkpoint_every,
                on_point=on_point,
            )
            emit(("done", wid, _summary(result)))


def _grid_worker(
    store_target: str,
    configs: Sequence[Mapping[str, Any]],
    sweep: str,
    device: str | None,
    checkpoint_every: int | None,
    wid: int,
    threads: int | None,
    lease_s: float,
    messages: Any,
) -> None:
    """Entry point of a grid worker process."""
    try:
        _set_threads(threads)
        _grid_loop(
            store_target, configs, sweep, device, checkpoint_every, wid, messages.put, lease_s
        )
    except KeyboardInterrupt:
        messages.put(("interrupted", wid))
    except BaseException as err:
        messages.put(("crashed", wid, "".join(traceback.format_exception(err))))
    finally:
        messages.put(("exit", wid))


def _run_grid(
    store_target: str,
    configs: Sequence[ProxyConfig],
    *,
    sweep: str,
    workers: int,
    device: str | None,
    checkpoint_every: int | None,
    threads: int | None,
    display: _Display,
    lease_s: float = 120.0,
) -> None:
    from search.store import RunStore, run_id

    dicts = [c.to_dict() for c in configs]
    with RunStore(store_target, lease_s=lease_s) as store:
        done = _done_runs(store)
    display.begin("grid", len(dicts), workers)
    for config in dicts:  # report what the store already has without starting workers
        if run_id(config) in done:
            display.handle(("done", 0, _stored_summary(config, done[run_id(config)])))
    dicts = [c for c in dicts if run_id(c) not in done]
    workers = max(1, min(workers, len(dicts)))
    if not dicts:
        return
    if workers == 1:
        with _torch_threads(threads):
            _grid_loop(
                store_target, dicts, sweep, device, checkpoint_every, 0, display.handle, lease_s
            )
        return

    def args(i: int) -> tuple[Any, ...]:
        return (
            store_target,
            _rotate(dicts, i, workers),
            sweep,
            device,
            checkpoint_every,
            i,
            threads,
            lease_s,
        )

    with _processes(_grid_worker, args, workers, device) as (procs, messages):
        _pump(procs, messages, display.handle)
    _raise_crashes(display)


def _grid_runs(store: RunStore, run_ids: Sequence[str]) -> pd.DataFrame:
    runs = store.runs()
    runs = runs[runs["run_id"].isin(set(run_ids))]
    columns = ["run_id", "structure", "width", "seed", "status", "final_eval_loss", "last_step"]
    return runs[columns].sort_values(["structure", "width", "seed"], ignore_index=True)


def _run_id_of(settings: RunSettings, label: str, width: int, seed: int) -> str:
    from search.store import run_id

    return run_id(make_config(settings, label, width, seed).to_dict())
