"""The safety interlock, pure: counts, directive explanations, capacity, enforcement."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.errors import RefusedError
from orchestrator.fleet.loader import load_fleet
from orchestrator.planning.desired import desired_pairs
from orchestrator.planning.plan import Change
from orchestrator.providers.base import Op, ResourceKind, spec_of
from orchestrator.reconcile.interlock import CAPACITY, MIN_SITES, check_interlocks, enforce
from tests.fleet.builder import FleetFactory
from tests.reconcile.conftest import WITHDRAW_YAML

AT = datetime(2026, 6, 13, tzinfo=UTC)


def test_enough_sites_passes(signed_fleet_factory: FleetFactory) -> None:
    fleet = load_fleet(signed_fleet_factory())
    assert check_interlocks(fleet, AT, desired_pairs(fleet, AT)) == ()


def test_deletion_below_minimum_is_refused_naming_the_change(
    signed_fleet_factory: FleetFactory,
) -> None:
    fleet = load_fleet(
        signed_fleet_factory(
            mutate={"eu.yaml": [("min_sites_per_model: 1", "min_sites_per_model: 2")]}
        )
    )
    pairs = desired_pairs(fleet, AT) - {("m-us", "eu-1")}
    delete = Change(
        Op.DELETE,
        ResourceKind.DEPLOYMENT,
        "eu-1",
        "m-us",
        "",
        spec_of(instance_count=1),
        None,
        "config",
        "EU",
    )
    (v,) = check_interlocks(fleet, AT, frozenset(pairs), [delete])
    assert (v.rule, v.jurisdiction, v.subject, v.count, v.required) == (
        MIN_SITES,
        "EU",
        "m-us",
        1,
        2,
    )
    assert v.changes == ("deployment.eu-1.m-us",) and v.overridable
    with pytest.raises(RefusedError) as err:
        enforce([v], None)
    assert "m-us" in err.value.message and "EU" in err.value.message
    assert err.value.hint is not None and '--allow-outage "REASON"' in err.value.hint
    enforce([v], "maintenance window CHG-1")  # an override with a reason passes
    with pytest.raises(RefusedError):
        enforce([v], "   ")


def test_config_shortfall_is_refused_too(signed_fleet_factory: FleetFactory) -> None:
    # The US no longer lets m-us be exported to the EU: a config cause, not a directive.
    fleet = load_fleet(
        signed_fleet_factory(mutate={"us.yaml": [("restricted: [EU]", "restricted: []")]})
    )
    (v,) = check_interlocks(fleet, AT, desired_pairs(fleet, AT))
    assert (v.jurisdiction, v.subject, v.count, v.changes) == ("EU", "m-us", 0, ())
    assert "configuration" in v.message


def test_withdraw_shortfall_is_lawful(signed_fleet_factory: FleetFactory) -> None:
    fleet = load_fleet(
        signed_fleet_factory(
            {"directives/us-d1.yaml": WITHDRAW_YAML},
            mutate={"eu.yaml": [("min_sites_per_model: 1", "min_sites_per_model: 2")]},
        )
    )
    pairs = desired_pairs(fleet, AT)
    assert ("m-us", "eu-2") not in pairs and ("m-us", "us-1") not in pairs
    # EU: 1 site + 1 blocked only by the withdraw = 2; US: 0 + 1 withdrawn >= 1.
    assert check_interlocks(fleet, AT, pairs) == ()


def test_capacity_is_refused_without_override(signed_fleet_factory: FleetFactory) -> None:
    fleet = load_fleet(
        signed_fleet_factory(
            mutate={
                "eu.yaml": [
                    (
                        "operator: op-eu\n  - id: eu-2",
                        "operator: op-eu\n    capacity: 1\n  - id: eu-2",
                    )
                ]
            }
        )
    )
    (v,) = check_interlocks(fleet, AT, desired_pairs(fleet, AT))
    assert (v.rule, v.subject, v.count, v.required, v.overridable) == (
        CAPACITY,
        "eu-1",
        2,
        1,
        False,
    )
    with pytest.raises(RefusedError, match="capacity"):
        enforce([v], "any reason")
