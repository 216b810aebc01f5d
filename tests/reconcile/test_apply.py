"""Apply in process against real local sites and a real SQLite state."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import AuditError, RefusedError, StalePlanError
from orchestrator.planning.plan import Plan
from orchestrator.providers.base import ResourceKind
from orchestrator.reconcile.apply import ApplyResult, apply_plan, check_fresh
from orchestrator.reconcile.retry import RetryPolicy
from orchestrator.reconcile.session import Session, make_plan, open_session
from tests.reconcile.conftest import WITHDRAW_YAML, LocalFleet

AT = datetime(2026, 6, 13, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


def run(root: Path, allow_outage: str | None = None) -> tuple[Plan, ApplyResult]:
    session = open_session(root, None, at=AT)
    try:
        with session.store.lock("test") as lease:
            plan = make_plan(session)
            return plan, apply_plan(session, plan, lease, allow_outage=allow_outage, retry=FAST)
    finally:
        session.close()


def fresh_plan(root: Path) -> Plan:
    session = open_session(root, None, at=AT)
    try:
        return make_plan(session)
    finally:
        session.close()


def kinds(session: Session) -> list[str]:
    return [e.kind for e in session.store.audit.entries()]


def test_apply_converges_and_records(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    plan, result = run(root)
    assert result.ok
    assert plan.summary().by_op == (13, 0, 0)
    assert fresh_plan(root).empty
    session = open_session(root, None, at=AT)
    try:
        applied = session.store.applied_fleet()
        assert applied is not None and applied.files == session.files
        recorded = {r["address"] for r in session.store.recorded_resources()}
        assert "deployment.eu-2.m-us" in recorded and "artifact.us-1.m-open" in recorded
        log = kinds(session)
        assert log.count("change.applied") == 13
        assert "plan.created" in log and "apply.finished" in log
        assert session.store.audit.verify().ok
    finally:
        session.close()


def test_drift_is_planned_as_drift(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    run(root)
    site = root / ".sovereign" / "sites" / "eu-1"
    (site / "deployments" / "m-open.json").unlink()
    shutil.rmtree(site / "artifacts" / "m-us")
    plan = fresh_plan(root)
    causes = {c.address: (c.op.value, c.cause) for c in plan.changes}
    assert causes == {
        "artifact.eu-1.m-us": ("create", "drift"),
        "deployment.eu-1.m-us": ("update", "drift"),
        "deployment.eu-1.m-open": ("create", "drift"),
    }
    _, result = run(root)
    assert result.ok and fresh_plan(root).empty


def test_a_failing_site_is_isolated_and_a_rerun_converges(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    blocker = root / ".sovereign" / "sites" / "eu-1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # every write at eu-1 fails (transient, retried)
    _, result = run(root)
    assert result.failed_targets == ("eu-1",)
    assert result.results["eu-1"].failed == 1 and result.results["eu-1"].skipped == 3
    assert result.results["us-1"].applied == 4 and result.results["eu-2"].applied == 4
    assert "gave up after 3 attempts" in (result.results["eu-1"].error or "")
    remaining = fresh_plan(root)
    assert {c.target for c in remaining.changes} == {"eu-1"}
    session = open_session(root, None, at=AT)
    try:
        rows = {r["address"]: r for r in session.store.recorded_resources()}
        # The failure is audited, and nothing at eu-1 is believed to exist.
        assert not [a for a in rows if ".eu-1." in a]
        assert "artifact.us-1.m-open" in rows
        failed = [e for e in session.store.audit.entries() if e.kind == "change.failed"]
        assert [e.payload["address"] for e in failed] == ["artifact.eu-1.m-open"]
    finally:
        session.close()
    blocker.unlink()
    _, again = run(root)
    assert again.ok and fresh_plan(root).empty


def test_a_withdraw_deletes_with_the_directive_as_cause(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    run(root)
    # A new directive (an applied one is never edited in place: rollback protection).
    (root / "directives" / "us-w1.yaml").write_text(WITHDRAW_YAML.replace("id: us-d1", "id: us-w1"))
    from tests.fleet.builder import sign

    sign(root / "directives" / "us-w1.yaml", "us-gov")
    plan = fresh_plan(root)
    assert {(c.op.value, c.address, c.cause) for c in plan.changes} == {
        ("delete", "artifact.us-1.m-us", "directive:us-w1"),
        ("delete", "deployment.us-1.m-us", "directive:us-w1"),
        ("delete", "artifact.eu-2.m-us", "directive:us-w1"),  # eu-2 is governed by US
        ("delete", "deployment.eu-2.m-us", "directive:us-w1"),
        ("update", "route.table.*", "directive:us-w1"),
    }
    # US is left with no m-us: explained by a directive, so not refused.
    assert plan.interlocks == ()
    _, result = run(root)
    assert result.ok and fresh_plan(root).empty


def test_interlock_refuses_then_override_is_audited(local_fleet: LocalFleet) -> None:
    root = local_fleet(mutate={"eu.yaml": [("min_sites_per_model: 1", "min_sites_per_model: 3")]})
    plan = fresh_plan(root)
    # A first rollout takes nothing away: EU's shortfall (2 sites of 3) is only a warning.
    assert plan.interlocks == ()
    assert [(w.model, w.deployed, w.required) for w in plan.warnings] == [
        ("m-open", 2, 3),
        ("m-us", 2, 3),
    ]
    _, result = run(root)
    assert result.ok
    # The US stops exporting m-us to the EU: deleting it there leaves EU below its budget.
    us = root / "us.yaml"
    us.write_text(us.read_text().replace("restricted: [EU]", "restricted: []"))
    plan = fresh_plan(root)
    assert [(v.jurisdiction, v.subject, v.count, v.required) for v in plan.interlocks] == [
        ("EU", "m-us", 0, 3)
    ]
    with pytest.raises(RefusedError) as err:
        run(root)
    assert err.value.hint is not None and "--allow-outage" in err.value.hint
    assert (root / ".sovereign" / "sites" / "eu-1" / "deployments" / "m-us.json").exists()
    _, result = run(root, allow_outage="EU loses m-us until CHG-7")
    assert result.ok and result.overridden == "EU loses m-us until CHG-7"
    session = open_session(root, None, at=AT)
    try:
        (entry,) = [e for e in session.store.audit.entries() if e.kind == "interlock.overridden"]
        assert entry.payload["reason"] == "EU loses m-us until CHG-7"
        assert entry.payload["violations"][0]["subject"] == "m-us"
    finally:
        session.close()


def test_saved_plan_refused_when_state_or_fleet_moved(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    saved = fresh_plan(root)
    run(root)  # the state moves
    session = open_session(root, None, at=AT)
    try:
        with pytest.raises(StalePlanError, match="serial"):
            check_fresh(session, saved)
        current = make_plan(session)
        check_fresh(session, current)
    finally:
        session.close()
    local = open_session(root, None, at=AT, sites_local=True)
    try:
        with pytest.raises(StalePlanError, match="--sites local"):
            check_fresh(local, current)
    finally:
        local.close()
    (root / "fleet.yaml").write_text("unlisted_countries: deny\n# edited\n")
    session = open_session(root, None, at=AT)
    try:
        with pytest.raises(StalePlanError, match="fleet files changed"):
            check_fresh(session, current)
    finally:
        session.close()


def test_table_is_published_and_suspend_keeps_deployments(local_fleet: LocalFleet) -> None:
    root = local_fleet(files={"directives/us-d1.yaml": None})
    run(root)
    from tests.fleet.builder import DIRECTIVE_YAML, sign

    (root / "directives" / "us-d1.yaml").write_text(DIRECTIVE_YAML)
    sign(root / "directives" / "us-d1.yaml", "us-gov")
    plan = fresh_plan(root)
    (only,) = plan.changes
    assert only.kind is ResourceKind.ROUTE and only.cause == "directive:us-d1"
    _, result = run(root)
    assert result.ok
    session = open_session(root, None, at=AT)
    try:
        applied = session.store.applied_fleet()
        assert applied is not None and "directives/us-d1.yaml" in applied.files
        log = kinds(session)
        assert log.count("directive.added") == 1
    finally:
        session.close()


class _AuditThatBreaks:
    """A real audit log that starts refusing appends after ``allowed`` change records (a full
    disk, a revoked credential): the apply must stop, fail closed."""

    def __init__(self, real: Any, allowed: int) -> None:
        self.real = real
        self.allowed = allowed

    def append(self, kind: str, payload: Any) -> Any:
        if kind.startswith("change."):
            if self.allowed <= 0:
                raise AuditError("cannot append to the audit log: disk full")
            self.allowed -= 1
        return self.real.append(kind, payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _StoreWithAudit:
    def __init__(self, real: Any, audit: _AuditThatBreaks) -> None:
        self.real = real
        self.audit = audit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_audit_failure_stops_the_apply_and_a_rerun_converges(local_fleet: LocalFleet) -> None:
    root = local_fleet()
    session = open_session(root, None, at=AT)
    try:
        broken = replace(
            session, store=_StoreWithAudit(session.store, _AuditThatBreaks(session.store.audit, 2))
        )
        with session.store.lock("test") as lease:
            plan = make_plan(session)
            with pytest.raises(AuditError, match="could not be recorded"):
                apply_plan(broken, plan, lease, retry=FAST, concurrency=1)
        applied = [e for e in session.store.audit.entries() if e.kind == "change.applied"]
        assert len(applied) == 2  # nothing recorded after the failure...
        assert session.store.applied_fleet() is None  # ...and the table was never published
    finally:
        session.close()
    _, result = run(root)
    assert result.ok and fresh_plan(root).empty


def test_a_departed_site_whose_teardown_fails_stays_known_even_from_old_records(
    local_fleet: LocalFleet,
) -> None:
    """Records written before they named their site: the applied fleet describes the site
    while it is in it; once the teardown fails and the applied fleet has moved on, the failed
    records must carry the site themselves, or its weights would be orphaned."""
    root = local_fleet()
    _, result = run(root)
    assert result.ok
    session = open_session(root, None, at=AT)
    try:
        with session.store.lock("test") as lease:
            for row in session.store.recorded_resources():
                resource = row["resource"]
                if resource["target"] == "eu-2":
                    legacy = {k: v for k, v in resource.items() if k != "site"}
                    session.store.record_change(lease, row["address"], "create", "applied", legacy)
    finally:
        session.close()
    eu = root / "eu.yaml"
    text = eu.read_text()
    head, _, rest = text.partition("  - id: eu-2\n")
    eu.write_text(head + "failover:" + rest.partition("failover:")[2].replace(", eu-2", ""))
    # Something in the way of removing the artifact: the teardown of eu-2 fails.
    blocker = root / ".sovereign" / "sites" / "eu-2" / "artifacts" / ".tmp-m-us-deleting"
    blocker.write_text("not a directory")
    plan, result = run(root)
    assert {c.reason for c in plan.changes if c.target == "eu-2"} == {"site eu-2 left the fleet"}
    assert result.failed_targets == ("eu-2",)
    session = open_session(root, None, at=AT)
    try:
        assert set(session.departed) == {"eu-2"}  # the applied fleet no longer names it
    finally:
        session.close()
    blocker.unlink()
    _, result = run(root)
    assert result.ok
    session = open_session(root, None, at=AT)
    try:
        assert session.departed == {}
    finally:
        session.close()
    assert not list((root / ".sovereign" / "sites" / "eu-2" / "artifacts").iterdir())
