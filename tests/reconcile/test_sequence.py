"""The apply sequence (lock -> freshness -> plan -> interlock -> confirm -> apply) in process,
against real local sites and a real SQLite state; and the lease lost in the middle of it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.errors import AuditError, LeaseLostError, StalePlanError, StateLockedError
from orchestrator.planning.plan import Change, Plan
from orchestrator.reconcile.apply import ApplyObserver
from orchestrator.reconcile.retry import RetryPolicy
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import make_plan, open_session
from tests.reconcile.conftest import LocalFleet

AT = datetime(2026, 6, 13, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


def audit_kinds(root: Path) -> list[str]:
    session = open_session(root, None, at=AT)
    try:
        return [e.kind for e in session.store.audit.entries()]
    finally:
        session.close()


class Recorder:
    """A ``SequenceObserver`` that remembers what it was shown, in order."""

    def __init__(self, on_advanced: object = None) -> None:
        self.events: list[str] = []
        self.on_advanced = on_advanced

    def planned(self, plan: Plan) -> None:
        self.events.append(f"planned {len(plan.changes)}")

    @contextmanager
    def applying(self, plan: Plan) -> Iterator[ApplyObserver]:
        self.events.append("applying")
        yield self
        self.events.append("applied")

    def started(self, target: str, total: int) -> None:
        del target, total

    def advanced(self, target: str, change: Change, ok: bool) -> None:
        del target, ok
        if callable(self.on_advanced):
            self.on_advanced(change)


def test_sequence_plans_confirms_applies_and_converges(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    asked: list[int] = []

    def confirm(plan: Plan) -> bool:
        asked.append(len(plan.changes))
        return True

    shown = Recorder()
    session = open_session(root, None, at=AT)
    try:
        done = plan_and_apply(session, confirm=confirm, observer=shown, retry=FAST)
    finally:
        session.close()
    assert done.result is not None and done.result.ok and not done.declined
    assert asked == [len(done.plan.changes)] and asked[0] > 0
    assert shown.events == [f"planned {asked[0]}", "applying", "applied"]
    again = open_session(root, None, at=AT)
    try:
        second = plan_and_apply(again, confirm=lambda plan: pytest.fail("asked for nothing"))
    finally:
        again.close()
    assert second.plan.empty and second.result is not None and second.result.ok


def test_a_declined_confirmation_applies_nothing(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    session = open_session(root, None, at=AT)
    try:
        done = plan_and_apply(session, confirm=lambda plan: False)
        assert done.declined and not done.plan.empty
        assert session.store.applied_fleet() is None
        assert session.store.recorded_resources() == []
    finally:
        session.close()
    kinds = audit_kinds(root)
    assert "plan.created" in kinds and "apply.started" not in kinds


def test_a_saved_plan_from_another_serial_is_refused_under_the_lock(
    local_fleet: LocalFleet,
) -> None:
    root = local_fleet()
    session = open_session(root, None, at=AT)
    try:
        saved = make_plan(session)
        plan_and_apply(session, retry=FAST)  # the state moves on
        with pytest.raises(StalePlanError, match="state moved"):
            plan_and_apply(session, saved=saved, retry=FAST)
    finally:
        session.close()


def test_the_sequence_waits_for_nobody_when_the_state_is_locked(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    holder = open_session(root, None, at=AT)
    other = open_session(root, None, at=AT)
    try:
        with holder.store.lock("someone else"):
            with pytest.raises(StateLockedError, match="someone else"):
                plan_and_apply(other, retry=FAST)
    finally:
        other.close()
        holder.close()
    assert "plan.created" not in audit_kinds(root)  # nothing planned without the lock


def test_lease_lost_mid_apply_is_a_lease_error_not_an_audit_error(
    local_fleet: LocalFleet,
) -> None:
    """Regression: losing the lock mid-apply used to surface as ``AuditError`` with the advice
    to run `audit verify`, although the log is intact and another run simply holds the state."""
    root = local_fleet()
    db = root / ".sovereign" / "state.db"
    released: list[str] = []

    def break_the_lock(change: Change) -> None:
        if not released:  # what `state unlock --force` from another terminal does
            released.append(change.address)
            with sqlite3.connect(db) as conn:
                conn.execute("DELETE FROM lock")

    session = open_session(root, None, at=AT)
    try:
        with pytest.raises(LeaseLostError) as caught:
            plan_and_apply(
                session, observer=Recorder(on_advanced=break_the_lock), retry=FAST, concurrency=1
            )
        assert not isinstance(caught.value, AuditError)
        assert "no longer holds the state lock" in caught.value.message
        assert caught.value.hint is not None and "audit verify" not in caught.value.hint
        assert "re-run `sovereign apply`" in caught.value.hint
        recorded = [r["address"] for r in session.store.recorded_resources()]
        assert recorded == released  # nothing written after the lock was lost
        assert session.store.audit.verify().ok
    finally:
        session.close()
