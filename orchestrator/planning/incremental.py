"""Incremental re-planning: after a directive changes, recompute only what it can reach.

SPEC 2 guarantees that a directive changes nothing outside its own reach (the sites it governs,
the models it names). So when directives are added, removed or replaced, the desired state can
only move for those (model, site) pairs, plus the routing table. ``IncrementalPlanner`` keeps the
desired state indexed by identity and, on a change, recomputes the touched pairs and diffs only
their identities against actual state. The result equals a full plan (``bench/plan.py`` and the
tests check that); it exists because a fleet of 100,000 (model, site) pairs must re-plan within
100 ms when a directive lands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from orchestrator.fleet.model import Directive, Fleet
from orchestrator.planning.desired import (
    DesiredPairs,
    reach_of,
    resources_for_pair,
    table_resource,
)
from orchestrator.planning.diff import CauseContext, Identity, diff_indexed, index
from orchestrator.planning.plan import Change
from orchestrator.providers.base import Resource, ResourceKind


def pair_identities(model_id: str, site_id: str) -> tuple[Identity, Identity]:
    return (
        (ResourceKind.ARTIFACT.value, site_id, model_id, ""),
        (ResourceKind.DEPLOYMENT.value, site_id, model_id, ""),
    )


class IncrementalPlanner:
    """Desired state of site resources plus the routing table, kept up to date per directive.

    (DNS records are fleet-wide and recomputed by a full plan; this planner covers the
    deployments, artifacts and the routing table.)"""

    def __init__(self, fleet: Fleet, at: datetime, fleet_digest: str) -> None:
        self.pairs = DesiredPairs.compute(fleet, at)
        resources: list[Resource] = [table_resource(fleet_digest)]
        for m, s in self.pairs.pairs:
            resources.extend(resources_for_pair(fleet, m, s))
        self.desired: dict[Identity, Resource] = index(resources)
        self.table_identity = table_resource(fleet_digest).identity

    @property
    def fleet(self) -> Fleet:
        return self.pairs.fleet

    def directives_changed(
        self, fleet: Fleet, changed: Iterable[Directive], fleet_digest: str
    ) -> set[Identity]:
        """Move to ``fleet``; return the identities whose desired value may have changed."""
        changed = tuple(changed)
        added, removed = self.pairs.update(fleet, changed)
        for m, s in removed:
            for ident in pair_identities(m, s):
                self.desired.pop(ident, None)
        for m, s in added:
            for r in resources_for_pair(fleet, m, s):
                self.desired[r.identity] = r
        self.desired[self.table_identity] = table_resource(fleet_digest)
        touched: set[Identity] = {self.table_identity}
        for d in changed:
            for m, s in reach_of(fleet, d):
                touched.update(pair_identities(m, s))
        return touched

    def plan(
        self,
        actual: Mapping[Identity, Resource],
        ctx: CauseContext,
        identities: Iterable[Identity] | None = None,
    ) -> tuple[Change, ...]:
        """The changes for ``identities`` (everything when None)."""
        return diff_indexed(self.desired, actual, ctx, identities)
