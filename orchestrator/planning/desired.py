"""Desired state (docs/planning.md, "Desired state"): which deployments, artifacts and routing
records should exist.

A deployment ``(m, s)`` is desired when R1, R2 and R4 hold and someone could be routed to ``s``
(``policy.rules.deployable``); its artifact is desired at exactly the same sites. A suspend never
removes a deployment, only routing. The published routing table is one ROUTE resource whose
spec is the digest of the fleet files: applying it records the fleet as applied, which is what
the gateway hot-reloads, so a directive that changes no deployment still reaches the data plane.
Which withdrawals are in force comes from the fleet's epoch index (``policy.epochs``).
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.fleet.model import Action, Fleet, Unlisted
from orchestrator.planning.dns import desired_dns_records
from orchestrator.planning.gc_paused import gc_paused
from orchestrator.planning.plan import TABLE_MODEL, TABLE_TARGET
from orchestrator.policy.epochs import EpochIndex
from orchestrator.policy.rules import export_allowed
from orchestrator.providers.base import Resource, ResourceKind, spec_of


def table_resource(fleet_digest: str) -> Resource:
    """The published routing table, standing for the applied fleet: its spec is the fleet
    digest (``fleet.digest.fleet_digest``, i.e. ``Fleet.digest``), compared between the
    working fleet and the applied one."""
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


def desired_pairs(
    fleet: Fleet, at: datetime, epochs: EpochIndex | None = None
) -> frozenset[tuple[str, str]]:
    """Every (model, site) that should hold a deployment at ``at`` (``epochs``: the fleet's
    epoch index, when the caller holds one).

    The same decision as ``policy.rules.deployable`` for every pair (the tests check it), with
    the per-site and per-model parts hoisted out of the loop: fleets reach 100,000 pairs.
    """
    if epochs is None:
        epochs = EpochIndex(fleet)
    active = epochs.in_force(at)
    withdraws = [d for d in active if d.action is Action.WITHDRAW]
    anyone = fleet.settings.unlisted_countries is Unlisted.ANY
    processed: set[str] = set()
    for j in fleet.jurisdictions.values():
        processed |= j.process_in
    export_ok: dict[tuple[str, str], bool] = {}
    out: list[tuple[str, str]] = []
    for site in fleet.sites.values():
        if not (anyone or site.jurisdiction in processed):
            continue  # reachable: nobody may be processed here
        owner = fleet.jurisdictions[site.jurisdiction]
        binding = [d for d in withdraws if d.jurisdiction in site.governing]
        for m in owner.models:  # offered (R1)
            if m not in fleet.models:
                continue
            key = (m, owner.id)
            allowed = export_ok.get(key)
            if allowed is None:
                allowed = export_ok[key] = export_allowed(fleet, m, site.id)
            if allowed and not any(d.names(m) for d in binding):  # R2, R4
                out.append((m, site.id))
    return frozenset(out)


def desired_state(
    fleet: Fleet, at: datetime, *, fleet_digest: str, include_dns: bool = True
) -> frozenset[Resource]:
    """The whole desired state: deployments, artifacts, the routing table and DNS records."""
    with gc_paused():
        return _desired_state(fleet, at, fleet_digest, include_dns)


def _desired_state(
    fleet: Fleet, at: datetime, fleet_digest: str, include_dns: bool
) -> frozenset[Resource]:
    dep_spec = {
        s.id: spec_of(instance_type=s.instance_type, instance_count=s.instance_count)
        for s in fleet.sites.values()
    }
    art_spec = {m.id: spec_of(source=m.artifact) for m in fleet.models.values()}
    resources: list[Resource] = [table_resource(fleet_digest)]
    artifact, deployment = ResourceKind.ARTIFACT, ResourceKind.DEPLOYMENT
    for m, s in desired_pairs(fleet, at):
        resources.append(Resource(artifact, s, m, "", art_spec[m]))
        resources.append(Resource(deployment, s, m, "", dep_spec[s]))
    if include_dns:
        resources.extend(desired_dns_records(fleet, at))
    return frozenset(resources)
