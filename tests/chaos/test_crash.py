"""Crash campaign: ``apply`` and a leading controller killed with SIGKILL at random points.

Each run of the apply campaign takes every site's deployments away (drift), starts a real
apply process that waits a little before each change, kills it at a random point (before the
lock, mid-change, between changes, or after it finished), then re-runs apply. After every run:
the re-run converges (the next plan is empty, every deployment is back), ``audit verify``
passes, and no change was applied twice: judged on what the provider received (every
deployment and artifact the killed run had placed keeps its file identity through the re-run)
and on the audit log (at most one ``change.applied`` per address since the drift). On the
embedded default (SQLite) and on S3 state over HTTP (moto).
A stopped holder's lease is taken over once it expires, and the holder, resumed, writes
nothing more (fenced). A controller replica killed while leader is replaced by a standby,
which converges without doing anything twice.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.demo.workspace import Workspace, prepare_workspace
from orchestrator.errors import StateError
from orchestrator.state import open_store
from tests.chaos.conftest import count, runs
from tests.cli.support import run_cli
from tests.processes import kill_group, spawn

REPO = Path(__file__).resolve().parents[2]
AT = "2026-06-13T00:00:00Z"
FULL = 32  # deployments of the localised example fleet with the US directive, at AT
STEP_DELAY = 0.01

pytestmark = pytest.mark.slow


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = prepare_workspace(REPO / "regions", tmp_path / "ws")
    w.add_directive("us-doc-2026-06-12.yaml")
    return w


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    out["PYTHONPATH"] = str(REPO)
    return out


def start_apply(w: Workspace, state: str, *, delay: float, lease: float) -> subprocess.Popen[str]:
    return spawn(
        [sys.executable, "-m", "tests.chaos.runner", str(w.fleet_dir), AT, str(delay), state]
        + [str(lease)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        stdin=subprocess.DEVNULL,
    )


def deployments(w: Workspace) -> int:
    return len(list((w.fleet_dir / ".sovereign" / "sites").glob("*/deployments/*.json")))


def provider_writes(w: Workspace) -> dict[str, tuple[int, int]]:
    """What the local provider has written, as it holds it: every deployment manifest and every
    artifact directory at every site, with its identity (inode, modification time). The
    provider writes both by renaming a new file or directory into place, so a placement carried
    out again shows as a new identity for the same path: "applied twice" is read off what the
    provider received, not off the audit log."""
    root = w.fleet_dir / ".sovereign" / "sites"
    out: dict[str, tuple[int, int]] = {}
    for pattern in ("*/deployments/*.json", "*/artifacts/*"):
        for path in root.glob(pattern):
            if path.name.startswith("."):
                continue  # a staging directory of a write the kill interrupted
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns)
    return out


def written_again(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> list[str]:
    """Placements present before that the provider received again (or lost) since."""
    return sorted(k for k, ident in before.items() if after.get(k) != ident)


def state_args(w: Workspace, state: str) -> list[str]:
    return ["--fleet", str(w.fleet_dir), *([] if state == "-" else ["--state", state])]


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def audit_entries(w: Workspace, state: str) -> list[tuple[int, str, dict[str, object]]]:
    store = open_store(None if state == "-" else state, w.fleet_dir, create=False)
    try:
        return [(e.seq, e.kind, dict(e.payload)) for e in store.audit.entries()]
    finally:
        store.close()


def applied_twice(w: Workspace, state: str, since: int) -> list[str]:
    applied = Counter(
        str(p["address"])
        for seq, kind, p in audit_entries(w, state)
        if seq > since and kind == "change.applied"
    )
    return [address for address, n in applied.items() if n > 1]


def last_seq(w: Workspace, state: str) -> int:
    entries = audit_entries(w, state)
    return entries[-1][0] if entries else 0


def check_converged(
    capsys: pytest.CaptureFixture[str], w: Workspace, state: str, *, at: str | None = AT
) -> None:
    when = ["--at", at] if at else []
    code, out, err = run_cli(
        capsys, "plan", *state_args(w, state), "--sites", "local", *when, "--detailed-exitcode"
    )
    assert code == 0, out + err
    code, out, err = run_cli(capsys, "audit", "verify", *state_args(w, state))
    assert code == 0, out + err


def test_apply_killed_at_random_points_converges(
    ws: Workspace, state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = "SQLite" if state_url == "-" else "S3 (moto)"
    campaign = f"apply SIGKILL, {backend}"
    rng = random.Random(int(os.environ.get("SOVEREIGN_CHAOS_SEED", "13")))
    apply = ["apply", *state_args(ws, state_url), "--sites", "local", "--at", AT, "--yes"]
    code, out, err = run_cli(capsys, *apply)
    assert code == 0, out + err
    # S3 state costs several round trips per step: its smoke run kills once, the campaign fully.
    kills = runs() if state_url == "-" or "SOVEREIGN_CHAOS_RUNS" in os.environ else 1
    for _ in range(kills):
        shutil.rmtree(ws.fleet_dir / ".sovereign" / "sites")  # drift: every deployment gone
        since = last_seq(ws, state_url)
        proc = start_apply(ws, state_url, delay=STEP_DELAY, lease=60)
        target = rng.randint(0, FULL)
        wait_for(lambda: deployments(ws) >= target or proc.poll() is not None)  # noqa: B023
        time.sleep(rng.uniform(0, STEP_DELAY))
        seen = deployments(ws)
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            count(campaign, "killed before any deployment" if seen == 0 else "killed mid-apply")
        else:
            assert proc.returncode == 0, stderr
            count(campaign, "finished before the kill")
        placed = provider_writes(ws)  # what the provider holds after the kill
        code, out, err = run_cli(capsys, *apply)  # the re-run takes the dead holder's lock over
        assert code == 0, out + err
        assert deployments(ws) == FULL
        check_converged(capsys, ws, state_url)
        # nothing the killed run placed was placed again, as the provider saw it
        assert written_again(placed, provider_writes(ws)) == []
        assert applied_twice(ws, state_url, since) == []  # and the audit log agrees
        count(campaign, "placements the killed run made, none written again", len(placed))
        count(campaign, "runs converged, audit verified, nothing applied twice (provider-side)")


@pytest.mark.parametrize("state_url", ["s3"], indirect=True)
def test_a_stopped_holders_lease_is_taken_over_after_expiry_and_it_is_fenced(
    ws: Workspace, state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """On S3 state (several hosts share it, so expiry is what frees a lock). On SQLite a holder
    stopped inside a write transaction keeps the database file locked until it resumes (other
    runs get "database is locked", exit 1): a frozen process there is not fenced by its lease."""
    lease = 4.0  # the apply tried right after the stop must meet it still held, even under load
    proc = start_apply(ws, state_url, delay=0.05, lease=lease)
    try:
        wait_for(lambda: deployments(ws) >= 2)
        proc.send_signal(signal.SIGSTOP)  # alive (so not stale at once), its heartbeat stops
        stopped_at = time.monotonic()
        apply = ["apply", *state_args(ws, state_url), "--sites", "local", "--at", AT, "--yes"]
        code, _, err = run_cli(capsys, *apply)
        assert code == 4 and f"pid {proc.pid}" in err, err  # still validly held
        time.sleep(max(0.0, lease + 0.3 - (time.monotonic() - stopped_at)))
        code, out, err = run_cli(capsys, *apply)  # after expiry: taken over
        assert code == 0, out + err
        assert deployments(ws) == FULL
    finally:
        proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "LeaseLostError" in stderr, stderr
    check_converged(capsys, ws, state_url)
    broken = [p for _, kind, p in audit_entries(ws, state_url) if kind == "lock.broken"]
    assert broken and "expired" in str(broken[-1]), broken
    count(
        "lease expiry takeover", f"held, expired, taken over, old holder fenced ({state_url[:2]})"
    )


def test_a_controller_killed_while_leader_is_replaced(
    ws: Workspace, state_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("SOVEREIGN_CHAOS_SEED", "13")))
    args = [sys.executable, "-m", "orchestrator", "controller", "--sites", "local"]
    args += [*state_args(ws, state_url), "--interval", "0.3", "--lease-seconds", "6", "--port", "0"]
    replicas = []
    for i in range(2):
        log = (tmp_path / f"controller-{i}.log").open("w")
        replicas.append(
            spawn(args, cwd=REPO, stdout=log, stderr=log, env=env(), stdin=subprocess.DEVNULL)
        )

    def leader_pid() -> int | None:
        try:  # the first replica may be creating the store right now
            store = open_store(None if state_url == "-" else state_url, ws.fleet_dir, create=False)
        except StateError:
            return None
        try:
            held = store.current_lock()
        finally:
            store.close()
        return held.pid if held is not None and held.operation == "controller" else None

    try:
        wait_for(lambda: (ws.fleet_dir / ".sovereign").exists() and leader_pid() is not None)
        wait_for(
            lambda: (
                deployments(ws) > 0
                and run_cli(
                    capsys,
                    "plan",
                    *state_args(ws, state_url),
                    "--sites",
                    "local",
                    "--detailed-exitcode",
                )[0]
                == 0
            )
        )
        converged = deployments(ws)
        for _ in range(max(1, runs() // 20)):
            leader = leader_pid()
            assert leader is not None
            victim = next(p for p in replicas if p.pid == leader)
            since = last_seq(ws, state_url)
            shutil.rmtree(ws.fleet_dir / ".sovereign" / "sites")  # drift for the leader to repair
            time.sleep(rng.uniform(0, 0.6))
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
            replicas.remove(victim)
            placed = provider_writes(ws)  # what the dead leader had placed
            wait_for(lambda: leader_pid() not in (None, leader), 120)  # noqa: B023
            wait_for(lambda: deployments(ws) == converged, 120)
            check_converged(capsys, ws, state_url, at=None)
            assert written_again(placed, provider_writes(ws)) == []
            assert applied_twice(ws, state_url, since) == []
            count(
                f"controller leader SIGKILL, {'SQLite' if state_url == '-' else 'S3 (moto)'}",
                "leader replaced, converged, nothing applied twice",
            )
            log = (tmp_path / f"controller-r{len(replicas)}.log").open("w")
            replicas.append(
                spawn(args, cwd=REPO, stdout=log, stderr=log, env=env(), stdin=subprocess.DEVNULL)
            )
    finally:
        for p in replicas:
            p.send_signal(signal.SIGTERM)
        for p in replicas:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                pass
            kill_group(p)  # the group too, and whatever did not stop
