"""Real processes against one state file: races, SIGKILL mid-run, stopped holders."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

from orchestrator.state.sqlite import SqliteStateStore
from tests.state.conftest import Worker


def test_two_processes_racing_for_the_lock_exactly_one_wins(
    tmp_path: Path, db_path: Path, workers: list[Worker]
) -> None:
    SqliteStateStore(db_path).close()
    go = tmp_path / "go"
    racers = [Worker("race", str(db_path), str(go)) for _ in range(2)]
    workers.extend(racers)
    time.sleep(1.0)  # both are importing and waiting on the go file
    go.touch()
    codes = sorted(r.finish() for r in racers)
    assert codes == [0, 4]
    loser = next(r for r in racers if r.proc.returncode == 4)
    message = loser.stderr()
    winner = next(r for r in racers if r.proc.returncode == 0)
    assert f"pid {winner.proc.pid}" in message
    assert "operation 'race'" in message and "since" in message


def test_a_sigkilled_holder_is_taken_over_and_recorded(
    db_path: Path, workers: list[Worker]
) -> None:
    holder = Worker("hold", str(db_path), "60")
    workers.append(holder)
    holder.expect("locked")
    holder.send("go")
    assert holder.expect("recorded") == "recorded 1"
    holder.kill()
    store = SqliteStateStore(db_path)
    with store.lock("apply") as lease:  # pid is dead on this host: stale at once
        assert store.record_change(lease, "next", "create", "ok", {}) == 2
    broken = [e for e in store.audit.entries() if e.kind == "lock.broken"]
    assert len(broken) == 1
    assert broken[0].payload["holder"]["pid"] == holder.proc.pid
    assert "gone" in broken[0].payload["reason"]
    assert store.audit.verify().ok
    store.close()


def test_a_live_holder_whose_lease_expired_is_taken_over_and_cannot_write(
    db_path: Path, workers: list[Worker]
) -> None:
    holder = Worker("hold", str(db_path), "0.6")
    workers.append(holder)
    holder.expect("locked")
    holder.proc.send_signal(signal.SIGSTOP)  # alive, but its heartbeat stops
    try:
        time.sleep(1.2)
        store = SqliteStateStore(db_path)
        with store.lock("apply") as lease:
            broken = [e for e in store.audit.entries() if e.kind == "lock.broken"]
            assert "expired" in broken[-1].payload["reason"]
            holder.proc.send_signal(signal.SIGCONT)
            holder.send("write")
            assert holder.expect("lost").startswith("lost this run no longer holds")
            assert holder.finish() == 5
            assert store.record_change(lease, "mine", "create", "ok", {}) == 1
        assert [r["address"] for r in store.recorded_resources()] == ["mine"]
        store.close()
    finally:
        holder.proc.send_signal(signal.SIGCONT)


def test_sigkill_inside_a_transaction_leaves_only_committed_steps(
    db_path: Path, workers: list[Worker]
) -> None:
    crasher = Worker("open-txn", str(db_path))
    workers.append(crasher)
    crasher.expect("in-transaction")
    crasher.kill()
    store = SqliteStateStore(db_path)
    assert store.serial() == 1
    assert [r["address"] for r in store.recorded_resources()] == ["before/crash"]
    assert store.audit.verify().ok
    assert all(e.kind != "half" for e in store.audit.entries())
    with store.lock("apply"):
        pass
    store.close()


def test_sigkill_at_a_random_point_of_a_busy_run_leaves_a_consistent_state(
    db_path: Path, workers: list[Worker]
) -> None:
    writer = Worker("writer", str(db_path))
    workers.append(writer)
    for _ in range(25):
        last = int(writer.expect("serial").split()[1])
    writer.kill()
    store = SqliteStateStore(db_path)
    serial = store.serial()
    resources = store.recorded_resources()
    assert serial >= last
    # one resource per recorded change, and none from a change that did not commit
    assert len(resources) == serial
    assert max(r["serial"] for r in resources) == serial
    report = store.audit.verify()
    assert report.ok, report.problem
    # every committed change was followed by its audit entry, except possibly the last one
    assert report.entries - 1 in (serial, serial - 1)
    store.close()
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
