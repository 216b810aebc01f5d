"""The safety interlock, pure: counts, directive explanations, capacity, enforcement."""

from __future__ import annotations

from dataclasses import replace as _replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import RefusedError
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.planning.desired import desired_pairs
from orchestrator.planning.plan import Change
from orchestrator.providers.base import Op, ResourceKind, spec_of
from orchestrator.reconcile.interlock import CAPACITY, MIN_SITES, check_interlocks, enforce
from tests.fleet.builder import FleetFactory
from tests.reconcile.conftest import WITHDRAW_YAML
from tests.strategies import fleets, instants

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


# -- properties over generated fleets ----------------------------------------------------------


def with_minimums(fleet: Fleet, minimums: list[int]) -> Fleet:
    js = {
        j.id: _replace(j, min_sites_per_model=minimums[i % len(minimums)])
        for i, j in enumerate(sorted(fleet.jurisdictions.values(), key=lambda j: j.id))
    }
    return Fleet(js, fleet.sites, fleet.models, fleet.directives, fleet.settings)


def shortfalls(fleet: Fleet, at: datetime) -> set[tuple[str, str]]:
    return {
        (v.jurisdiction, v.subject)
        for v in check_interlocks(fleet, at, desired_pairs(fleet, at))
        if v.rule == MIN_SITES
    }


@settings(max_examples=60)
@given(fleets(), instants(), st.lists(st.integers(0, 3), min_size=1, max_size=4))
def test_directives_never_trip_the_interlock(fleet: Fleet, at: datetime, mins: list[int]) -> None:
    """Directive-caused shortfalls are lawful: the refused (jurisdiction, model) set is the
    same with and without every directive (withdraws move pairs from 'deployed' to 'blocked by
    law'; suspends move nothing)."""
    fleet = with_minimums(fleet, mins)
    bare = fleet.with_directives({})
    assert shortfalls(fleet, at) == shortfalls(bare, at)


@settings(max_examples=60)
@given(fleets(), instants(), st.lists(st.integers(0, 3), min_size=1, max_size=4))
def test_violations_are_real_shortfalls(fleet: Fleet, at: datetime, mins: list[int]) -> None:
    fleet = with_minimums(fleet, mins)
    pairs = desired_pairs(fleet, at)
    for v in check_interlocks(fleet, at, pairs):
        j = fleet.jurisdictions[v.jurisdiction]
        assert v.rule == MIN_SITES and v.subject in j.models  # no capacity set by the strategy
        assert v.count == sum(1 for s in j.sites if (v.subject, s) in pairs) < v.required
        assert v.required == j.min_sites_per_model and v.overridable
