"""The apply sequence, once: lock -> freshness -> plan -> interlock -> confirm -> apply.

``sovereign apply``, the demo, and the runbook commands and controller that change the sites
all carry a plan out the same way; writing the order down once means none of them can skip a
step (plan outside the lock, apply a refused plan, apply a saved plan the state moved past).
The callers keep only what is theirs: how a plan is shown, how progress is drawn, and how a
person is asked. Those arrive as an observer and a confirmation callback, so this module prints
nothing and never reads a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from orchestrator.planning.decommission import allow_decommission, record_decommission
from orchestrator.planning.plan import Deferred, Plan
from orchestrator.planning.scope import sites_in_scope
from orchestrator.reconcile.apply import (
    ApplyObserver,
    ApplyResult,
    apply_plan,
    silent_observer,
)
from orchestrator.reconcile.interlock import enforce
from orchestrator.reconcile.retry import RetryPolicy
from orchestrator.reconcile.rollout import record_health, uses_waves
from orchestrator.reconcile.session import (
    Session,
    desired_of,
    make_plan,
    observe_each,
    release_deferred,
)
from orchestrator.reconcile.verify import nonlocal_targets, refuse_unreal_time, verify_saved_plan
from orchestrator.state.lease import Lease

Confirm = Callable[[Plan], bool]
"""Asked once, with the plan, after the interlocks passed and before anything is changed;
False declines (nothing is applied). Not asked for an empty plan."""


class SequenceObserver(Protocol):
    """What the caller shows while the sequence runs."""

    def planned(self, plan: Plan) -> None:
        """The plan about to be checked and applied (shown before a refusal, too)."""
        ...

    def applying(self, plan: Plan) -> AbstractContextManager[ApplyObserver]:
        """Entered around the apply itself; yields the per-change progress observer."""
        ...


class QuietSequence:
    """A ``SequenceObserver`` that shows nothing (scripts, the controller, tests)."""

    def planned(self, plan: Plan) -> None:
        del plan

    @contextmanager
    def applying(self, plan: Plan) -> Iterator[ApplyObserver]:
        del plan
        yield silent_observer()


@dataclass(frozen=True)
class Applied:
    """What one pass of the sequence did. ``result`` is None when the confirmation declined."""

    plan: Plan
    result: ApplyResult | None
    released: tuple[Deferred, ...] = ()  # deferred changes --override-window carried out

    @property
    def declined(self) -> bool:
        return self.result is None


def plan_and_apply(
    session: Session,
    *,
    saved: Plan | None = None,
    allow_outage: str | None = None,
    confirm: Confirm | None = None,
    observer: SequenceObserver | None = None,
    operation: str = "apply",
    retry: RetryPolicy | None = None,
    concurrency: int | None = None,
    step_delay: float = 0.0,
    lease: Lease | None = None,
    override_window: str | None = None,
    decommission: Mapping[str, str] | None = None,
) -> Applied:
    """Carry the fleet of ``session`` out under the state lock, in the one safe order.

    1. take the state lock for ``operation`` (``StateLockedError``, exit 4, names the holder);
    2. a ``saved`` plan must have been made from this very state and fleet (``StalePlanError``)
       and be exactly the plan recomputed now (``RefusedError``; ``reconcile.verify``); without
       one, a fresh plan is made and audited, for real time unless every target is local;
    3. ``observer.planned`` shows it; a decommission not named in ``decommission``
       (jurisdiction -> reason) is refused (``planning.decommission``); the interlocks are
       enforced (``RefusedError`` unless
       ``allow_outage`` gives a reason for every overridable violation);
    4. an empty plan ends here; otherwise ``confirm`` (when given) is asked;
    5. the plan is applied while the lease is held (``apply_plan``).

    ``step_delay`` waits that many seconds before each change (tests that need to catch an
    apply in the middle); ``retry`` and ``concurrency`` default as in ``apply_plan``. A caller
    that already holds the state lock (the controller's leadership) passes its ``lease``: step
    1 is then that lease, kept by its own heartbeat.

    Deferred changes (waiting for a change window or a rollout wave) are not carried out,
    unless ``override_window`` gives a reason: then they are (audited as
    ``window.overridden``, with the reason and every change it released). A fresh plan first
    records what it observed of the deployments' health (``reconcile.rollout``), which is what
    rollout waves are gated on.
    """
    shown = observer or QuietSequence()
    locked = nullcontext(lease) if lease is not None else session.store.lock(operation)
    with locked as held:
        if saved is not None:
            if not nonlocal_targets(session):
                session.at = saved.at  # a rehearsal on local sites keeps its instant
            verified = verify_saved_plan(session, saved)
            plan, held_back = verified.plan, verified.held_back
        else:
            refuse_unreal_time(session)
            observed = observe_each(session, desired_of(session))
            if uses_waves(session.fleet):
                record_health(
                    session.store,
                    observed[0],
                    (
                        t
                        for t in sites_in_scope(session.fleet, session.scope)
                        if t not in observed[1]
                    ),
                    session.at,
                )
            plan = make_plan(session, observed=observed)
            # What could not be observed is carried out by nobody: a failed target (exit 3),
            # converged by the next run once it can be seen.
            held_back = {u.target: u.error for u in plan.unobservable}
        released = plan.deferred if override_window is not None else ()
        if released:
            plan = release_deferred(session, plan)
        shown.planned(plan)
        # A jurisdiction that left the fleet is decommissioned only when asked for by name.
        allow_decommission(plan.decommission, decommission or {}, session.store.audit)
        enforce(plan.interlocks, allow_outage, changed=plan.jurisdictions())
        if plan.empty and not held_back:
            return Applied(plan, ApplyResult(serial=plan.serial), released)
        if confirm is not None and not confirm(plan):
            return Applied(plan, None, released)
        if plan.decommission:
            record_decommission(plan.decommission, decommission or {}, session.store.audit)
        if released:
            session.store.audit.append(
                "window.overridden",
                {
                    "reason": override_window,
                    "changes": [d.change.address for d in released],
                    "why": sorted({d.message for d in released}),
                    "fleet_digest": plan.fleet_digest,
                },
            )
        with shown.applying(plan) as progress:
            result = apply_plan(
                session,
                plan,
                held,
                allow_outage=allow_outage,
                observer=progress,
                retry=retry,
                concurrency=concurrency,
                step_delay=step_delay,
                held_back=held_back,
            )
    return Applied(plan, result, released)
