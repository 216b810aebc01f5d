"""What may wait for a change window or a rollout wave, and what never does
(orchestrator/planning/deferral.py; docs/gitops.md, "Change windows and rollout waves")."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.planning.deferral import may_wait
from orchestrator.planning.plan import Change
from orchestrator.policy.rules import export_allowed
from orchestrator.providers.base import Op, ResourceKind

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(REPO / "regions")


def change(op: Op, kind: ResourceKind, target: str, model: str, cause: str) -> Change:
    spec = (("k", "v"),)
    return Change(
        op,
        kind,
        target,
        model,
        "",
        None if op is Op.CREATE else spec,
        None if op is Op.DELETE else spec,
        cause,
    )


def test_only_config_placements_and_removals_at_sites_of_the_fleet_wait(fleet: Fleet) -> None:
    deploy, artifact, route = ResourceKind.DEPLOYMENT, ResourceKind.ARTIFACT, ResourceKind.ROUTE
    eu = "aws-eu-central-1"
    assert may_wait(fleet, change(Op.CREATE, deploy, eu, "olmo-3", "config"))
    assert may_wait(fleet, change(Op.UPDATE, artifact, eu, "olmo-3", "config"))
    assert may_wait(fleet, change(Op.DELETE, deploy, eu, "olmo-3", "config"))  # R2 allows it
    # never: the law, drift repair, the routing table, a site that left the fleet
    assert not may_wait(fleet, change(Op.DELETE, deploy, eu, "olmo-3", "directive:us-doc"))
    assert not may_wait(fleet, change(Op.CREATE, deploy, eu, "olmo-3", "drift"))
    assert not may_wait(fleet, change(Op.UPDATE, deploy, eu, "olmo-3", "drift"))
    assert not may_wait(fleet, change(Op.UPDATE, route, "table", "*", "config"))
    assert not may_wait(fleet, change(Op.DELETE, deploy, "gone-site", "olmo-3", "config"))


def test_the_removal_of_what_export_rules_forbid_never_waits(fleet: Fleet) -> None:
    forbidden = next(
        (m, s)
        for m in sorted(fleet.models)
        for s in sorted(fleet.sites)
        if not export_allowed(fleet, m, s)
    )
    for kind in (ResourceKind.DEPLOYMENT, ResourceKind.ARTIFACT):
        assert not may_wait(fleet, change(Op.DELETE, kind, forbidden[1], forbidden[0], "config"))
