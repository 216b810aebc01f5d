"""The controller (docs/runbooks.md): a level-triggered loop that keeps the fleet converged.

Every pass does what a person would do, through the same code: (pull the git checkout,) load
the fleet, plan against what the sites really hold, enforce the interlocks, apply
(``reconcile.sequence.plan_and_apply``). It never passes ``--allow-outage``: a refusal is
reported loudly (log at error level, ``sovereign_controller_refused`` = 1, exit 1 with
``--once``) and the next attempt waits a full interval, never a hot loop. Level-triggered means
no pass depends on what the previous one saw: a missed wake-up is caught by the next.

When it wakes:

* every ``interval`` seconds (drift: anything changed behind Sovereign's back is planned with
  cause ``drift`` and repaired);
* at the next directive epoch (an ``effective`` or ``expires`` instant of the fleet) when that
  comes first, so a withdraw that takes effect at 3 a.m. is carried out at 3 a.m.;
* after a failure, after an exponential backoff with full jitter (``reconcile.retry.Backoff``,
  the project's one backoff), capped.

A bad commit never stops it: whatever a pass meets (an invalid or unreadable fleet, a crash in a
parser) is that pass's outcome ``failed``, logged with the commit; ``/healthz`` says
``degraded`` and ``sovereign_controller_degraded`` is 1 until a pass succeeds again. Nothing of
the bad fleet is applied (a pass applies only a fleet that loads), so the sites keep what the
last good fleet placed, and the next pass pulls again: the next commit is tried.

Leadership: several replicas may run. Each tries to take the state lock for the operation
``controller``; the one that gets it is the leader and keeps it (the lease's heartbeat renews
it) for as long as it runs, applying with that lease. The others stand by and retry every
``standby_interval``; when the leader dies its lease expires and one of them takes over (the
takeover is audited as ``lock.broken``). A standby that cannot even read the lock (SQLite's
"database is locked" while the leader writes) backs off, but never longer than half a lease,
and its backoff resets as soon as it sees the lock held: a standby is never asleep for long
when the leader dies. Human ``sovereign apply`` runs meet exit 4 naming the
controller while it leads; runbook drains never need the lock.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from orchestrator.errors import (
    RefusedError,
    SovereignError,
    StateLockedError,
    UsageError,
)
from orchestrator.fleet.instants import format_utc
from orchestrator.logs import JsonLines
from orchestrator.planning.decommission import DecommissionPending
from orchestrator.planning.deferral import window_states
from orchestrator.planning.plan import CauseKind, WaitReason, cause_kind
from orchestrator.policy.epochs import EpochIndex
from orchestrator.reconcile.retry import Backoff
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import open_session
from orchestrator.state import open_store
from orchestrator.state.lease import DEFAULT_LEASE_SECONDS, Lease

OPERATION = "controller"


class Outcome(StrEnum):
    IN_SYNC = "in_sync"  # nothing to do
    APPLIED = "applied"  # changes applied, every site ok
    PARTIAL = "partial"  # applied, some sites failed (apply's exit 3)
    REFUSED = "refused"  # the interlock refused the plan (never overridden)
    LOCKED = "locked"  # another run holds the state (a standby replica, or a human apply)
    FAILED = "failed"  # anything else: invalid fleet, unreachable cloud, git pull failed

    @property
    def exit_code(self) -> int:
        return {
            Outcome.IN_SYNC: 0,
            Outcome.APPLIED: 0,
            Outcome.PARTIAL: 3,
            Outcome.REFUSED: 1,
            Outcome.LOCKED: 4,
            Outcome.FAILED: 1,
        }[self]


@dataclass(frozen=True)
class PassResult:
    """What one reconcile pass did."""

    outcome: Outcome
    started: datetime
    changes: int = 0
    drift: int = 0  # changes whose cause is drift
    plan_sha256: str | None = None
    message: str = ""
    failed_sites: tuple[str, ...] = ()
    next_epoch: datetime | None = None
    # changes waiting for a change window or a rollout wave, by why (planning.deferral)
    deferred: Mapping[str, int] = field(default_factory=dict)
    # the first instant a deferred change may go (a window opening, a wave's gate); None: none
    # known (a wave still waiting for its deployments to be observed healthy)
    next_deferred: datetime | None = None
    # models whose rollout a failed wave stopped -> the message saying so
    stopped: Mapping[str, str] = field(default_factory=dict)
    # jurisdiction -> whether its change window is open (those with windows only)
    windows: Mapping[str, bool] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "exit_code": self.outcome.exit_code,
            "started": format_utc(self.started),
            "changes": self.changes,
            "drift": self.drift,
            "plan_sha256": self.plan_sha256,
            "message": self.message,
            "failed_sites": list(self.failed_sites),
            "next_epoch": (None if self.next_epoch is None else format_utc(self.next_epoch)),
            "deferred": dict(self.deferred),
            "next_deferred": None if self.next_deferred is None else format_utc(self.next_deferred),
            "rollouts_stopped": dict(self.stopped),
            "windows_open": dict(self.windows),
        }


@dataclass(frozen=True)
class GitSource:
    """A fleet kept in git: ``url`` at ``branch``, checked out in ``checkout``."""

    url: str
    branch: str
    checkout: Path

    def pull(self) -> str:
        """Clone once, then fetch and reset to the branch head; returns the commit."""
        if not (self.checkout / ".git").is_dir():
            self.checkout.parent.mkdir(parents=True, exist_ok=True)
            _git(
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                self.branch,
                self.url,
                str(self.checkout),
            )
        else:
            _git(
                "-C", str(self.checkout), "fetch", "--quiet", "--depth", "1", "origin", self.branch
            )
            _git("-C", str(self.checkout), "reset", "--quiet", "--hard", "FETCH_HEAD")
        return _git("-C", str(self.checkout), "rev-parse", "HEAD").strip()


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=300, check=False
        )
    except FileNotFoundError:
        raise UsageError(
            "the controller's --git needs the git command", hint="install git, or pass --fleet DIR"
        ) from None
    except subprocess.TimeoutExpired:
        raise SovereignError(f"git {args[0]} timed out after 300 s") from None
    if done.returncode != 0:
        raise SovereignError(
            f"git {' '.join(a for a in args if not a.startswith('-'))[:200]} failed: "
            f"{done.stderr.strip()[:500]}",
            hint="check --git URL, --branch and the credentials git uses",
        )
    return done.stdout


@dataclass
class ControllerSettings:
    fleet_dir: Path
    state_url: str | None = None
    interval: float = 60.0  # drift check period, seconds
    sites_local: bool | None = False  # None: what the state's last apply recorded
    git: GitSource | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    standby_interval: float | None = None  # default: min(interval, lease_seconds / 2)
    backoff_base: float = 1.0
    backoff_max: float = 300.0

    @property
    def standby(self) -> float:
        if self.standby_interval is not None:
            return self.standby_interval
        return max(0.05, min(self.interval, self.lease_seconds / 2))


class ControllerMetrics:
    """Prometheus metrics of one controller (its own registry: several in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.leader = Gauge("sovereign_controller_leader", "1 while this replica leads", registry=r)
        self.last_reconcile = Gauge(
            "sovereign_controller_last_reconcile_timestamp_seconds",
            "When the last reconcile pass started (Unix time)",
            registry=r,
        )
        self.last_outcome = Gauge(
            "sovereign_controller_last_outcome",
            "1 for the outcome of the last pass, 0 for the others",
            ["outcome"],
            registry=r,
        )
        self.passes = Counter(
            "sovereign_controller_reconcile", "Reconcile passes by outcome", ["outcome"], registry=r
        )
        self.drift = Gauge(
            "sovereign_controller_drift_changes",
            "Changes with cause drift found by the last pass",
            registry=r,
        )
        self.changes = Gauge(
            "sovereign_controller_planned_changes", "Changes planned by the last pass", registry=r
        )
        self.refused = Gauge(
            "sovereign_controller_refused",
            "1 while the interlock refuses the fleet (needs a person)",
            registry=r,
        )
        self.degraded = Gauge(
            "sovereign_controller_degraded",
            "1 while the last pass failed (a bad commit, an unreadable fleet, a cloud error)",
            registry=r,
        )
        self.next_epoch = Gauge(
            "sovereign_controller_next_epoch_timestamp_seconds",
            "The next directive effective/expires instant (Unix time; 0: none)",
            registry=r,
        )
        self.deferred = Gauge(
            "sovereign_controller_deferred_changes",
            "Changes the last pass deferred, by why: window, wave, wave_failed",
            ["why"],
            registry=r,
        )
        self.next_deferred = Gauge(
            "sovereign_controller_next_deferred_timestamp_seconds",
            "When the first deferred change may go (Unix time; 0: none known)",
            registry=r,
        )
        self.window_open = Gauge(
            "sovereign_controller_window_open",
            "1 while the jurisdiction's change window is open, 0 while closed (jurisdictions "
            "with change windows)",
            ["jurisdiction"],
            registry=r,
        )
        self.rollout_stopped = Gauge(
            "sovereign_controller_rollout_stopped",
            "1 while a failed wave stops the rollout of the model",
            ["model"],
            registry=r,
        )

    def record(self, result: PassResult) -> None:
        self.last_reconcile.set(result.started.timestamp())
        for o in Outcome:
            self.last_outcome.labels(o.value).set(1 if o is result.outcome else 0)
        self.passes.labels(result.outcome.value).inc()
        self.drift.set(result.drift)
        self.changes.set(result.changes)
        self.refused.set(1 if result.outcome is Outcome.REFUSED else 0)
        self.degraded.set(1 if result.outcome is Outcome.FAILED else 0)
        self.next_epoch.set(result.next_epoch.timestamp() if result.next_epoch else 0)
        if result.outcome in (Outcome.LOCKED, Outcome.FAILED, Outcome.REFUSED):
            return  # nothing was planned: the last known deferrals and windows stand
        for why in WaitReason:
            self.deferred.labels(why.value).set(result.deferred.get(why.value, 0))
        self.next_deferred.set(result.next_deferred.timestamp() if result.next_deferred else 0)
        for j, is_open in result.windows.items():
            self.window_open.labels(j).set(1 if is_open else 0)
        self.rollout_stopped.clear()
        for model in result.stopped:
            self.rollout_stopped.labels(model).set(1)


def next_epoch_after(fleet_dir: Path, now: datetime) -> datetime | None:
    """The first directive instant after ``now`` in the fleet on disk (None: none, or the fleet
    does not load; the pass that loads it reports why)."""
    from orchestrator.fleet.loader import load_fleet

    try:
        index = EpochIndex(load_fleet(fleet_dir))
    except Exception:  # noqa: BLE001 - a fleet that does not load has no epochs; the pass says why
        return None
    _, end = index.window(now)
    return end if end < _FAR else None


_FAR = datetime(9000, 1, 1, tzinfo=UTC)


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


def serve_http(controller: Controller, host: str, port: int) -> ThreadingHTTPServer:
    """``/healthz`` (200 while the loop is alive, 503 when it stalled; JSON with leadership
    and the last pass) and ``/metrics`` (Prometheus text), in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = generate_latest(controller.metrics.registry)
                self._send(200, body, CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                info = controller.health_json()
                code = 503 if info["status"] == "stalled" else 200
                self._send(code, json.dumps(info).encode(), "application/json")
            else:
                self._send(404, b'{"error": "not found: /healthz, /metrics"}', "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # the controller's JSON log is the log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another --port"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="controller-http", daemon=True).start()
    return server
