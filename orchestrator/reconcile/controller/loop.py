"""The leader loop: lead when the state lock is free, stand by otherwise, and
reconcile pass after pass (the package docstring says when it wakes).

Part of the controller (``orchestrator.reconcile.controller``: its docstring says what the
controller does and when).
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import (
    RefusedError,
    SovereignError,
    StateLockedError,
)
from orchestrator.logs import JsonLines
from orchestrator.planning.decommission import DecommissionPending
from orchestrator.planning.deferral import window_states
from orchestrator.planning.plan import CauseKind, WaitReason, cause_kind
from orchestrator.reconcile.controller.metrics import ControllerMetrics
from orchestrator.reconcile.controller.passes import (
    OPERATION,
    ControllerSettings,
    Outcome,
    PassResult,
    next_epoch_after,
)
from orchestrator.reconcile.retry import Backoff
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import open_session
from orchestrator.state import open_store
from orchestrator.state.lease import Lease


class Controller:
    """One replica. ``run`` loops until ``stop`` is set; ``reconcile_once`` is one pass."""

    def __init__(
        self,
        settings: ControllerSettings,
        *,
        log: Callable[..., None] | None = None,
        metrics: ControllerMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.log = log or JsonLines()
        self.metrics = metrics or ControllerMetrics()
        self.clock = clock
        self.stop = threading.Event()
        self.is_leader = False
        self.last: PassResult | None = None
        self.last_tick = time.monotonic()
        self.backoff = Backoff(settings.backoff_base, settings.backoff_max)
        self._said_sites = False  # the reused --sites is said once, not every pass
        # the standby's own backoff (errors reading the lock), reset whenever it sees it held
        self.standby_backoff = Backoff(settings.backoff_base, settings.backoff_max)
        self.last_good_commit: str | None = None

    @property
    def fleet_dir(self) -> Path:
        if self.settings.git is not None:
            return self.settings.git.checkout / self.settings.fleet_dir
        return self.settings.fleet_dir

    # --- one pass ---------------------------------------------------------------------------

    def reconcile_once(self, lease: Lease | None = None) -> PassResult:
        """Pull, load, plan, check, apply; never raises for a product error (it is the
        outcome). With ``lease`` the pass applies under that held lock (leadership)."""
        started = self.clock()
        commit: str | None = None
        try:
            if self.settings.git is not None:
                commit = self.settings.git.pull()
            # The session's store judges the leader's lease (its expiry margin) with the same
            # length the lease was taken with; a shorter --lease-seconds than the default would
            # otherwise look about to expire at every write, and no pass would ever apply.
            # The pass judges the law, the change windows and the rollout gates at the instant
            # it started (the injected clock; real sites refuse any other than now).
            session = open_session(
                self.fleet_dir,
                self.settings.state_url,
                at=started,
                sites_local=self.settings.sites_local,
                lease_seconds=self.settings.lease_seconds,
            )
            if session.sites_recorded and not self._said_sites:
                self._said_sites = True
                self.log("controller.sites", sites="local", source="recorded by the last apply")
            pending: DecommissionPending | None = None
            try:
                try:
                    done = plan_and_apply(session, operation=OPERATION, lease=lease)
                except DecommissionPending as exc:
                    # The controller never decommissions: it reports it (a refused pass, exit
                    # 1) and carries out the other jurisdictions' changes.
                    pending = exc
                    others = sorted(session.fleet.jurisdictions)
                    session.close()
                    session = open_session(
                        self.fleet_dir,
                        self.settings.state_url,
                        at=started,
                        sites_local=self.settings.sites_local,
                        lease_seconds=self.settings.lease_seconds,
                        jurisdictions=others,
                    )
                    done = plan_and_apply(session, operation=OPERATION, lease=lease)
                windows = {
                    j: state.open
                    for j, state in window_states(session.fleet, started).items()
                    if session.fleet.jurisdictions[j].changes is not None
                }
            finally:
                session.close()
        except RefusedError as exc:
            result = PassResult(Outcome.REFUSED, started, message=exc.message)
        except StateLockedError as exc:
            result = PassResult(Outcome.LOCKED, started, message=exc.message)
        except SovereignError as exc:
            result = PassResult(Outcome.FAILED, started, message=exc.message)
        except Exception as exc:  # noqa: BLE001 - a bad commit must never stop the controller
            result = PassResult(
                Outcome.FAILED,
                started,
                message=f"unexpected {type(exc).__name__}: {str(exc)[:500]} (nothing applied)",
            )
        else:
            plan = done.plan
            drift = sum(1 for c in plan.changes if cause_kind(c.cause) is CauseKind.DRIFT)
            outcome = Outcome.IN_SYNC
            failed: tuple[str, ...] = ()
            assert done.result is not None  # no confirmation is asked: never declined
            if not plan.empty or not done.result.ok:
                # (an empty plan fails too when a site could not be observed)
                failed = done.result.failed_targets
                outcome = Outcome.APPLIED if done.result.ok else Outcome.PARTIAL
            waiting = Tally(d.why.value for d in plan.deferred)
            upcoming = [d.not_before for d in plan.deferred if d.not_before is not None]
            result = PassResult(
                outcome,
                started,
                changes=len(plan.changes),
                drift=drift,
                plan_sha256=plan.sha256(),
                failed_sites=failed,
                deferred=dict(waiting),
                next_deferred=min(upcoming) if upcoming else None,
                stopped={
                    d.change.model: d.message
                    for d in plan.deferred
                    if d.why is WaitReason.WAVE_FAILED
                },
                windows=windows,
            )
            if pending is not None:
                result = replace(
                    result,
                    outcome=Outcome.REFUSED,
                    message=f"{pending.message}; the controller never decommissions, the other "
                    f"jurisdictions were reconciled ({pending.hint})",
                )
        result = replace(result, next_epoch=next_epoch_after(self.fleet_dir, self.clock()))
        self._report(result, commit)
        return result

    def _report(self, result: PassResult, commit: str | None) -> None:
        self.last = result
        if result.outcome is not Outcome.FAILED and commit:
            self.last_good_commit = commit
        self.metrics.record(result)
        fields = {k: v for k, v in result.to_json().items() if v not in (None, "", [], 0)}
        if commit:
            fields["commit"] = commit
        if result.outcome is Outcome.REFUSED:
            self.log(
                "reconcile.refused",
                level="error",
                action="a person must fix the fleet or apply with --allow-outage by hand; "
                "the controller never overrides the interlock",
                **fields,
            )
        elif result.outcome in (Outcome.FAILED, Outcome.PARTIAL):
            self.log("reconcile.failed", level="error", **fields)
        else:
            self.log("reconcile.done", **fields)

    def wait_after(self, result: PassResult) -> float:
        """Seconds until the next pass: the interval, or the next epoch if sooner; a backoff
        after a failure; a full interval after a refusal (never a hot loop)."""
        if result.outcome in (Outcome.FAILED, Outcome.PARTIAL):
            return self.backoff.next_delay()
        self.backoff.reset()
        wait = self.settings.interval
        if result.outcome is Outcome.REFUSED:
            return wait
        # A directive epoch, and the instant a deferred change may go (a window opens, a
        # wave's gate passes): re-planned then, without a new commit.
        for instant in (result.next_epoch, result.next_deferred):
            if instant is not None:
                until = (instant - self.clock()).total_seconds()
                wait = min(wait, max(until, 0.0) + 0.05)
        return wait

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Lead when possible, stand by otherwise, until ``stop`` is set."""
        store = open_store(
            self.settings.state_url,
            self.fleet_dir_for_state(),
            lease_seconds=self.settings.lease_seconds,
        )
        try:
            while not self.stop.is_set():
                self.last_tick = time.monotonic()
                try:
                    with store.lock(OPERATION) as lease:
                        self.standby_backoff.reset()
                        self._lead(lease)
                except StateLockedError as exc:
                    self.standby_backoff.reset()  # the lock is readable and held: all is well
                    self._stand_by(exc.message)
                except Exception as exc:  # noqa: BLE001 - the loop outlives any one error
                    self.is_leader = False
                    self.metrics.leader.set(0)
                    message = (
                        exc.message
                        if isinstance(exc, SovereignError)
                        else f"unexpected {type(exc).__name__}: {str(exc)[:500]}"
                    )
                    self.log("controller.error", level="error", message=message)
                    self.stop.wait(self.standby_delay())
        finally:
            self.is_leader = False
            self.metrics.leader.set(0)
            store.close()

    def standby_delay(self) -> float:
        """The wait after an error taking the lock: a backoff capped at half a lease, so a
        standby is back well before a dead leader's lease has run out."""
        return self.standby_backoff.next_delay(cap=self.settings.lease_seconds / 2)

    def fleet_dir_for_state(self) -> Path:
        """Where the default state lives: beside the fleet (cloned first when from git)."""
        if self.settings.git is not None and self.settings.state_url is None:
            self.settings.git.pull()
        return self.fleet_dir

    def _lead(self, lease: Lease) -> None:
        if not self.is_leader:
            self.log("controller.leading", holder_id=lease.holder_id, epoch=lease.epoch)
        self.is_leader = True
        self.metrics.leader.set(1)
        while not self.stop.is_set() and not lease.lost:
            self.last_tick = time.monotonic()
            result = self.reconcile_once(lease)
            if lease.lost:
                break
            self.stop.wait(self.wait_after(result))
        if lease.lost:
            self.log("controller.lost_leadership", level="warning", holder_id=lease.holder_id)
        self.is_leader = False
        self.metrics.leader.set(0)

    def _stand_by(self, message: str) -> None:
        if self.is_leader or self.last is None:
            self.log("controller.standby", message=message)
        self.is_leader = False
        self.metrics.leader.set(0)
        self.stop.wait(self.settings.standby)

    def healthy(self) -> bool:
        """Alive: the loop ticked within a few of its longest waits."""
        longest = max(self.settings.interval, self.settings.standby, self.settings.backoff_max)
        return time.monotonic() - self.last_tick < 3 * longest + 30

    def health_json(self) -> dict[str, Any]:
        """``status``: ``ok``; ``degraded`` while the last pass failed (alive, and trying the
        next commit: still 200, a restart would not help); ``stalled`` (503) when the loop
        stopped ticking."""
        status = "ok"
        if not self.healthy():
            status = "stalled"
        elif self.last is not None and self.last.outcome is Outcome.FAILED:
            status = "degraded"
        return {
            "status": status,
            "leader": self.is_leader,
            "last": None if self.last is None else self.last.to_json(),
            "last_good_commit": self.last_good_commit,
        }
