"""Worker processes of a search: start, pump their messages, reap; torch threads per worker.

A worker reports through a queue of tuples (``("start", wid, label, steps)``,
``("point", …)``, ``("done", wid, summary)``, ``("crashed", wid, text)``, …) that
:class:`search.progress.Display` shows.

With ``device="cuda"`` and several visible GPUs, worker ``i`` trains on ``cuda:i`` modulo
the GPU count (:func:`worker_device`): the worker makes that GPU its current device before
it starts, so every ``"cuda"`` tensor, model and checkpoint it loads lands there, and says
so with a ``("device", wid, "cuda:i")`` message. Checkpoints are loaded with
``map_location`` set to the device of the worker that resumes them, so a run started on one
GPU resumes on another.

Examples:
    >>> rotate([1, 2, 3, 4], 1, 2)
    [3, 4, 1, 2]
    >>> worker_device("cuda:1", 5), worker_device("cpu", 5), worker_device(None, 5)
    ('cuda:1', 'cpu', None)
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from einspace.errors import EinspaceError

if TYPE_CHECKING:
    from search.progress import Display

__all__ = [
    "Emit",
    "processes",
    "pump",
    "raise_crashes",
    "rotate",
    "set_threads",
    "torch_threads",
    "worker_device",
]


Emit = Callable[[tuple[Any, ...]], None]


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads of this process (a worker's), unless ``threads`` is 0
    or None."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def worker_device(device: str | None, wid: int) -> str | None:
    """The device worker ``wid`` trains on when the search asked for ``device``.

    A bare ``"cuda"`` is spread over the visible GPUs: ``cuda:{wid mod count}``. A device
    with an index (``"cuda:1"``), ``"cpu"``, ``None`` and ``"cuda"`` where no GPU is
    visible (the run then reports that CUDA is missing) are kept as they are.
    """
    if device is None or device.strip().lower() != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{wid % count}" if count else device


def _use_device(device: str | None, wid: int, emit: Emit) -> None:
    """In a worker process: make ``device`` (from :func:`worker_device`) the current CUDA
    device, so that a bare ``"cuda"`` means it, and tell the display."""
    if device is None or not device.startswith("cuda:"):
        return
    import torch

    torch.cuda.set_device(torch.device(device))
    emit(("device", wid, device))


def rotate(items: Sequence[Any], k: int, n: int) -> list[Any]:
    """``items`` started at the k-th of n equal offsets (workers start apart)."""
    if not items:
        return []
    shift = (k * len(items)) // n
    return list(items[shift:]) + list(items[:shift])


@contextlib.contextmanager
def processes(
    target: Callable[..., None],
    args: Callable[[int], tuple[Any, ...]],
    workers: int,
    device: str | None = None,
) -> Iterator[tuple[list[Any], Any]]:
    """Start ``workers`` processes; on leaving, wait for them to exit.

    Worker ``i`` runs on :func:`worker_device` ``(device, i)``.

    When the block is left by an exception (Ctrl-C), workers still running after a grace
    period (a terminal's Ctrl-C reaches them too) are sent SIGINT themselves, and those
    that still do not exit are terminated.

    Where available the processes fork from a forkserver that has imported torch, optuna
    and this package once, so starting workers (and a second phase's workers) is quick;
    elsewhere they are spawned.
    """
    ctx = _context()
    messages = ctx.Queue()
    parent = os.getpid()
    procs = [
        ctx.Process(
            target=_child,
            args=(parent, i, worker_device(device, i), target, *args(i), messages),
            daemon=False,
        )
        for i in range(workers)
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


_PARENT_POLL_S: Final = 0.5
_PARENT_GRACE_S: Final = 10.0


def _child(
    parent: int, wid: int, device: str | None, target: Callable[..., None], *args: Any
) -> None:
    """A worker process: watch the parent, take its GPU, then run ``target(*args)`` (whose
    last argument is the message queue)."""
    _exit_with_parent(parent)
    _use_device(device, wid, args[-1].put)
    target(*args)


def _exit_with_parent(parent: int) -> None:
    """Make this worker exit when the process that started it (pid ``parent``) dies.

    A worker forked from a forkserver is not the parent's child, so a daemon thread polls
    the parent's pid: once it is gone, the worker is interrupted like a Ctrl-C (its run
    stays ``running`` with its newest checkpoint, for the next search to resume), and
    killed outright if it has not exited after a grace period.
    """

    def watch() -> None:
        while _alive(parent):
            time.sleep(_PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(_PARENT_GRACE_S)
        os._exit(3)

    threading.Thread(target=watch, name="einspace-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


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


def pump(procs: Sequence[Any], messages: Any, handle: Callable[[tuple[Any, ...]], None]) -> None:
    """Forward worker messages to ``handle`` until every worker has exited.

    A worker that dies without saying so (killed, out of memory) is reported as
    ``("killed", wid, text)`` naming the run it held, which stays ``running`` with its
    newest checkpoint for the next search (or another worker, once its lease lapses).
    """
    exited: set[int] = set()
    holding: dict[int, str] = {}
    while len(exited) < len(procs):
        try:
            message = messages.get(timeout=0.25)
        except queue_mod.Empty:
            for i, proc in enumerate(procs):
                if not proc.is_alive() and i not in exited and proc.exitcode not in (0, None):
                    exited.add(i)
                    handle(("killed", i, _death(i, proc, holding.get(i))))
            continue
        kind = message[0]
        if kind == "exit":
            exited.add(int(message[1]))
            continue
        if kind == "start":
            holding[int(message[1])] = str(message[2])
        elif kind in ("done", "trial"):
            holding.pop(int(message[1]), None)
        handle(message)


def _death(wid: int, proc: Any, held: str | None) -> str:
    code = proc.exitcode
    how = (
        f"was killed by signal {signal.Signals(-code).name}"
        if isinstance(code, int) and code < 0 and -code in signal.valid_signals()
        else f"exited with code {code}"
    )
    text = f"worker {wid} (pid {proc.pid}) {how}"
    if held is None:
        if isinstance(code, int) and code > 0:
            return (
                f"{text} before it took a run (a script that runs a search with workers > 1 "
                f"must start it under `if __name__ == '__main__':`, since worker processes "
                f"import the main module)"
            )
        return f"{text} while holding no run"
    return (
        f"{text} while training {held}; that run is kept with its newest checkpoint, "
        f"and another worker of this search or the next run of the same command resumes "
        f"it: run the same command again to resume it"
    )


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
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


def raise_crashes(display: Display) -> None:
    """Raise :class:`EinspaceError` for the worker processes that crashed or died."""
    if display.killed and not display.crashes:
        raise EinspaceError(
            f"{len(display.killed)} worker process(es) died: {'; '.join(display.killed)}. "
            f"Every other run is finished or kept"
        )
    if display.crashes:
        hint = ""
        if any("__main__" in c or "bootstrapping" in c for c in display.crashes):
            hint = (
                ". A script that runs a search with workers > 1 must start it under "
                "`if __name__ == '__main__':` (worker processes import the main module)"
            )
        died = f"; {'; '.join(display.killed)}" if display.killed else ""
        raise EinspaceError(
            f"{len(display.crashes)} worker process(es) crashed "
            f"({'; '.join(display.crashes)}){died}{hint}"
        )
