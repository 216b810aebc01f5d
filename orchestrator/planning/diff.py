"""The pure diff: desired and actual resource sets in, plan changes out, each with its cause.

No I/O here: everything the causes need (which withdraw takes a pair off a site, which directive
made the routing table differ from the applied one, what Sovereign recorded it had created) is
handed in as a ``CauseContext``. Causes (docs/planning.md):

* ``directive:<id>`` - a deployment/artifact deleted because an in-force withdraw takes it off
  the site; the routing table changed because a directive was added, replaced or removed;
* ``drift`` - something we recorded as created is gone, or differs from what we recorded;
* ``config`` - anything else (the fleet files asked for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.planning.gc_paused import gc_paused
from orchestrator.planning.plan import TABLE_TARGET, CauseKind, Change, Spec
from orchestrator.providers.base import Op, Resource, ResourceKind

Identity = tuple[str, str, str, str]


def identity_of(r: Resource) -> Identity:
    """``Resource.identity`` without the enum ``.value`` lookup (a StrEnum member equals and
    hashes like its value), which dominates diffs of 100,000 resources."""
    return (r.kind, r.target, r.model, r.key)


@dataclass(frozen=True)
class CauseContext:
    """What the diff needs to name causes. Empty by default: every change is ``config``."""

    # (model, site) -> id of the in-force withdraw that takes the model off the site
    withdrawn: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # cause of a routing-table change ("directive:<id>" or "config")
    table_cause: str = CauseKind.CONFIG.value
    # identity -> spec Sovereign recorded after its last successful create/update
    recorded: Mapping[Identity, Spec] = field(default_factory=dict)
    # site id -> owning jurisdiction (for per-jurisdiction summaries)
    jurisdiction_of: Mapping[str, str] = field(default_factory=dict)


# Plain values, looked up once: enum attribute access is slow in a loop of 100,000 changes.
_CONFIG = CauseKind.CONFIG.value
_DRIFT = CauseKind.DRIFT.value
_ROUTE = ResourceKind.ROUTE
_CREATE, _UPDATE, _DELETE = Op.CREATE, Op.UPDATE, Op.DELETE


def _cause(op: Op, before: Resource | None, after: Resource | None, ctx: CauseContext) -> str:
    r = after if after is not None else before
    assert r is not None
    if r.kind is _ROUTE and r.target == TABLE_TARGET:
        return ctx.table_cause
    if op is _DELETE and r.kind is not _ROUTE and ctx.withdrawn:
        withdraw = ctx.withdrawn.get((r.model, r.target))
        if withdraw is not None:
            return f"directive:{withdraw}"
    recorded = ctx.recorded.get(identity_of(r)) if ctx.recorded else None
    if op is _CREATE and recorded is not None:
        return _DRIFT  # we made it, it was removed behind our back
    if op is _UPDATE and before is not None and recorded is not None and recorded != before.spec:
        return _DRIFT
    return _CONFIG


def _change(op: Op, before: Resource | None, after: Resource | None, ctx: CauseContext) -> Change:
    r = after if after is not None else before
    assert r is not None
    return Change(
        op=op,
        kind=r.kind,
        target=r.target,
        model=r.model,
        key=r.key,
        before=None if before is None else before.spec,
        after=None if after is None else after.spec,
        cause=_cause(op, before, after, ctx),
        jurisdiction=ctx.jurisdiction_of.get(r.target, ""),
    )


def diff_indexed(
    desired: Mapping[Identity, Resource],
    actual: Mapping[Identity, Resource],
    ctx: CauseContext,
    identities: Iterable[Identity] | None = None,
) -> tuple[Change, ...]:
    """The changes that turn ``actual`` into ``desired``, restricted to ``identities`` if given
    (the incremental path: only what a directive change can reach)."""
    keys = set(desired) | set(actual) if identities is None else set(identities)
    changes: list[Change] = []
    for ident in keys:
        want = desired.get(ident)
        have = actual.get(ident)
        if want is not None and have is None:
            changes.append(_change(_CREATE, None, want, ctx))
        elif want is None and have is not None:
            changes.append(_change(_DELETE, have, None, ctx))
        elif want is not None and have is not None and want.spec != have.spec:
            changes.append(_change(_UPDATE, have, want, ctx))
    return tuple(changes)


def index(resources: Iterable[Resource]) -> dict[Identity, Resource]:
    return {(r.kind, r.target, r.model, r.key): r for r in resources}


def diff(
    desired: frozenset[Resource], actual: frozenset[Resource], ctx: CauseContext | None = None
) -> tuple[Change, ...]:
    """Pure: the changes that make ``actual`` equal ``desired``. Deletes only what is not
    desired; creates only what is missing; updates only what differs."""
    with gc_paused():
        return _diff(desired, actual, ctx or CauseContext())


def _diff(
    desired: frozenset[Resource], actual: frozenset[Resource], ctx: CauseContext
) -> tuple[Change, ...]:
    # Resources equal in both sets need nothing: only the (usually tiny) differences are
    # indexed, which keeps a steady-state plan of 100,000 pairs fast.
    missing, extra = desired - actual, actual - desired
    if not extra:  # e.g. a first rollout: everything is a create
        return tuple(_change(_CREATE, None, r, ctx) for r in missing)
    if not missing:
        return tuple(_change(_DELETE, r, None, ctx) for r in extra)
    return diff_indexed(index(missing), index(extra), ctx)
