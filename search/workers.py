"""Worker processes of a search: start, pump their messages, reap; torch threads per worker.

A worker reports through a queue of tuples (``("start", wid, label, steps)``,
``("point", …)``, ``("done", wid, summary)``, ``("crashed", wid, text)``, …) that
:class:`search.progress._Display` shows.

Examples:
    >>> _rotate([1, 2, 3, 4], 1, 2)
    [3, 4, 1, 2]
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from einspace.errors import EinspaceError

if TYPE_CHECKING:
    from search.progress import _Display

__all__ = ["Emit"]


Emit = Callable[[tuple[Any, ...]], None]


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _rotate(items: Sequence[Any], k: int, n: int) -> list[Any]:
    """``items`` started at the k-th of n equal offsets (workers start apart)."""
    if not items:
        return []
    shift = (k * len(items)) // n
    return list(items[shift:]) + list(items[:shift])


@contextlib.contextmanager
def _processes(
    target: Callable[..., None], args: Callable[[int], tuple[Any, ...]], workers: int
) -> Iterator[tuple[list[Any], Any]]:
    """Start ``workers`` processes; on leaving, wait for them to exit.

    When the block is left by an exception (Ctrl-C), workers still running after a grace
    period (a terminal's Ctrl-C reaches them too) are sent SIGINT themselves, and those
    that still do not exit are terminated.

    Where available the processes fork from a forkserver that has imported torch, optuna
    and this package once, so starting workers (and a second phase's workers) is quick;
    elsewhere they are spawned.
    """
    ctx = _context()
    messages = ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(*args(i), messages), daemon=False) for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        yield procs, messages
    except BaseException:
        _reap(procs, messages, 5.0)
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
        raise
    finally:
        _reap(procs, messages, 60.0)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def _reap(procs: Sequence[Any], messages: Any, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the processes to exit, draining their queue so
    that none blocks on flushing it."""
    deadline = time.monotonic() + timeout
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        with contextlib.suppress(queue_mod.Empty, OSError, EOFError, ValueError):
            while True:
                messages.get_nowait()
        time.sleep(0.05)


def _context() -> Any:
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


_PRELOAD: Final = [
    "torch",
    "torch._dynamo",
    "optuna",
    "search.proxy",
    "search.grid",
    "search.theta",
]


def _pump(procs: Sequence[Any], messages: Any, handle: Callable[[tuple[Any, ...]], None]) -> None:
    """Forward worker messages to ``handle`` until every worker has exited."""
    exited: set[int] = set()
    while len(exited) < len(procs):
        try:
            message = messages.get(timeout=0.25)
        except queue_mod.Empty:
            for i, proc in enumerate(procs):
                if not proc.is_alive() and i not in exited and proc.exitcode not in (0, None):
                    exited.add(i)
                    handle(("crashed", i, f"worker {i} exited with code {proc.exitcode}"))
            continue
        if message[0] == "exit":
            exited.add(int(message[1]))
        else:
            handle(message)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the block (in this process), then restore them."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _raise_crashes(display: _Display) -> None:
    if display.crashes:
        raise EinspaceError(
            f"{len(display.crashes)} worker process(es) crashed ({'; '.join(display.crashes)}). "
            f"A script that runs a search with workers > 1 must start it under "
            f"`if __name__ == '__main__':` (worker processes import the main module)"
        )
