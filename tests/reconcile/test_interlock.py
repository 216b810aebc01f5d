"""The safety interlock as a disruption budget, pure: what refuses, what only warns, capacity."""

from __future__ import annotations

from dataclasses import replace as _replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import RefusedError
from orchestrator.fleet.loader import load_fleet, read_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.planning.causes import withdrawn_pairs
from orchestrator.planning.desired import desired_pairs, desired_state
from orchestrator.planning.diff import CauseContext, diff
from orchestrator.planning.guarantees import (
    EXPORT,
    NOT_DEPLOYED,
    RESIDENCY,
    WITHDRAWN,
    capacity_problems,
    shortfalls,
)
from orchestrator.planning.plan import CauseKind, Change, cause_kind
from orchestrator.providers.base import Op, Resource, ResourceKind, spec_of
from orchestrator.reconcile.interlock import MIN_SITES, check_interlocks, enforce, plan_warnings
from tests.fleet.builder import FleetFactory
from tests.reconcile.conftest import WITHDRAW_YAML
from tests.strategies import fleets, instants

AT = datetime(2026, 6, 13, tzinfo=UTC)


def delete(site: str, model: str, cause: str = "config", jurisdiction: str = "EU") -> Change:
    return Change(
        Op.DELETE,
        ResourceKind.DEPLOYMENT,
        site,
        model,
        "",
        spec_of(instance_count=1),
        None,
        cause,
        jurisdiction,
    )


def test_enough_sites_passes(signed_fleet_factory: FleetFactory) -> None:
    fleet = load_fleet(signed_fleet_factory())
    pairs = desired_pairs(fleet, AT)
    assert check_interlocks(fleet, AT, pairs) == ()
    assert shortfalls(fleet, AT, pairs) == ()


def test_deletion_below_minimum_is_refused_naming_the_change(
    signed_fleet_factory: FleetFactory,
) -> None:
    fleet = load_fleet(
        signed_fleet_factory(
            mutate={"eu.yaml": [("min_sites_per_model: 1", "min_sites_per_model: 2")]}
        )
    )
    pairs = desired_pairs(fleet, AT) - {("m-us", "eu-1")}
    (v,) = check_interlocks(fleet, AT, frozenset(pairs), [delete("eu-1", "m-us")])
    assert (v.rule, v.jurisdiction, v.subject, v.count, v.required) == (
        MIN_SITES,
        "EU",
        "m-us",
        1,
        2,
    )
    assert v.changes == ("deployment.eu-1.m-us",) and v.overridable
    with pytest.raises(RefusedError) as err:
        enforce([v], None, changed=["EU", "US"])
    assert "m-us" in err.value.message and "for EU" in err.value.message
    assert err.value.hint is not None and '--allow-outage "REASON"' in err.value.hint
    # The refusal names its jurisdiction and lets the others go ahead alone.
    assert "--jurisdiction US" in err.value.hint and "--jurisdiction EU" not in err.value.hint
    enforce([v], "maintenance window CHG-1")  # an override with a reason passes
    with pytest.raises(RefusedError):
        enforce([v], "   ")


def test_a_site_that_cannot_be_observed_never_counts_as_serving(
    signed_fleet_factory: FleetFactory,
) -> None:
    """Fail closed: deleting m-us at eu-1 is within budget while eu-2 serves it, and refused
    when eu-2 cannot be observed (what it holds is unknown)."""
    fleet = load_fleet(signed_fleet_factory())
    pairs = frozenset(desired_pairs(fleet, AT) - {("m-us", "eu-1")})
    assert ("m-us", "eu-2") in pairs
    assert check_interlocks(fleet, AT, pairs, [delete("eu-1", "m-us")]) == ()
    (v,) = check_interlocks(fleet, AT, pairs, [delete("eu-1", "m-us")], unobservable={"eu-2"})
    assert (v.jurisdiction, v.subject, v.count, v.required) == ("EU", "m-us", 0, 1)
    # a site elsewhere that cannot be observed changes nothing for EU's budget
    assert check_interlocks(fleet, AT, pairs, [delete("eu-1", "m-us")], unobservable={"us-1"}) == ()


def test_a_first_rollout_below_the_minimum_only_warns(signed_fleet_factory: FleetFactory) -> None:
    # EU asks for 3 sites per model but has 2: creating them takes nothing away.
    fleet = load_fleet(
        signed_fleet_factory(
            mutate={"eu.yaml": [("min_sites_per_model: 1", "min_sites_per_model: 3")]}
        )
    )
    pairs = desired_pairs(fleet, AT)
    assert check_interlocks(fleet, AT, pairs, []) == ()
    warned = plan_warnings(fleet, AT, pairs, ())
    assert {(w.jurisdiction, w.model, w.deployed, w.required) for w in warned} == {
        ("EU", "m-us", 2, 3),
        ("EU", "m-open", 2, 3),
    }
    assert all(b.rule == "sites" for w in warned for b in w.blockers)


def test_export_shortfall_is_a_warning_naming_the_rule(signed_fleet_factory: FleetFactory) -> None:
    # The US no longer lets m-us be exported to the EU: configuration, but nothing is deleted.
    fleet = load_fleet(
        signed_fleet_factory(mutate={"us.yaml": [("restricted: [EU]", "restricted: []")]})
    )
    pairs = desired_pairs(fleet, AT)
    assert check_interlocks(fleet, AT, pairs) == ()
    (w,) = plan_warnings(fleet, AT, pairs, ())
    assert (w.jurisdiction, w.model, w.deployed) == ("EU", "m-us", 0)
    assert {(b.site, b.rule, b.ref) for b in w.blockers} == {
        ("eu-1", EXPORT, "US"),
        ("eu-2", EXPORT, "US"),
    }
    assert "m-us" in w.message and "EU" in w.message and "export" in w.message
    # ... and once m-us is deployed there, deleting it for that reason is refused.
    (v,) = check_interlocks(fleet, AT, pairs, [delete("eu-1", "m-us"), delete("eu-2", "m-us")])
    assert v.changes == ("deployment.eu-1.m-us", "deployment.eu-2.m-us")
    assert plan_warnings(fleet, AT, pairs, [v]) == ()  # refused, so not also a warning


def test_residency_shortfall_names_residency(signed_fleet_factory: FleetFactory) -> None:
    fleet = load_fleet(
        signed_fleet_factory(mutate={"eu.yaml": [("process_in: [EU]", "process_in: [US]")]})
    )
    pairs = desired_pairs(fleet, AT)
    found = shortfalls(fleet, AT, pairs)
    assert {(w.jurisdiction, w.model) for w in found} == {("EU", "m-us"), ("EU", "m-open")}
    assert all(b.rule == RESIDENCY and b.ref == "EU" for w in found for b in w.blockers)


def test_a_withdraw_never_refuses_and_is_named(signed_fleet_factory: FleetFactory) -> None:
    fleet = load_fleet(signed_fleet_factory({"directives/us-d1.yaml": WITHDRAW_YAML}))
    pairs = desired_pairs(fleet, AT)
    assert ("m-us", "us-1") not in pairs
    deletes = [delete("us-1", "m-us", "directive:us-d1", "US")]
    assert check_interlocks(fleet, AT, pairs, deletes) == ()
    us = [w for w in plan_warnings(fleet, AT, pairs, ()) if w.jurisdiction == "US"]
    assert [(w.model, [(b.rule, b.ref) for b in w.blockers]) for w in us] == [
        ("m-us", [(WITHDRAWN, "us-d1")])
    ]


def test_status_shortfall_names_what_is_not_deployed(signed_fleet_factory: FleetFactory) -> None:
    fleet = load_fleet(signed_fleet_factory())
    (w,) = [w for w in shortfalls(fleet, AT, set()) if w.jurisdiction == "US" and w.model == "m-us"]
    assert [(b.site, b.rule) for b in w.blockers] == [("us-1", NOT_DEPLOYED)]


def test_capacity_overflow_is_a_fleet_error_naming_the_site(
    signed_fleet_factory: FleetFactory,
) -> None:
    root = signed_fleet_factory(
        mutate={
            "eu.yaml": [
                ("operator: op-eu\n  - id: eu-2", "operator: op-eu\n    capacity: 1\n  - id: eu-2")
            ]
        }
    )
    fleet = load_fleet(root)
    (p,) = capacity_problems(fleet, read_fleet_files(root), label="regions")
    assert (p.file, p.field) == ("regions/eu.yaml", "sites[0].capacity")
    assert (
        p.line is not None
        and "capacity: 1" in (root / "eu.yaml").read_text().splitlines()[p.line - 1]
    )
    assert "eu-1" in p.message and "m-open, m-us" in p.message


# -- properties over generated fleets ----------------------------------------------------------


def with_minimums(fleet: Fleet, minimums: list[int]) -> Fleet:
    js = {
        j.id: _replace(j, min_sites_per_model=minimums[i % len(minimums)])
        for i, j in enumerate(sorted(fleet.jurisdictions.values(), key=lambda j: j.id))
    }
    return Fleet(js, fleet.sites, fleet.models, fleet.directives, fleet.settings)


def deployments(pairs: frozenset[tuple[str, str]], fleet: Fleet) -> frozenset[Resource]:
    return frozenset(
        Resource(ResourceKind.DEPLOYMENT, s, m, spec=spec_of(instance_count=1)) for m, s in pairs
    )


@st.composite
def plans(
    draw: st.DrawFn,
) -> tuple[Fleet, datetime, frozenset[tuple[str, str]], tuple[Change, ...]]:
    """A random fleet, an instant, and the plan from a random actual state: some pairs already
    deployed (desired or not), as if an earlier fleet or instant had placed them."""
    fleet = with_minimums(draw(fleets()), draw(st.lists(st.integers(0, 3), min_size=1, max_size=4)))
    at = draw(instants())
    every = sorted((m, s) for m in fleet.models for s in fleet.sites)
    mask = draw(st.integers(0, 2 ** len(every) - 1))
    actual = frozenset(p for i, p in enumerate(every) if mask >> i & 1)
    pairs = desired_pairs(fleet, at)
    ctx = CauseContext(
        withdrawn=withdrawn_pairs(fleet, at),
        jurisdiction_of={s.id: s.jurisdiction for s in fleet.sites.values()},
    )
    changes = diff(deployments(pairs, fleet), deployments(actual, fleet), ctx)
    return fleet, at, pairs, changes


@settings(max_examples=150, deadline=None)
@given(plans())
def test_refusals_are_exactly_the_deletions_below_a_budget(
    case: tuple[Fleet, datetime, frozenset[tuple[str, str]], tuple[Change, ...]],
) -> None:
    """The interlock never refuses a plan without a non-directive deletion below a budget, every
    refusal names such deletions, and every such deletion is refused."""
    fleet, at, pairs, changes = case
    violations = check_interlocks(fleet, at, pairs, changes)
    below: set[tuple[str, str]] = set()
    for c in changes:
        if c.op is not Op.DELETE or cause_kind(c.cause) is CauseKind.DIRECTIVE:
            continue
        j = fleet.jurisdictions[c.jurisdiction]
        left = sum(1 for s in j.sites if (c.model, s) in pairs)
        if c.model in j.models and left < j.min_sites_per_model:
            below.add((j.id, c.model))
    assert {(v.jurisdiction, v.subject) for v in violations} == below
    for v in violations:
        assert v.changes, "every refusal names a deletion"
        named = {c.address: c for c in changes}
        for address in v.changes:
            c = named[address]
            assert c.op is Op.DELETE and c.kind is ResourceKind.DEPLOYMENT
            assert c.model == v.subject and c.jurisdiction == v.jurisdiction
            assert cause_kind(c.cause) is not CauseKind.DIRECTIVE
        assert v.count < v.required


@settings(max_examples=100, deadline=None)
@given(fleets(), instants(), st.lists(st.integers(0, 3), min_size=1, max_size=4))
def test_a_first_rollout_is_never_refused(fleet: Fleet, at: datetime, mins: list[int]) -> None:
    fleet = with_minimums(fleet, mins)
    desired = desired_state(fleet, at, fleet_digest="x", include_dns=False)
    changes = diff(desired, frozenset())
    pairs = desired_pairs(fleet, at)
    assert check_interlocks(fleet, at, pairs, changes) == ()
    # Every shortfall is reported instead, with a reason at each missing site.
    for w in plan_warnings(fleet, at, pairs, ()):
        j = fleet.jurisdictions[w.jurisdiction]
        assert w.deployed < w.required == j.min_sites_per_model
        missing = {s for s in j.sites if (w.model, s) not in pairs}
        assert missing <= {b.site for b in w.blockers}
