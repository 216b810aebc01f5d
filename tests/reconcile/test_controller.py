"""``sovereign controller`` (docs/runbooks.md): converges, wakes at directive instants, elects one
leader.

Real local sites (directories), real state (SQLite, and S3 on a moto server over HTTP), real
time: a withdraw that becomes effective a few seconds from now is carried out by a controller
whose interval is an hour, because it wakes at the directive's ``effective`` instant.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from orchestrator.demo.workspace import Workspace
from orchestrator.logs import JsonLines, stream_sink
from orchestrator.reconcile.controller import (
    Controller,
    ControllerSettings,
    GitSource,
    Outcome,
    PassResult,
    serve_http,
)
from orchestrator.reconcile.retry import Backoff
from orchestrator.state import open_store
from tests.cli.support import run_cli as cli
from tests.reconcile.conftest import WITHDRAW_YAML, LocalFleet

REPO = Path(__file__).resolve().parents[2]
DIRECTIVE = "directives/us-d1.yaml"


def deployments(fleet_dir: Path) -> set[str]:
    root = fleet_dir / ".sovereign" / "sites"
    return {f"{p.parent.parent.name}/{p.stem}" for p in root.glob("*/deployments/*.json")}


def test_once_converges_a_changed_fleet_and_repairs_drift(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["controller", "--once", "--sites", "local", "--fleet", str(ws.fleet_dir), "--json"]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    first = json.loads(out)
    assert first["outcome"] == "applied" and first["changes"] == 65
    assert len(deployments(ws.fleet_dir)) == 32
    log = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert log[-1]["event"] == "reconcile.done" and log[-1]["outcome"] == "applied"
    # drift: a deployment removed behind Sovereign's back is repaired, cause drift
    gone = ws.fleet_dir / ".sovereign" / "sites" / "aws-eu-central-1" / "deployments"
    (gone / "fable-5.json").unlink()
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    again = json.loads(out)
    assert again["outcome"] == "applied" and again["drift"] >= 1
    assert "aws-eu-central-1/fable-5" in deployments(ws.fleet_dir)
    # a changed fleet: a new directive arrives; one pass converges, the next finds nothing
    ws.add_directive("us-doc-2026-06-26.yaml")
    code, out, err = cli(capsys, *args)
    assert code == 0 and json.loads(out)["outcome"] == "applied", err
    code, out, _ = cli(capsys, *args)
    assert json.loads(out)["outcome"] == "in_sync"
    code, _, _ = cli(
        capsys, "plan", "--sites", "local", "--fleet", str(ws.fleet_dir), "--detailed-exitcode"
    )
    assert code == 0


def test_once_exits_4_while_another_run_holds_the_state(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(None, ws.fleet_dir)
    with store.lock("apply"):
        code, out, _ = cli(
            capsys,
            "controller",
            "--once",
            "--sites",
            "local",
            "--fleet",
            str(ws.fleet_dir),
            "--json",
        )
    assert code == 4 and json.loads(out)["outcome"] == "locked"


def run_in_thread(controller: Controller) -> threading.Thread:
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    return thread


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.slow  # waits for a wall-clock instant
def test_wakes_at_a_directives_effective_instant(local_fleet: LocalFleet) -> None:
    effective = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    withdraw = WITHDRAW_YAML.replace(
        "effective: 2026-01-01T00:00:00Z", f"effective: {effective.isoformat()}"
    ).replace("+00:00", "Z")
    root = local_fleet(files={DIRECTIVE: None})
    signed = local_fleet(files={DIRECTIVE: withdraw})  # the same fleet, signed withdraw added
    stream = io.StringIO()
    controller = Controller(
        ControllerSettings(fleet_dir=root, interval=3600, sites_local=True),
        log=JsonLines(stream_sink(stream)),
    )
    thread = run_in_thread(controller)
    try:
        wait_for(lambda: controller.last is not None, 30)
        assert controller.last is not None and controller.last.outcome is Outcome.APPLIED
        assert {"us-1/m-us", "eu-2/m-us", "eu-1/m-us"} <= deployments(root)
        # the withdraw arrives (merged ahead of its effective instant) ...
        for suffix in ("", ".sig"):
            (root / f"{DIRECTIVE}{suffix}").write_bytes(
                (signed / f"{DIRECTIVE}{suffix}").read_bytes()
            )
        controller.stop.set()  # (restart, as a new fleet revision would be picked up anyway)
        thread.join(30)
        controller.stop.clear()
        thread = run_in_thread(controller)
        wait_for(
            lambda: controller.last is not None and controller.last.next_epoch == effective, 30
        )
        assert "us-1/m-us" in deployments(root)  # not yet in force
        # ... and the interval is an hour: only the epoch can wake it
        wait_for(lambda: "us-1/m-us" not in deployments(root), 30)
        # acted at the epoch, not before (no upper bound: a loaded machine may be late)
        assert datetime.now(UTC) >= effective
        left = deployments(root)
        assert "eu-2/m-us" not in left  # governed by US too
        assert {"eu-1/m-us", "us-1/m-open"} <= left  # outside its reach: untouched
    finally:
        controller.stop.set()
        thread.join(30)
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events[0] == "controller.leading" and events.count("reconcile.done") >= 3


@pytest.mark.slow  # three replicas on moto
def test_one_leader_among_three_replicas_on_s3_state(
    local_fleet: LocalFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from tests.cloud_servers import cloud_credentials, moto_server

    root = local_fleet()
    with cloud_credentials(), moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        bucket = f"ctl-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/prod"
        replicas = [
            Controller(
                ControllerSettings(
                    fleet_dir=root,
                    state_url=url,
                    interval=0.5,
                    sites_local=True,
                    standby_interval=0.2,
                ),
                log=JsonLines(stream_sink(io.StringIO())),
            )
            for _ in range(3)
        ]
        threads = [run_in_thread(r) for r in replicas]
        servers = [serve_http(r, "127.0.0.1", 0) for r in replicas]
        try:
            wait_for(lambda: sum(r.is_leader for r in replicas) == 1, 60)
            wait_for(lambda: any(r.last is not None for r in replicas), 60)
            time.sleep(2.0)  # several intervals: leadership must not flap
            leaders = [r for r in replicas if r.is_leader]
            assert len(leaders) == 1
            leader = leaders[0]
            # only the leader reconciles; standbys never ran a pass
            assert all(r.last is None for r in replicas if r is not leader)
            with httpx.Client(trust_env=False) as client:
                for r, server in zip(replicas, servers, strict=True):
                    base = f"http://127.0.0.1:{server.server_address[1]}"
                    health = client.get(base + "/healthz").json()
                    assert health["status"] == "ok" and health["leader"] is (r is leader)
                    metrics = client.get(base + "/metrics").text
                    assert f"sovereign_controller_leader {1.0 if r is leader else 0.0}" in metrics
                base = f"http://127.0.0.1:{servers[replicas.index(leader)].server_address[1]}"
                metrics = client.get(base + "/metrics").text
                assert 'sovereign_controller_last_outcome{outcome="in_sync"} 1.0' in metrics
                assert "sovereign_controller_last_reconcile_timestamp_seconds" in metrics
            # the leader stops (releases the lock): another replica takes over
            leader.stop.set()
            threads[replicas.index(leader)].join(30)
            wait_for(lambda: sum(r.is_leader for r in replicas if r is not leader) == 1, 30)
        finally:
            for r in replicas:
                r.stop.set()
            for t in threads:
                t.join(30)
            for s in servers:
                s.shutdown()


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random

    b = Backoff(base=1.0, cap=30.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    ceilings = [min(30.0, 2.0**n) for n in range(8)]
    assert all(c / 10 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 1.0


def test_a_refusal_waits_a_full_interval_and_failures_back_off(tmp_path: Path) -> None:
    now = datetime(2026, 6, 13, tzinfo=UTC)  # the controller's clock, injected
    controller = Controller(ControllerSettings(fleet_dir=tmp_path, interval=120), clock=lambda: now)
    soon = now + timedelta(seconds=5)
    refused = PassResult(Outcome.REFUSED, now, next_epoch=soon)
    assert controller.wait_after(refused) == 120  # not at the epoch, not sooner: a person acts
    in_sync = PassResult(Outcome.IN_SYNC, now, next_epoch=soon)
    assert controller.wait_after(in_sync) == pytest.approx(5.05)  # the epoch, on its clock
    first = controller.wait_after(PassResult(Outcome.FAILED, now))
    assert first <= 1.0
    assert controller.wait_after(PassResult(Outcome.PARTIAL, now)) <= 2.0


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


OVERFLOWING = """\
id: us-bad
jurisdiction: US
issuer: us-gov
action: withdraw
models: [m-us]
effective: 0001-01-01T00:00:00+01:00
expires: null
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_bad_commit_never_stops_the_controller(local_fleet: LocalFleet, tmp_path: Path) -> None:
    """The unsigned 7-line directive whose offset overflows crashed every pass (and, out of
    ``run``, the controller). Now the pass fails, /healthz and /metrics say degraded, nothing
    of that commit is applied, and the next commit is tried and converges."""
    root = local_fleet()
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "good")
    good = _git(root, "rev-parse", "HEAD")
    stream = io.StringIO()
    controller = Controller(
        ControllerSettings(
            fleet_dir=Path("."),
            git=GitSource(str(root), "main", tmp_path / "checkout"),
            sites_local=True,
            interval=3600,
        ),
        log=JsonLines(stream_sink(stream)),
    )
    assert controller.reconcile_once().outcome is Outcome.APPLIED
    placed = deployments(controller.fleet_dir)
    assert placed
    (root / "directives" / "us-bad.yaml").write_text(OVERFLOWING)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "bad")
    bad = controller.reconcile_once()
    assert bad.outcome is Outcome.FAILED and "effective" in bad.message
    assert deployments(controller.fleet_dir) == placed  # the last good fleet stays in place
    health = controller.health_json()
    assert health["status"] == "degraded" and health["last_good_commit"] == good
    metrics = generate_latest(controller.metrics.registry).decode()
    assert "sovereign_controller_degraded 1.0" in metrics
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert logged[-1]["event"] == "reconcile.failed" and logged[-1]["commit"] != good
    (root / "directives" / "us-bad.yaml").unlink()
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "fixed")
    assert controller.reconcile_once().outcome is Outcome.IN_SYNC  # the next commit is tried
    assert controller.health_json()["status"] == "ok"
    assert (
        "sovereign_controller_degraded 0.0" in generate_latest(controller.metrics.registry).decode()
    )


def test_a_standbys_backoff_is_capped_at_half_a_lease(tmp_path: Path) -> None:
    controller = Controller(
        ControllerSettings(fleet_dir=tmp_path, lease_seconds=6, backoff_base=1, backoff_max=300)
    )
    delays = [controller.standby_delay() for _ in range(20)]  # "database is locked", 20 times
    assert max(delays) <= 3.0
    assert controller.standby_backoff.failures == 20


def test_a_standbys_backoff_resets_when_it_sees_the_lock_held(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    store = open_store(None, root)
    stream = io.StringIO()
    standby = Controller(
        ControllerSettings(fleet_dir=root, sites_local=True, standby_interval=0.05),
        log=JsonLines(stream_sink(stream)),
    )
    standby.standby_backoff.failures = 12  # as after many "database is locked"
    try:
        with store.lock("apply"):  # a held lock: the standby sees a healthy holder
            thread = run_in_thread(standby)
            try:
                wait_for(lambda: "controller.standby" in stream.getvalue(), 60)
                assert standby.standby_backoff.failures == 0
            finally:
                standby.stop.set()
                thread.join(60)
    finally:
        store.close()
