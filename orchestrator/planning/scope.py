"""Blast radius (docs/planning.md): a plan that acts only on the sites of some jurisdictions.

``plan``, ``apply`` and the runbook commands take ``--jurisdiction J`` (repeatable). Scoping is
defined here once, as pure functions, so every command means the same thing by it: the scoped
plan observes, changes and judges (interlock) only those jurisdictions' sites, while the routing
table (and any fleet-wide route) is always recompiled for the whole fleet. One jurisdiction's
unreachable cloud or refused interlock therefore never holds back another's changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.errors import UsageError
from orchestrator.fleet.model import Fleet
from orchestrator.planning.plan import Change
from orchestrator.providers.base import Resource, ResourceKind

Scope = tuple[str, ...] | None
"""Sorted jurisdiction ids, or None for the whole fleet."""


def parse_scope(
    fleet: Fleet, requested: Iterable[str] | None, *, known: Iterable[str] = ()
) -> Scope:
    """The scope named by ``--jurisdiction`` values (None or empty: the whole fleet).

    ``known`` adds jurisdictions that are no longer in the fleet but still hold resources to
    tear down. An unknown id is a usage error listing the valid ones.
    """
    wanted = sorted(set(requested or ()))
    if not wanted:
        return None
    valid = set(fleet.jurisdictions) | set(known)
    unknown = [j for j in wanted if j not in valid]
    if unknown:
        raise UsageError(
            f"--jurisdiction {', '.join(unknown)}: no such jurisdiction in the fleet",
            hint=f"valid: {', '.join(sorted(valid)) or 'none declared'}",
        )
    return tuple(wanted)


def sites_in_scope(fleet: Fleet, scope: Scope) -> tuple[str, ...]:
    """The fleet's site ids the scope covers, sorted."""
    if scope is None:
        return tuple(sorted(fleet.sites))
    chosen = set(scope)
    return tuple(sorted(s.id for s in fleet.sites.values() if s.jurisdiction in chosen))


def resource_in_scope(fleet: Fleet, resource: Resource, scope: Scope) -> bool:
    """Route resources are fleet-wide (always in scope); site resources by their owner."""
    if scope is None or resource.kind is ResourceKind.ROUTE:
        return True
    site = fleet.sites.get(resource.target)
    return site is not None and site.jurisdiction in scope


def change_in_scope(change: Change, scope: Scope) -> bool:
    """Route changes are fleet-wide (always in scope); site changes by their jurisdiction
    (which, for a site that left the fleet, is the one it was recorded under)."""
    return scope is None or change.kind is ResourceKind.ROUTE or change.jurisdiction in scope


def outside_scope(changes: Iterable[Change], scope: Scope) -> tuple[Change, ...]:
    """The changes a plan of this scope must not contain (a saved plan is checked with it)."""
    return tuple(c for c in changes if not change_in_scope(c, scope))


def describe_scope(scope: Scope) -> str:
    """``--jurisdiction EU --jurisdiction UK`` or ``the whole fleet``, for messages."""
    if scope is None:
        return "the whole fleet"
    return " ".join(f"--jurisdiction {j}" for j in scope)
