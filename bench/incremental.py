"""Incremental re-planning, for the benchmark: after a directive changes, recompute only what
it can reach.

docs/decisions.md guarantees that a directive changes nothing outside its own reach (the sites it
governs, the models it names). So when directives are added, removed or replaced, the desired state
can only move for those (model, site) pairs, plus the routing table. ``IncrementalPlanner`` keeps
the desired state indexed by identity and, on a change, recomputes the touched pairs and diffs only
their identities against actual state. The result equals a full plan (``bench/plan.py`` and
``tests/bench/test_incremental.py`` check that). It lives here, not in the package, because no
command uses it yet: it measures how fast a directive could be re-planned (the controller of
docs/runbooks.md is where it would serve), and the package keeps only what the product runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from orchestrator.fleet.model import ALL_MODELS, Directive, Fleet
from orchestrator.planning.desired import desired_pairs, resources_for_pair, table_resource
from orchestrator.planning.diff import CauseContext, Identity, diff_indexed, index
from orchestrator.planning.plan import Change
from orchestrator.policy.epochs import in_force
from orchestrator.policy.rules import deployable
from orchestrator.providers.base import Resource, ResourceKind


def reach_of(fleet: Fleet, directive: Directive) -> frozenset[tuple[str, str]]:
    """The (model, site) pairs a directive can affect: sites it governs, models it names."""
    models = fleet.models if ALL_MODELS in directive.models else directive.models
    return frozenset(
        (m, s.id)
        for s in fleet.sites.values()
        if directive.jurisdiction in s.governing
        for m in models
        if m in fleet.models
    )


@dataclass
class DesiredPairs:
    """Desired (model, site) pairs, recomputable for only the pairs a directive change reaches.

    docs/decisions.md: a directive changes nothing outside its own reach, so after adding, removing
    or replacing directives only the union of their reaches can change.
    """

    fleet: Fleet
    at: datetime
    pairs: set[tuple[str, str]]

    @classmethod
    def compute(cls, fleet: Fleet, at: datetime) -> DesiredPairs:
        return cls(fleet, at, set(desired_pairs(fleet, at)))

    def update(
        self, fleet: Fleet, changed: Iterable[Directive]
    ) -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]:
        """Move to ``fleet`` (same sites and models, other directives); return (added, removed).

        ``changed`` holds every directive added, removed or replaced (old and new versions), and
        every directive they supersede, so their reach covers everything that can move.
        """
        touched: set[tuple[str, str]] = set()
        for d in changed:
            touched |= reach_of(fleet, d)
        active = in_force(fleet, self.at)
        added: set[tuple[str, str]] = set()
        removed: set[tuple[str, str]] = set()
        for m, s in touched:
            want = m in fleet.owner_of(s).models and deployable(fleet, m, s, active)
            have = (m, s) in self.pairs
            if want and not have:
                added.add((m, s))
            elif have and not want:
                removed.add((m, s))
        self.pairs |= added
        self.pairs -= removed
        self.fleet = fleet
        return frozenset(added), frozenset(removed)


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
