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


The package holds one job per module: ``passes`` (a pass: settings, outcome, report),
``git`` (pulling the fleet), ``metrics`` (Prometheus), ``loop`` (the leader loop and the pass
itself), ``http`` (``/healthz``, ``/metrics``); the JSON log is ``orchestrator.logs`` and the
backoff ``reconcile.retry.Backoff``.
"""

from __future__ import annotations

from orchestrator.reconcile.controller.git import GitSource
from orchestrator.reconcile.controller.http import serve_http
from orchestrator.reconcile.controller.loop import Controller
from orchestrator.reconcile.controller.metrics import ControllerMetrics
from orchestrator.reconcile.controller.passes import (
    OPERATION,
    ControllerSettings,
    Outcome,
    PassResult,
    next_epoch_after,
)

__all__ = [
    "Controller",
    "ControllerMetrics",
    "ControllerSettings",
    "GitSource",
    "OPERATION",
    "Outcome",
    "PassResult",
    "next_epoch_after",
    "serve_http",
]
