"""Carry a plan out: sites in parallel, each site's changes in order, each site on its own.

Phases, so that the data plane never routes to something that is not there yet and stops
routing before anything is removed:

1. creates and updates, every site concurrently (bounded ``ThreadPoolExecutor``);
2. fleet-wide route resources: the routing table (recording the fleet as applied, which the
   gateway hot-reloads) and DNS records;
3. deletes, every site concurrently (a site that failed in phase 1 does nothing more).

Before any provider is called, a placement (artifact or deployment, created or updated) is
checked against R1, R2 and R4 for its (model, site) (``reconcile.law``): whoever asked for it,
a change the law forbids is refused, audited as ``change.refused`` and never written.

Every change is: provider apply (transient errors retried with full-jitter backoff) ->
``store.record_change`` -> audit ``change.applied``/``change.failed``. Recording happens on the
calling thread only (store backends need not be thread-safe); a worker waits until its step is
recorded before the next. If the audit log cannot be appended to, the apply stops: fail closed.
A crash at any point leaves the state consistent, and a re-run converges because providers
apply idempotently and the next plan is made from what the sites really hold.

Over 400 lines on purpose: one algorithm, whose ordering guarantees (the phases above) hold only if
its parts are read and changed together.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator.errors import (
    AuditError,
    LeaseLostError,
    ProviderError,
    StalePlanError,
    StateError,
    TransientProviderError,
)
from orchestrator.fleet.model import Site
from orchestrator.planning.departed import site_record
from orchestrator.planning.plan import TABLE_TARGET, Change, Plan
from orchestrator.planning.scope import describe_scope, outside_scope
from orchestrator.planning.trust import (
    TRUST_PINNED,
    TRUST_ROTATED,
    TRUST_UNPINNED,
    TrustChange,
    pins_after,
)
from orchestrator.providers.base import Op, Resource, ResourceKind
from orchestrator.reconcile.interlock import enforce
from orchestrator.reconcile.law import forbidden_placement, instants_for
from orchestrator.reconcile.retry import RetryPolicy, call_with_retry
from orchestrator.reconcile.rollback import applied_records, ledger_of
from orchestrator.reconcile.session import Session, audit_directives
from orchestrator.state.base import PinnedAuthorities
from orchestrator.state.lease import Lease

ENV_CONCURRENCY = "SOVEREIGN_APPLY_CONCURRENCY"


class ApplyObserver(Protocol):
    """Progress callbacks (called from worker threads)."""

    def started(self, target: str, total: int) -> None: ...

    def advanced(self, target: str, change: Change, ok: bool) -> None: ...


class _Silent:
    def started(self, target: str, total: int) -> None:
        del target, total

    def advanced(self, target: str, change: Change, ok: bool) -> None:
        del target, change, ok


def silent_observer() -> ApplyObserver:
    """An ``ApplyObserver`` that reports nothing."""
    return _Silent()


@dataclass
class TargetResult:
    target: str
    total: int
    applied: int = 0
    failed: int = 0
    skipped: int = 0
    refused: int = 0  # changes the law forbade at the point of action (counted in failed)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "total": self.total,
            "applied": self.applied,
            "failed": self.failed,
            "skipped": self.skipped,
            "refused": self.refused,
            "error": self.error,
        }


@dataclass
class ApplyResult:
    results: dict[str, TargetResult] = field(default_factory=dict)
    serial: int = 0
    overridden: str | None = None

    @property
    def failed_targets(self) -> tuple[str, ...]:
        return tuple(t for t, r in sorted(self.results.items()) if not r.ok)

    @property
    def ok(self) -> bool:
        return not self.failed_targets

    @property
    def refused_targets(self) -> tuple[str, ...]:
        """Targets where the law refused a change (docs/planning.md): the apply exits 1, not 3."""
        return tuple(t for t, r in sorted(self.results.items()) if r.refused)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "serial": self.serial,
            "failed": list(self.failed_targets),
            "refused": list(self.refused_targets),
            "targets": [r.to_json() for _, r in sorted(self.results.items())],
            "interlock_override": self.overridden,
        }


def resource_json(r: Resource | None, site: Site | None = None) -> dict[str, Any] | None:
    """A resource as the state records it; with the site it is placed at, so that the site
    can still be reached to tear it down once it leaves the fleet (planning.departed)."""
    if r is None:
        return None
    out: dict[str, Any] = {
        "kind": r.kind.value,
        "target": r.target,
        "model": r.model,
        "key": r.key,
        "spec": r.spec_dict(),
    }
    if site is not None:
        out["site"] = site_record(site)
    return out


def check_fresh(session: Session, plan: Plan) -> None:
    """A saved plan applies only to the state and fleet it was made from (docs/planning.md)."""
    lineage, serial = session.store.lineage(), session.store.serial()
    if plan.lineage != lineage:
        raise StalePlanError(
            f"the plan was made for state lineage {plan.lineage}, this state is {lineage}",
            hint="make a new plan against this state: sovereign plan --out FILE",
        )
    if plan.serial != serial:
        raise StalePlanError(
            f"the state moved since the plan was made (serial {plan.serial} -> {serial})",
            hint="make a new plan: sovereign plan --out FILE, then sovereign apply FILE",
        )
    made_for = "local" if session.sites_local else None
    if plan.sites != made_for:
        raise StalePlanError(
            f"the plan was made with --sites {plan.sites or 'own'}; this apply runs with "
            f"--sites {made_for or 'own'}",
            hint="apply the plan without --sites (it carries its own), or make a new plan",
        )
    made_by = None if session.engine == "builtin" else session.engine
    if plan.engine != made_by:
        raise StalePlanError(
            f"the plan was made with --engine {plan.engine or 'builtin'}; this apply runs "
            f"--engine {session.engine}",
            hint="apply with the same --engine option the plan was made with",
        )
    if plan.scope != session.scope:
        raise StalePlanError(
            f"the plan was made for {describe_scope(plan.scope)}; this apply covers "
            f"{describe_scope(session.scope)}",
            hint="apply a saved plan without --jurisdiction (its recorded scope is used), or "
            "with exactly the --jurisdiction options it was made with",
        )
    stray = outside_scope(plan.changes, plan.scope)
    if stray:
        raise StalePlanError(
            f"the plan changes {stray[0].address} ({stray[0].jurisdiction}), outside its "
            f"recorded scope {describe_scope(plan.scope)}",
            hint="the plan file was edited; make a new plan: sovereign plan --out FILE",
        )
    if plan.fleet_digest != session.digest:
        raise StalePlanError(
            "the fleet files changed since the plan was made",
            hint="make a new plan from the current fleet: sovereign plan --out FILE",
        )


@dataclass
class _Step:
    change: Change
    ok: bool
    attempts: int
    error: str | None
    refused: bool = False  # the law forbade it: nothing was written, nothing is recorded
    done: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None


class _Runner:
    def __init__(
        self,
        session: Session,
        lease: Lease,
        observer: ApplyObserver,
        retry: RetryPolicy,
        concurrency: int,
        step_delay: float,
    ) -> None:
        self.session = session
        self.lease = lease
        self.observer = observer
        self.retry = retry
        self.concurrency = concurrency
        self.step_delay = step_delay
        self.steps: queue.Queue[_Step] = queue.Queue()
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self.serial = session.store.serial()
        self.trust: tuple[TrustChange, ...] = ()
        self.trust_recorded = False

    # -- recording (calling thread only) ---------------------------------------------------

    def record(self, step: _Step) -> None:
        c = step.change
        rc = c.to_resource_change()
        try:
            if step.refused:
                self.session.store.audit.append(
                    "change.refused",
                    {"address": c.address, "op": c.op.value, "cause": c.cause, "law": step.error},
                )
                return
            if c.kind is ResourceKind.ROUTE and c.target == TABLE_TARGET:
                if step.ok:
                    store, fleet, files = self.session.store, self.session.fleet, self.session.files
                    records = applied_records(fleet, files, ledger_of(store))
                    before = store.applied_fleet()
                    # Who may order changes with the fleet that says so, in the same step.
                    pins = self.pins_after() if self.trust else None
                    self.serial = store.record_applied_fleet(self.lease, files, records, pins)
                    audit_directives(self.session, None if before is None else dict(before.files))
                    if self.trust:
                        self.audit_trust()
            elif step.ok:
                site = self.session.fleet.sites.get(c.target)
                after = None if c.op is Op.DELETE else resource_json(rc.after, site)
                self.serial = self.session.store.record_change(
                    self.lease, c.address, c.op.value, "applied", after
                )
            else:
                # A failed step changes nothing Sovereign manages: keep what was recorded (so
                # the next plan still recognises drift), record only the failed outcome. A
                # record from before records named their site gains it now, so that a site
                # that left the fleet can still be found once the applied fleet moves on.
                kept = self.recorded(c.address)
                if kept is not None and "site" not in kept and c.kind is not ResourceKind.ROUTE:
                    known = self.session.departed.get(c.target)
                    site = self.session.fleet.sites.get(c.target) or (known and known.site)
                    if site:
                        kept = {**kept, "site": site_record(site)}
                self.serial = self.session.store.record_change(
                    self.lease, c.address, c.op.value, "failed", kept
                )
            payload: dict[str, Any] = {
                "address": c.address,
                "op": c.op.value,
                "cause": c.cause,
                "attempts": step.attempts,
            }
            if step.error is not None:
                payload["error"] = step.error
            self.session.store.audit.append(
                "change.applied" if step.ok else "change.failed", payload
            )
        except Exception as exc:  # noqa: BLE001 - re-raised by apply_plan once workers stop
            # Fail closed: nothing more is applied once a step cannot be recorded. Workers
            # wait on ``done``, so even a bug here must stop them rather than hang them.
            step.failure = exc
            self.fatal = self.fatal or exc
            self.stop.set()
        finally:
            step.done.set()

    def pins_after(self) -> dict[str, PinnedAuthorities]:
        return pins_after(self.session.store.pinned_authorities(), self.trust, datetime.now(UTC))

    def audit_trust(self) -> None:
        """One audit entry per change of who may order (fail closed: an error propagates)."""
        kinds = {"pin": TRUST_PINNED, "rotate": TRUST_ROTATED, "unpin": TRUST_UNPINNED}
        for t in self.trust:
            self.session.store.audit.append(kinds[t.kind], t.to_json())
        self.trust_recorded = True

    def recorded(self, address: str) -> dict[str, Any] | None:
        for row in self.session.store.recorded_resources():
            if row.get("address") == address and isinstance(row.get("resource"), dict):
                resource: dict[str, Any] = row["resource"]
                return resource
        return None

    def drain(self, futures: Sequence[Future[TargetResult]]) -> None:
        while True:
            try:
                step = self.steps.get(timeout=0.02)
            except queue.Empty:
                if all(f.done() for f in futures):
                    break
                continue
            self.record(step)
        while not self.steps.empty():
            self.record(self.steps.get_nowait())

    # -- one change ------------------------------------------------------------------------

    def carry_out(self, change: Change) -> _Step:
        if self.step_delay > 0:
            time.sleep(self.step_delay)
        fleet, rc = self.session.fleet, change.to_resource_change()
        if change.kind is ResourceKind.ROUTE and change.target == TABLE_TARGET:
            return _Step(change, True, 1, None)  # recorded, not carried out by a provider
        refusal = forbidden_placement(
            fleet, change, instants_for(fleet, self.session.at, datetime.now(UTC))
        )
        if refusal is not None:
            return _Step(change, False, 0, f"refused by the law: {refusal}", refused=True)
        action: Callable[[], None]
        if change.kind is ResourceKind.ROUTE:
            route_provider = self.session.providers.for_route(change.target)

            def action() -> None:
                route_provider.apply_route(change.target, rc)
        else:
            site = self.session.site(change.target)  # also a site that left the fleet
            provider = self.session.providers.for_site_value(site)

            def action() -> None:
                provider.apply(site, rc)

        try:
            _, attempts = call_with_retry(action, self.retry)
        except TransientProviderError as exc:
            return _Step(
                change,
                False,
                self.retry.max_attempts,
                f"{exc.message} (gave up after {self.retry.max_attempts} attempts)",
            )
        except ProviderError as exc:
            return _Step(change, False, 1, exc.message)
        except Exception as exc:  # noqa: BLE001 - one site's bug must not fail other sites
            return _Step(change, False, 1, f"{type(exc).__name__}: {exc}")
        return _Step(change, True, attempts, None)

    def run_target(
        self, target: str, changes: Sequence[Change], result: TargetResult
    ) -> TargetResult:
        for i, change in enumerate(changes):
            if self.stop.is_set() or not result.ok:
                result.skipped += len(changes) - i
                break
            step = self.carry_out(change)
            self.steps.put(step)
            step.done.wait()
            if step.failure is not None:
                result.error = f"not recorded: {step.failure}"
                result.skipped += len(changes) - i - 1
                break
            self.observer.advanced(target, change, step.ok)
            if step.ok:
                result.applied += 1
            else:
                result.failed += 1
                result.refused += 1 if step.refused else 0
                result.error = step.error
        return result

    def run_phase(self, groups: dict[str, list[Change]], results: dict[str, TargetResult]) -> None:
        if not groups:
            return
        workers = max(1, min(self.concurrency, len(groups)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
            futures = [
                pool.submit(self.run_target, t, cs, results[t]) for t, cs in sorted(groups.items())
            ]
            self.drain(futures)
            for f in futures:
                f.result()


def _changes_table(plan: Plan) -> bool:
    return any(c.kind is ResourceKind.ROUTE and c.target == TABLE_TARGET for c in plan.changes)


def _concurrency_from_env() -> int:
    raw = os.environ.get(ENV_CONCURRENCY, "")
    return max(1, int(raw)) if raw.isdigit() else 8


def apply_plan(
    session: Session,
    plan: Plan,
    lease: Lease,
    *,
    allow_outage: str | None = None,
    observer: ApplyObserver | None = None,
    retry: RetryPolicy | None = None,
    concurrency: int | None = None,
    step_delay: float = 0.0,
    held_back: Mapping[str, str] | None = None,
) -> ApplyResult:
    """Carry ``plan`` out under ``lease``. The caller holds the lock and checked freshness
    (``reconcile.sequence.plan_and_apply`` does both). ``step_delay`` seconds are waited before
    each change, so that a test can catch the apply in the middle.

    ``held_back`` names targets whose changes must not be carried out (target -> why, e.g. a
    site a saved plan could not be verified for): they are reported failed, all skipped."""
    held_back = dict(held_back or {})
    enforce(plan.interlocks, allow_outage, changed=plan.jurisdictions())
    audit = session.store.audit
    overridden = None
    if plan.interlocks:
        overridden = allow_outage
        audit.append(
            "interlock.overridden",
            {
                "reason": allow_outage,
                "violations": [v.to_json() for v in plan.interlocks],
                "fleet_digest": plan.fleet_digest,
            },
        )
    audit.append(
        "apply.started",
        {
            "serial": plan.serial,
            "fleet_digest": plan.fleet_digest,
            "plan_sha256": plan.sha256(),
            "summary": plan.summary().to_json(),
            "held_back": held_back,
            "sites": "local" if session.sites_local else None,  # reused: recorded_sites
        },
    )
    runner = _Runner(
        session,
        lease,
        observer or _Silent(),
        retry or RetryPolicy.from_env(),
        concurrency or _concurrency_from_env(),
        max(0.0, step_delay),
    )
    runner.trust = plan.trust
    results: dict[str, TargetResult] = {
        t: TargetResult(t, len(cs)) for t, cs in plan.by_target().items()
    }
    for t in held_back:
        results.setdefault(t, TargetResult(t, 0))  # e.g. a site that could not be observed
    for t, r in results.items():
        if t in held_back:
            r.skipped, r.error = r.total, held_back[t]
        runner.observer.started(t, r.total)
    site_up: dict[str, list[Change]] = {}
    routes: dict[str, list[Change]] = {}
    site_down: dict[str, list[Change]] = {}
    for c in plan.changes:
        if c.target in held_back:
            continue
        if c.kind is ResourceKind.ROUTE:
            routes.setdefault(c.target, []).append(c)
        elif c.op is Op.DELETE:
            site_down.setdefault(c.target, []).append(c)
        else:
            site_up.setdefault(c.target, []).append(c)
    runner.run_phase(site_up, results)
    if runner.fatal is None:
        # Route targets go one at a time: there are few, and each publishes a fleet-wide view.
        for target, cs in sorted(routes.items()):
            runner.run_phase({target: cs}, results)
    if runner.fatal is None:
        runner.run_phase({t: cs for t, cs in site_down.items() if results[t].ok}, results)
        for t, cs in site_down.items():
            if not results[t].ok:
                results[t].skipped += len(cs)
    if isinstance(runner.fatal, LeaseLostError):
        # Not a damaged log: another run holds the state now, and it records its own steps.
        raise LeaseLostError(
            f"the apply stopped: {runner.fatal.message}",
            hint="nothing more was written by this run; wait for the other run to finish "
            "(`sovereign status` shows the state), then re-run `sovereign apply`: it converges "
            "from what the sites really hold",
        ) from runner.fatal
    if runner.fatal is not None and not isinstance(runner.fatal, (AuditError, StateError)):
        raise runner.fatal
    if runner.fatal is not None:
        raise AuditError(
            f"the apply stopped because a step could not be recorded: {runner.fatal}",
            hint="check the state store, run `sovereign audit verify`, then re-run "
            "`sovereign apply` (it converges from what the sites really hold)",
        ) from runner.fatal
    if plan.trust and runner.fatal is None and not _changes_table(plan):
        # Pins with no new fleet to publish (a state kept from before pins): recorded alone.
        runner.serial = session.store.replace_pins(
            lease,
            runner.pins_after(),
            audit_kind=TRUST_PINNED,
            audit_payload={"changes": [t.to_json() for t in plan.trust]},
        )
    result = ApplyResult(results, runner.serial, overridden)
    audit.append(
        "apply.finished",
        {"ok": result.ok, "failed": list(result.failed_targets), "serial": result.serial},
    )
    return result
