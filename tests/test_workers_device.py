"""Search workers spread over the visible GPUs (device count mocked: no GPU needed)."""

from __future__ import annotations

import io
import queue
from typing import Any

import pytest
import torch
from rich.console import Console

import search.progress as progress
import search.workers as workers
from search.workers import worker_device


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend ``n`` GPUs are visible; record the devices set current."""
    current: list[torch.device] = []

    def visible(n: int) -> list[torch.device]:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", current.append)
        return current

    return visible


def test_bare_cuda_goes_round_robin_over_the_gpus(gpus: Any) -> None:
    gpus(4)
    got = [worker_device("cuda", i) for i in range(10)]
    assert got == [f"cuda:{i}" for i in (0, 1, 2, 3, 0, 1, 2, 3, 0, 1)]
    gpus(3)
    assert [worker_device("cuda", i) for i in range(5)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
        "cuda:1",
    ]


def test_other_devices_are_kept(gpus: Any) -> None:
    gpus(4)
    assert [worker_device("cuda:2", i) for i in range(3)] == ["cuda:2"] * 3
    assert worker_device("cpu", 3) == "cpu"
    assert worker_device(None, 3) is None
    gpus(0)  # no GPU: the run itself says CUDA is missing
    assert worker_device("cuda", 1) == "cuda"
    gpus(1)
    assert [worker_device("cuda", i) for i in range(3)] == ["cuda:0"] * 3


def test_a_worker_takes_its_gpu_and_says_so(gpus: Any) -> None:
    current = gpus(2)
    said: list[tuple[Any, ...]] = []
    workers._use_device("cuda:1", 3, said.append)
    assert current == [torch.device("cuda", 1)]
    assert said == [("device", 3, "cuda:1")]
    workers._use_device("cpu", 0, said.append)
    workers._use_device(None, 0, said.append)
    workers._use_device("cuda", 0, said.append)  # no GPU visible: nothing to take
    assert len(current) == 1 and len(said) == 1


class _FakeProcess:
    def __init__(self, target: Any, args: tuple[Any, ...], daemon: bool) -> None:
        self.target, self.args, self.started = target, args, False
        self.pid, self.exitcode = None, 0

    def start(self) -> None:
        self.started = True

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        return None

    def terminate(self) -> None:
        return None


class _FakeContext:
    Process = _FakeProcess

    @staticmethod
    def Queue() -> queue.Queue[Any]:  # multiprocessing's name
        return queue.Queue()


def test_processes_hand_each_worker_its_device(gpus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(3)
    monkeypatch.setattr(workers, "_context", lambda: _FakeContext)
    with workers.processes(print, lambda i: ("job", i), 5, "cuda") as (procs, messages):
        pass
    # _child(parent, wid, device, target, *args, messages)
    assert [p.args[1:3] for p in procs] == [
        (0, "cuda:0"),
        (1, "cuda:1"),
        (2, "cuda:2"),
        (3, "cuda:0"),
        (4, "cuda:1"),
    ]
    assert all(p.started and p.args[4:] == ("job", p.args[1], messages) for p in procs)
    with workers.processes(print, lambda i: (i,), 2, "cpu") as (procs, _):
        pass
    assert [p.args[2] for p in procs] == ["cpu", "cpu"]


def test_display_shows_each_workers_gpu() -> None:
    out = io.StringIO()
    display = progress.ProgressDisplay(Console(file=out, width=120), enabled=True)
    with display:
        display.handle(("device", 1, "cuda:1"))
        display.handle(("device", 0, "cuda:0"))
    assert display.devices == {1: "cuda:1", 0: "cuda:0"}
    assert "worker 1 on cuda:1" in out.getvalue() and "worker 0 on cuda:0" in out.getvalue()
