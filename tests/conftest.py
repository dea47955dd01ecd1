"""Shared fixtures: a private PostgreSQL cluster on 127.0.0.1 for the run-store tests, and a
small CIFAR-10 directory in the exact python-pickle format.

``make test`` installs Debian's ``postgresql`` package where apt and root are available.
The fixture finds ``initdb``/``pg_ctl`` (on PATH or under ``/usr/lib/postgresql/*/bin``),
creates a cluster in a temporary folder, starts it on a free loopback port and stops it
at the end of the session. As root the server runs as the ``postgres`` user (PostgreSQL
refuses to run as root). Where any of that is missing the tests that need it skip with
a one-line reason.
"""

from __future__ import annotations

import glob
import itertools
import os
import pickle
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

_counter = itertools.count()


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test: tiny models run fastest, and bit-for-bit alike, on
    one thread instead of several fighting over shared cores. Modules that train tiny
    models use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


KILLED_RUN = """
import time
import torch
torch.set_num_threads(1)  # as the test (one_thread): bit for bit needs the same reductions
from search.proxy import run_config
from search.proxy_config import ProxyConfig
from search.store import RunStore
save = RunStore.save_checkpoint
def held(self, *args, **kwargs):  # hold each checkpoint long enough to be killed after it
    out = save(self, *args, **kwargs)
    print("CHECKPOINT", args[1], flush=True)
    time.sleep(0.5)
    return out
RunStore.save_checkpoint = held
run_config(ProxyConfig.from_dict({config!r}), store={store!r}, checkpoint_every=2)
"""


@pytest.fixture
def kill_after_checkpoint() -> Callable[[dict[str, object], str, int], None]:
    """``kill(config, store, step)``: run the proxy config in a child process against the store
    (a checkpoint every 2 steps, each held 0.5 s) and SIGKILL it once it has saved the
    checkpoint at ``step`` (or after 120 s)."""

    def kill(config: dict[str, object], store: str, step: int) -> None:
        code = textwrap.dedent(KILLED_RUN.format(config=config, store=store))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith(f"CHECKPOINT {step}") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    return kill


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Callable[[], str]]:
    """Start a private PostgreSQL; yield a function that creates a fresh database URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (make test installs it with apt when it can)")
    psycopg = pytest.importorskip(
        "psycopg", reason="psycopg is not installed (pip install -e '.[test]')"
    )
    user: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="einspace-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if user is not None:
        info = pwd.getpwnam(user)
        for path in (root, sockets):
            os.chown(path, info.pw_uid, info.pw_gid)
    port = _free_port()
    run = subprocess.run
    init = run(
        _as_user([initdb, "-D", str(data), "-U", "einspace", "--auth=trust", "-E", "UTF8"], user),
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c max_connections=200 -c fsync=off"
    start = run(
        _as_user(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"], user
        ),
        capture_output=True,
        text=True,
    )
    if start.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else start.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {log.strip().splitlines()[-1:]}")

    admin = f"host=127.0.0.1 port={port} user=einspace dbname=postgres"

    def new_database() -> str:
        name = f"einspace_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://einspace@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        run(
            _as_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], user),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Callable[[], str]) -> str:
    """A URL of a fresh, empty PostgreSQL database on the private cluster."""
    return postgres_server()


CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def write_cifar10(folder: Path, n_per_batch: int = 12, seed: int = 0) -> Path:
    """Write ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` as the CIFAR-10 python
    version does: pickled dicts with bytes keys, ``b'data'`` uint8 (N, 3072) and
    ``b'labels'`` a list of ints (protocol 2, as the original files)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR10_FILES:
        batch = {
            b"batch_label": f"{name} of a generated fixture".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    return folder


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CIFAR-10 directory, 12 images per batch."""
    return write_cifar10(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")


@pytest.fixture(scope="session")
def cifar10_writer() -> Callable[..., Path]:
    """:func:`write_cifar10`, for tests that need their own (e.g. damaged) directory."""
    return write_cifar10
