"""``sovereign gateway --workers 2``: two processes on one port, each following applies."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator.gateway.server import bind
from orchestrator.state import open_store
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory
from tests.gateway.support import Keys, wait_for
from tests.gateway.test_applied import deploy, record
from tests.processes import kill_group, spawn

pytestmark = pytest.mark.slow  # gateway worker processes

CHAT = "/v1/chat/completions"
REPO = Path(__file__).resolve().parents[2]


def test_reuse_port_lets_two_sockets_listen_on_one_port() -> None:
    first = bind("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = bind("127.0.0.1", port, reuse_port=True)
    try:
        assert second.getsockname()[1] == port
    finally:
        first.close()
        second.close()


def _pid(client: httpx.Client, url: str) -> int | None:
    try:
        r = client.get(url + "/healthz")
    except httpx.HTTPError:
        return None
    return int(r.json()["pid"]) if r.status_code == 200 else None


def test_two_workers_share_the_port_and_each_follows_applies(
    keys: Keys, signed_fleet_factory: FleetFactory
) -> None:
    root = signed_fleet_factory({DIRECTIVE_FILE: None}, name="before")
    after = signed_fleet_factory(name="after")
    deploy(root, "us-1", "m-us")
    store = open_store(None, root)
    record(store, root)
    proc = spawn(
        [sys.executable, "-m", "orchestrator", "gateway", "--fleet", str(root), "--port", "0"]
        + ["--token-key", str(keys.public_pem_path), "--workers", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        url = started["url"]
        assert started["workers"] == 2 and started["serial"] == store.serial()
        pids: set[int] = set()
        # Fresh connections: the kernel spreads them over both workers' sockets.
        for _ in range(200):
            with httpx.Client(trust_env=False, timeout=10) as client:
                pid = _pid(client, url)
            if pid is not None:
                pids.add(pid)
            if len(pids) == 2:
                break
        assert len(pids) == 2 and proc.pid not in pids
        # A German national in the US: served until the suspension is applied, then refused
        # by every worker (each reloads on its own).
        headers = keys.headers("US", ["DE"])
        record(store, after)

        def refused_everywhere() -> bool:
            seen: dict[int, int] = {}
            for _ in range(40):
                with httpx.Client(trust_env=False, timeout=10) as client:
                    r = client.post(url + CHAT, json={"model": "m-us"}, headers=headers)
                    seen[_pid(client, url) or 0] = r.status_code
            return len(seen) == 2 and set(seen.values()) == {451}

        wait_for(refused_everywhere, timeout=20)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "gateway stopped" in err


def test_workers_stop_when_their_supervisor_is_killed(
    keys: Keys, signed_fleet_factory: FleetFactory
) -> None:
    """A supervisor killed with SIGKILL (OOM, a CI timeout) cannot stop its workers, and they
    lead their own sessions: the kernel's parent-death signal must end them."""
    root = signed_fleet_factory(name="orphans")
    deploy(root, "us-1", "m-us")
    record(open_store(None, root), root)
    proc = spawn(
        [sys.executable, "-m", "orchestrator", "gateway", "--fleet", str(root), "--port", "0"]
        + ["--token-key", str(keys.public_pem_path), "--workers", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    pids: set[int] = set()
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        for _ in range(200):
            with httpx.Client(trust_env=False, timeout=10) as client:
                pid = _pid(client, url)
            if pid is not None:
                pids.add(pid)
            if len(pids) == 2:
                break
        assert len(pids) == 2
        os.kill(proc.pid, signal.SIGKILL)  # the supervisor only: workers are in other groups
        proc.wait(timeout=30)

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            # a zombie is gone too (its parent, init, reaps it in its own time)
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                return True

        wait_for(lambda: all(gone(p) for p in pids), timeout=60)
    finally:
        kill_group(proc)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_each_worker_writes_its_own_decision_log(
    keys: Keys, signed_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    root = signed_fleet_factory(name="logged")
    deploy(root, "us-1", "m-us", "m-open")
    store = open_store(None, root)
    record(store, root)
    log = tmp_path / "decisions.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "gateway", "--fleet", str(root), "--port", "0"]
        + ["--token-key", str(keys.public_pem_path), "--workers", "2", "--json"]
        + ["--decision-log", str(log), "--gateway-id", "gw-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    sent = 0
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        pids: set[int] = set()
        for _ in range(200):  # fresh connections until both workers have answered
            with httpx.Client(trust_env=False, timeout=10) as client:
                r = client.post(url + CHAT, json={"model": "m-open"}, headers=keys.headers("US"))
                assert r.status_code == 200
                sent += 1
                pid = _pid(client, url)
            if pid is not None:
                pids.add(pid)
            if len(pids) == 2:
                break
        assert len(pids) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not log.exists()  # the supervisor opens no log of its own
    ids: list[str] = []
    for worker in (0, 1):
        lines = [
            json.loads(x)
            for x in (tmp_path / f"decisions.jsonl.w{worker}").read_text().splitlines()
        ]
        assert lines, f"worker {worker} logged nothing"
        (gateway,) = {line["labels"]["gateway"] for line in lines}
        assert gateway.startswith(f"gw-test.w{worker}.")  # and this start's own random part
        assert sorted(line["labels"]["seq"] for line in lines) == list(range(1, len(lines) + 1))
        ids += [line["decision_id"] for line in lines]
    assert len(ids) == len(set(ids)) == sent
