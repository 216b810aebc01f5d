"""The controller's Prometheus metrics (``/metrics``).

Part of the controller (``orchestrator.reconcile.controller``: its docstring says what the
controller does and when).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
)

from orchestrator.planning.plan import WaitReason
from orchestrator.reconcile.controller.passes import (
    Outcome,
    PassResult,
)


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
