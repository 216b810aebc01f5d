"""Desired state (SPEC 3): which deployments, artifacts and routing records should exist.

A deployment ``(m, s)`` is desired when R1, R2 and R4 hold and someone could be routed to ``s``
(``policy.rules.deployable``); its artifact is desired at exactly the same sites. A suspend never
removes a deployment, only routing. The published routing table is one ROUTE resource whose
spec is the digest of the fleet files: applying it records the fleet as applied, which is what
the gateway hot-reloads, so a directive that changes no deployment still reaches the data plane.

``DesiredPairs`` keeps the (model, site) decision per pair so that, when one directive changes,
only the pairs it can reach are recomputed (the incremental path ``bench/plan.py`` measures).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from orchestrator.fleet.loader import fleet_digest
from orchestrator.fleet.model import ALL_MODELS, Directive, Fleet
from orchestrator.planning.dns import desired_dns_records
from orchestrator.policy.rules import deployable, in_force
from orchestrator.providers.base import Resource, ResourceKind, spec_of

TABLE_TARGET = "table"
TABLE_MODEL = "*"


def fleet_files_digest(files: Mapping[str, bytes]) -> str:
    """The digest of a fleet's exact files (the loader's ``Fleet.digest``): the routing
    table's identity, compared between the working fleet and the applied one."""
    return fleet_digest(files)


def table_resource(fleet_digest: str) -> Resource:
    """The published routing table, standing for the applied fleet."""
    return Resource(
        ResourceKind.ROUTE, TABLE_TARGET, TABLE_MODEL, spec=spec_of(fleet_digest=fleet_digest)
    )


def deployment_resource(fleet: Fleet, model_id: str, site_id: str) -> Resource:
    site = fleet.sites[site_id]
    spec = spec_of(instance_type=site.instance_type, instance_count=site.instance_count)
    return Resource(ResourceKind.DEPLOYMENT, site_id, model_id, spec=spec)


def artifact_resource(fleet: Fleet, model_id: str, site_id: str) -> Resource:
    return Resource(
        ResourceKind.ARTIFACT,
        site_id,
        model_id,
        spec=spec_of(source=fleet.models[model_id].artifact),
    )


def resources_for_pair(fleet: Fleet, model_id: str, site_id: str) -> tuple[Resource, Resource]:
    return artifact_resource(fleet, model_id, site_id), deployment_resource(
        fleet, model_id, site_id
    )


def desired_pairs(fleet: Fleet, at: datetime) -> frozenset[tuple[str, str]]:
    """Every (model, site) that should hold a deployment at ``at``."""
    active = in_force(fleet, at)
    return frozenset(
        (m, s)
        for s in fleet.sites
        for m in fleet.owner_of(s).models
        if m in fleet.models and deployable(fleet, m, s, active)
    )


def desired_state(
    fleet: Fleet, at: datetime, *, fleet_digest: str, include_dns: bool = True
) -> frozenset[Resource]:
    """The whole desired state: deployments, artifacts, the routing table and DNS records."""
    resources: set[Resource] = {table_resource(fleet_digest)}
    for m, s in desired_pairs(fleet, at):
        resources.update(resources_for_pair(fleet, m, s))
    if include_dns:
        resources.update(desired_dns_records(fleet, at))
    return frozenset(resources)


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

    SPEC 2: a directive changes nothing outside its own reach, so after adding, removing or
    replacing directives only the union of their reaches can change.
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
