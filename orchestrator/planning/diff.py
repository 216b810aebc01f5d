"""The pure diff: desired and actual resource sets in, plan changes out, each with its cause.

No I/O here: everything the causes need (which withdraw takes a pair off a site, which directive
made the routing table differ from the applied one, what Sovereign recorded it had created) is
handed in as a ``CauseContext``. Causes (SPEC 4):

* ``directive:<id>`` - a deployment/artifact deleted because an in-force withdraw takes it off
  the site; the routing table changed because a directive was added, replaced or removed;
* ``drift`` - something we recorded as created is gone, or differs from what we recorded;
* ``config`` - anything else (the fleet files asked for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.planning.plan import CauseKind, Change, Spec
from orchestrator.providers.base import Op, Resource, ResourceKind

Identity = tuple[str, str, str, str]


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


def _cause(op: Op, before: Resource | None, after: Resource | None, ctx: CauseContext) -> str:
    r = after if after is not None else before
    assert r is not None
    if r.kind is ResourceKind.ROUTE and r.target == "table":
        return ctx.table_cause
    if op is Op.DELETE and r.kind is not ResourceKind.ROUTE:
        withdraw = ctx.withdrawn.get((r.model, r.target))
        if withdraw is not None:
            return f"directive:{withdraw}"
    recorded = ctx.recorded.get(r.identity)
    if op is Op.CREATE and recorded is not None:
        return CauseKind.DRIFT.value  # we made it, it was removed behind our back
    if op is Op.UPDATE and before is not None and recorded is not None and recorded != before.spec:
        return CauseKind.DRIFT.value
    return CauseKind.CONFIG.value


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
            changes.append(_change(Op.CREATE, None, want, ctx))
        elif want is None and have is not None:
            changes.append(_change(Op.DELETE, have, None, ctx))
        elif want is not None and have is not None and want.spec != have.spec:
            changes.append(_change(Op.UPDATE, have, want, ctx))
    return tuple(changes)


def index(resources: Iterable[Resource]) -> dict[Identity, Resource]:
    return {r.identity: r for r in resources}


def diff(
    desired: frozenset[Resource], actual: frozenset[Resource], ctx: CauseContext | None = None
) -> tuple[Change, ...]:
    """Pure: the changes that make ``actual`` equal ``desired``. Deletes only what is not
    desired; creates only what is missing; updates only what differs."""
    return diff_indexed(index(desired), index(actual), ctx or CauseContext())
