"""What a claim hands a worker (:class:`Claim`), the refusal a worker that lost its run gets
(:class:`RunTakenOver`), and whether the process holding a run is still alive on this host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from einspace.errors import EinspaceError

__all__ = ["Claim", "RunTakenOver"]


class RunTakenOver(EinspaceError):
    """A write of a run by a worker that lost it: its lease lapsed and another worker
    claimed the run (a newer attempt). The write is refused; the worker should stop that
    run and go on (:func:`search.proxy.run_config` does).

    Attributes:
        run_id: the run.
        attempt: the attempt (fencing token) this worker held.
        current: the attempt that holds the run now.
    """

    def __init__(self, message: str, run_id: str, attempt: int, current: int) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.attempt = attempt
        self.current = current


class _NotADatabase(EinspaceError):
    """SQLite refused the file as a database (described once the engine is disposed)."""


@dataclass(frozen=True)
class Claim:
    """A run taken by this process with :meth:`RunStore.claim`.

    Attributes:
        run_id: the run's id (:func:`run_id` of its config).
        config: the config as stored (canonical JSON parsed back).
        sweep: the sweep the run was registered under.
        attempt: 1 for the first claim of a run, 2 for the next, and so on; the claim's
            fencing token (writes of an attempt that is no longer the run's are refused).
        previous_status: ``None`` when the run was new, ``"pending"``, or ``"running"``
            when a stale run of a dead worker was taken over.
        last_step: the last step logged before this claim, or ``None``; a run taken over
            keeps its points up to its newest checkpoint, and
            :meth:`RunStore.load_checkpoint` gives where to resume.

    Examples:
        >>> c = Claim("74cb99c0e5b9dbf7", {"width": 64}, None, 2, "running", 300)
        >>> c.resumed
        True
    """

    run_id: str
    config: dict[str, Any]
    sweep: str | None
    attempt: int
    previous_status: str | None
    last_step: int | None

    @property
    def resumed(self) -> bool:
        """Whether this claim took over a run another worker had started."""
        return self.previous_status == "running"


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (always True on Windows)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it; rely on the lease there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    try:  # a zombie has exited (nobody reaped it yet)
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[:1] != [b"Z"]
    except OSError:
        return True
