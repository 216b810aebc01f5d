"""The state lock under pressure, and the operator's tools for it (docs/runbooks.md, "A stuck state
lock").

* 1,000 concurrent acquire attempts per backend, half from threads and half from processes
  (four of them): never two holders at once (a shared counter of active holders, checked at
  every grant).
* A holder that stalls past its lease: the next run takes over, and the stalled holder's late
  write is refused by the fencing epoch (its write had already passed the lease check).
* ``state lock-info`` names the holder; ``state unlock --force ID`` breaks a live holder's lock,
  audited, and that holder can no longer write.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import StateError, StateLockedError
from orchestrator.state import StateStore, open_store
from orchestrator.state.blobs import Blob, Blobs
from orchestrator.state.objectstore import ObjectStateStore
from tests.state.conftest import Worker

ATTEMPTS = 1000
THREAD_ATTEMPTS = ATTEMPTS // 2
PROCESS_ATTEMPTS = ATTEMPTS - THREAD_ATTEMPTS
PROCESSES = 4


def state_url(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """A fresh store of ``kind`` (sqlite, s3 on moto, gs on fake-gcs-server)."""
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        return str(tmp_path / "state.db")
    if kind == "s3":
        import boto3

        endpoint = request.getfixturevalue("state_moto_url")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        return f"s3://{bucket}/prod"
    from tests.cloud_servers import gcs_client

    endpoint = request.getfixturevalue("state_gcs_url")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    gcs_client(endpoint).create_bucket(bucket)
    return f"gs://{bucket}/prod"


ON_SERVERS = [pytest.param(k, marks=pytest.mark.slow) for k in ("s3", "gs")]


# s3 and gs run on moto / fake-gcs-server: slow (make test-fast leaves them out)
@pytest.fixture(params=["sqlite", *ON_SERVERS])
def url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    return state_url(request.param, request, monkeypatch, tmp_path)


@pytest.fixture(params=ON_SERVERS)
def object_url(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    return state_url(request.param, request, monkeypatch, tmp_path)


class Holders:
    """Counts holders inside the lock; a second one at once is a double grant."""

    def __init__(self, active: Any, doubles: Any, grants: Any, guard: Any) -> None:
        self.active, self.doubles, self.grants, self.guard = active, doubles, grants, guard

    def attempt(self, store: StateStore) -> None:
        try:
            with store.lock("contend"):
                with self.guard:
                    self.active.value += 1
                    self.grants.value += 1
                    if self.active.value > 1:
                        self.doubles.value += 1
                time.sleep(0.002)  # stay inside long enough for an overlap to be seen
                with self.guard:
                    self.active.value -= 1
        except StateLockedError:
            pass


def contend(url: str, attempts: int, shared: tuple[Any, Any, Any, Any]) -> None:
    """One process's share of the attempts, from a few threads of its own (module level: it
    runs in spawned processes)."""
    store = open_store(url, Path("."))
    holders = Holders(*shared)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: holders.attempt(store), range(attempts)))


def test_attempts_from_threads_never_double_grant(url: str, tmp_path: Path) -> None:
    class Box:
        def __init__(self) -> None:
            self.value = 0

    guard = threading.Lock()
    active, doubles, grants = Box(), Box(), Box()
    holders = Holders(active, doubles, grants, guard)
    stores = [open_store(url, tmp_path) for _ in range(16)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda n: holders.attempt(stores[n % len(stores)]), range(THREAD_ATTEMPTS)))
    assert doubles.value == 0
    assert grants.value >= 1
    assert stores[0].current_lock() is None  # every winner released
    assert stores[0].audit.verify().ok


@pytest.mark.slow  # processes racing on moto / fake-gcs-server
def test_attempts_from_processes_never_double_grant(object_url: str) -> None:
    # (SQLite's cross-process racing is tests/state/test_processes.py's subject.)
    url = object_url
    ctx = multiprocessing.get_context("spawn")
    shared = (
        ctx.Value("i", 0, lock=False),  # holders inside the lock now
        ctx.Value("i", 0, lock=False),  # grants while another holder was inside
        ctx.Value("i", 0, lock=False),  # grants
        ctx.Lock(),
    )
    procs = [
        ctx.Process(target=contend, args=(url, PROCESS_ATTEMPTS // PROCESSES, shared), daemon=True)
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
        assert p.exitcode == 0
    active, doubles, grants, _ = shared
    assert doubles.value == 0 and active.value == 0
    assert grants.value >= PROCESSES  # the lock went round
    assert open_store(url, Path(".")).current_lock() is None


class StallingBlobs:
    """Real blobs whose next ``state.json`` write stalls until released (a paused writer)."""

    def __init__(self, inner: Blobs) -> None:
        self.inner = inner
        self.url = inner.url
        self.armed = False
        self.stalled = threading.Event()
        self.resume = threading.Event()

    def get(self, name: str) -> Blob | None:
        return self.inner.get(name)

    def put(
        self, name: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        if self.armed and name == "state.json":
            self.armed = False
            self.stalled.set()
            self.resume.wait(30)
        return self.inner.put(name, data, if_version=if_version, if_absent=if_absent)

    def version(self, name: str) -> str | None:
        return self.inner.version(name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)


def test_a_stalled_holders_late_write_is_refused_by_the_fence(
    object_url: str, tmp_path: Path
) -> None:
    # (SQLite checks the lease inside the write transaction itself: there is no window.)
    from tests.state.test_objectstore import make_blobs

    url = object_url
    blobs = StallingBlobs(make_blobs(url))
    stalled = ObjectStateStore(blobs, lease_seconds=1.0)
    lease = stalled._acquire("apply")  # no heartbeat: it will expire while stalled
    outcome: list[BaseException | int] = []

    def late_write() -> None:
        try:
            outcome.append(stalled.record_change(lease, "late", "create", "ok", {}))
        except StateError as exc:
            outcome.append(exc)

    blobs.armed = True
    writer = threading.Thread(target=late_write)
    writer.start()
    assert blobs.stalled.wait(10)  # past its lease check, about to write
    time.sleep(1.1)  # its lease expires
    taker = open_store(url, tmp_path, lease_seconds=30)
    with taker.lock("apply") as mine:
        assert mine.epoch > lease.epoch
        blobs.resume.set()
        writer.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], StateError)
        assert "no longer holds the state lock" in outcome[0].message
        assert taker.record_change(mine, "mine", "create", "ok", {}) == 1
    assert [r["address"] for r in taker.recorded_resources()] == ["mine"]
    stored = make_blobs(url).get("state.json")
    assert stored is not None and json.loads(stored.data)["fence"] == mine.epoch


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_lock_info_and_force_unlock_of_a_live_holder(
    url: str, tmp_path: Path, workers: list[Worker], capsys: pytest.CaptureFixture[str]
) -> None:
    state = ["--state", url, "--fleet", str(tmp_path)]
    open_store(url, tmp_path).close()
    code, out, _ = cli(capsys, "state", "lock-info", *state, "--json")
    assert code == 0 and json.loads(out) == {
        "locked": False,
        "holder": None,
        "stale": None,
        "damaged": None,
    }
    holder = Worker("hold", url, "60")
    workers.append(holder)
    holder_id = holder.expect("locked").split()[1]
    code, out, _ = cli(capsys, "state", "lock-info", *state, "--json")
    info = json.loads(out)
    assert info["locked"] and info["stale"] is None
    assert info["holder"]["holder_id"] == holder_id
    assert info["holder"]["pid"] == holder.proc.pid and info["holder"]["operation"] == "apply"
    # the wrong id is refused; no terminal and no --yes is refused
    code, _, err = cli(capsys, "state", "unlock", "--force", "nope", *state, "--yes")
    assert code == 1 and holder_id in err
    code, _, err = cli(capsys, "state", "unlock", "--force", holder_id, *state)
    assert code == 1 and "--yes" in err
    code, out, err = cli(
        capsys,
        "state",
        "unlock",
        "--force",
        holder_id,
        "--reason",
        "CI runner lost",
        *state,
        "--yes",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["unlocked"]["holder_id"] == holder_id
    holder.send("write")
    assert holder.expect("lost").startswith("lost this run no longer holds")
    store = open_store(url, tmp_path)
    forced = [e for e in store.audit.entries() if e.kind == "lock.force_unlocked"]
    assert len(forced) == 1 and forced[0].payload["reason"] == "CI runner lost"
    assert forced[0].payload["holder"]["holder_id"] == holder_id
    with store.lock("apply") as lease:  # free at once
        assert store.record_change(lease, "after", "create", "ok", {}) == 1
    assert store.audit.verify().ok
