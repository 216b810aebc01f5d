"""Fixtures for state tests: a fresh SQLite store per test and real worker processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.state.sqlite import SqliteStateStore
from tests.processes import spawn

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(db_path)
    yield s
    s.close()


class Worker:
    """``tests.state.worker`` in its own process, with line-by-line output and a timeout."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = spawn(
            [sys.executable, "-m", "tests.state.worker", *args],
            cwd=ROOT,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"worker printed no {prefix!r} within {timeout}s") from None
            if line is None:
                raise AssertionError(f"worker ended before {prefix!r}: {self.stderr()}")
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)  # reap it, so its pid is really gone

    def finish(self, timeout: float = 20.0) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            if w.proc.stdin:
                w.proc.stdin.close()
            w.proc.send_signal(signal.SIGCONT)
            w.kill()
        w.pump.join(timeout=10)
        for stream in (w.proc.stdout, w.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture(scope="session")
def state_cloud_credentials() -> Iterator[None]:
    from tests.cloud_servers import cloud_credentials

    with cloud_credentials():
        yield


@pytest.fixture(scope="session")
def state_moto_url(state_cloud_credentials: None) -> Iterator[str]:
    from tests.cloud_servers import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def state_gcs_url(state_cloud_credentials: None) -> Iterator[str]:
    # The GCP adaptor imports the SDK with its grpcio-status ImportWarning silenced; importing
    # it first keeps that warning (an error under filterwarnings) out of the test helpers too.
    import orchestrator.adaptors.gcp as gcp_adaptor

    gcp_adaptor.storage_module()
    from tests.cloud_servers import fake_gcs_server

    with fake_gcs_server() as url:
        yield url
