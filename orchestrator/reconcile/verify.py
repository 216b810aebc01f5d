"""What ``apply`` checks before it believes a plan: a saved plan is a record, not instructions.

A plan file is reviewed by people and then handed back to ``apply``. Anyone who can edit the
file between review and apply could otherwise slip in a change the planner would never make
(weights copied to a site export rules forbid, an ``instance_count`` nobody reviewed). So a
saved plan is only ever compared (docs/planning.md):

- it must have been made from this state (lineage, serial), with the same ``--sites`` and from
  the same fleet files (``check_fresh``);
- the plan is recomputed from the fleet and the state, and the saved changes must be exactly
  the recomputed ones (op, address, values, cause), and so must its interlocks; otherwise the
  apply is refused naming the first changes that differ.

A site (or DNS zone) that cannot be observed cannot be verified: its saved changes are held
back (reported as a failed target, exit 3) and everything else is verified and carried out,
so one unreachable region never holds back another.

Real time for real changes: the law is evaluated for an instant. ``--at`` is for what-if
commands; a plan evaluated for another instant than now (``apply --at``, or a saved plan made
with ``plan --at``) is carried out only when every site it changes is ``local`` (the demo and
development). For cloud sites a saved plan is recomputed on the real clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from orchestrator.errors import RefusedError, UsageError
from orchestrator.planning.plan import Change, Deferred, Plan
from orchestrator.policy.clock import CLOCK_SKEW
from orchestrator.reconcile.apply import check_fresh
from orchestrator.reconcile.session import Session, desired_of, make_plan, observe_each

__all__ = ["VerifiedPlan", "nonlocal_targets", "refuse_unreal_time", "verify_saved_plan"]

_SHOWN = 5


def nonlocal_targets(session: Session) -> tuple[str, ...]:
    """What an apply in this session could change that is not on the local provider: sites of
    other providers, and the DNS zone (the routing table in the state store is not one: it is
    compiled for every instant, not for ``at``)."""
    if session.sites_local:
        return ()
    out = sorted(s.id for s in session.fleet.sites.values() if s.provider != "local")
    if session.include_dns and session.fleet.settings.dns is not None:
        out.append(f"dns:{session.fleet.settings.dns.hosted_zone_id}")
    return tuple(out)


def refuse_unreal_time(session: Session) -> None:
    """UsageError when the session evaluates the law for another instant than now (beyond the
    clock-skew tolerance) and could change something that is not local. Checked before
    anything is observed or planned."""
    if abs(session.at - datetime.now(UTC)) <= CLOCK_SKEW:
        return
    remote = nonlocal_targets(session)
    if remote:
        shown = ", ".join(remote[:_SHOWN]) + (" ..." if len(remote) > _SHOWN else "")
        raise UsageError(
            f"apply evaluates the law for {session.at.isoformat()}, not now, and would change "
            f"targets that are not local: {shown}",
            hint="--at is for what-if commands (plan, explain, status, impact); real sites are "
            "changed at real time: run `sovereign apply` without --at (or with --sites local "
            "for a rehearsal on local directories)",
        )


def _describe(c: Change) -> str:
    values = dict(c.after or c.before or ())
    shown = ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
    return f"{c.op.value} {c.address} ({c.cause}) {{{shown}}}"


def _differences(saved: Plan, fresh: Plan) -> list[str]:
    saved_set, fresh_set = set(saved.changes), set(fresh.changes)
    fresh_by_address = {(c.address, c.kind): c for c in fresh.changes}
    out: list[str] = []
    for c in saved.changes:
        if c in fresh_set:
            continue
        twin = fresh_by_address.get((c.address, c.kind))
        if twin is not None:
            out.append(f"saved {_describe(c)}, but the recomputed plan has {_describe(twin)}")
        else:
            out.append(f"saved {_describe(c)} is not in the recomputed plan")
    saved_addresses = {(c.address, c.kind) for c in saved.changes}
    for c in fresh.changes:
        if c not in saved_set and (c.address, c.kind) not in saved_addresses:
            out.append(f"the recomputed plan has {_describe(c)}, missing from the saved plan")
    if len(saved.changes) != len(saved_set):
        out.append("the saved plan lists a change more than once")
    if saved.trust != fresh.trust:
        said = "; ".join(t.summary() for t in saved.trust) or "none"
        found = "; ".join(t.summary() for t in fresh.trust) or "none"
        out.append(f"who may order: the saved plan has {said}, the recomputed plan {found}")
    return out


@dataclass(frozen=True)
class VerifiedPlan:
    """A saved plan proven equal to the recomputed one, except for targets that could not be
    observed (target -> why): their changes are held back, never carried out unverified."""

    plan: Plan
    held_back: dict[str, str] = field(default_factory=dict)


def verify_saved_plan(session: Session, saved: Plan) -> VerifiedPlan:
    """The saved plan, once it is proven to be exactly what the planner makes now.

    The caller holds the state lock. Refuses (``StalePlanError``, ``RefusedError``) otherwise;
    the interlocks carried out are always the recomputed ones.
    """
    check_fresh(session, saved)
    actual, unobservable = observe_each(session, desired_of(session))
    fresh = make_plan(session, audit=False, observed=(actual, unobservable))
    # A target unobservable now cannot be verified; one that was unobservable when the plan was
    # made has changes nobody reviewed. Either way its changes are held back (a failed target,
    # exit 3) and everything else is verified and carried out.
    saved_blind = {u.target for u in saved.unobservable}
    touched = {c.target for c in saved.changes} | saved_blind
    held = {
        t: f"{why} (the saved plan could not be verified there)"
        for t, why in unobservable.items()
        if t in touched
    }
    for t in sorted(saved_blind - set(unobservable)):
        held[t] = (
            "could not be observed when the plan was made, so its changes were never reviewed: "
            "make a new plan to converge it"
        )
    skip = set(unobservable) | saved_blind

    def keep(plan: Plan) -> Plan:
        kept = tuple(c for c in plan.changes if c.target not in skip)
        return replace(plan, changes=kept)

    differences = _differences(keep(saved), keep(fresh))
    # Deferred changes are part of what was reviewed (and what --override-window carries
    # out): they must be the recomputed ones too, whatever their "may go at".
    saved_waiting = {d.change for d in saved.deferred if d.change.target not in skip}
    fresh_waiting = {d.change for d in fresh.deferred if d.change.target not in skip}
    for c in sorted(saved_waiting - fresh_waiting, key=lambda c: c.address):
        differences.append(f"saved deferred {_describe(c)} is not deferred in the recomputed plan")
    for c in sorted(fresh_waiting - saved_waiting, key=lambda c: c.address):
        differences.append(f"the recomputed plan defers {_describe(c)}, not deferred when saved")
    if not differences and not skip and saved.interlocks != fresh.interlocks:
        differences.append("the saved plan's interlocks are not the recomputed ones")
    if differences:
        more = len(differences) - _SHOWN
        raise RefusedError(
            "the saved plan is not the plan the fleet and the state give now: "
            + "; ".join(differences[:_SHOWN])
            + (f"; and {more} more difference(s)" if more > 0 else ""),
            hint="a saved plan is a record of what was reviewed, never a set of instructions: "
            "make a new plan (`sovereign plan --out FILE`), review it, and apply that file",
        )
    return VerifiedPlan(
        replace(saved, interlocks=fresh.interlocks, deferred=keep_deferred(fresh, skip)), held
    )


def keep_deferred(plan: Plan, skip: set[str]) -> tuple[Deferred, ...]:
    """The recomputed deferred changes (their "may go at" as of now), without skipped targets."""
    return tuple(d for d in plan.deferred if d.change.target not in skip)
