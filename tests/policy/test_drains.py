"""Drained sites (docs/runbooks.md) over generated fleets: routes move only inside legal sets.

The reference is ``rules.route`` (the law, rule by rule) minus the drained sites: whatever is
drained, the explained route, the gateway's serving table and the runbook's what-if agree with
it, and no route ever holds a site the law does not allow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.drain import Drain, Drains
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.routing import ServingTable
from orchestrator.policy import rules
from orchestrator.policy.drains import drain_effect
from orchestrator.policy.explain import explain
from orchestrator.policy.impact import Effect, impact
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from tests.strategies import fleets, instants, principals

REGIONS = Path(__file__).resolve().parents[2] / "regions"


@st.composite
def fleet_and_drained(draw: st.DrawFn) -> tuple[Fleet, frozenset[str]]:
    fleet = draw(fleets())
    sites = sorted(fleet.sites)
    drained = draw(st.frozensets(st.sampled_from(sites), min_size=1)) if sites else frozenset()
    return fleet, drained


def _drains(drained: frozenset[str], fleet: Fleet, at: datetime) -> Drains:
    return Drains(
        tuple(
            Drain(s, fleet.sites[s].jurisdiction, "test", "t@h", at - timedelta(days=3650))
            for s in drained
        )
    )


@settings(max_examples=100, deadline=None)
@given(fleet_and_drained(), st.lists(principals(), min_size=1, max_size=4), instants())
def test_drained_routes_are_the_legal_route_minus_the_drained_sites(
    case: tuple[Fleet, frozenset[str]], people: list[Principal], at: datetime
) -> None:
    fleet, drained = case
    serving = ServingTable.compile(fleet, drains=_drains(drained, fleet, at))
    for p in people:
        for m in fleet.models:
            legal = rules.route(fleet, m, p, at)
            expected = tuple(s for s in legal if s not in drained)
            assert serving.route(m, p, at) == expected
            e = explain(fleet, m, p, at, drained)
            assert e.route == expected
            body = e.to_json()
            sites = body["sites"]
            assert isinstance(sites, dict)
            for s in fleet.sites:
                # drained sites keep their legal decision and are marked; no other site is
                assert sites[s].get("drained", False) is (s in drained)
                assert sites[s]["allowed"] is (s in legal)
            assert serving.explain_json(m, p, at)["route"] == list(expected)
            # A route empty only by drains is an outage (503), never the law's refusal (451).
            verdict = serving.verdict(m, p, at)
            if expected:
                assert (verdict.status, verdict.route, e.unavailable) == (200, expected, ())
            elif legal:
                assert (verdict.status, verdict.drained, e.unavailable) == (503, legal, legal)
                assert serving.refusal_body(verdict, m, p, at)["error"]["sites"] == list(legal)
            else:
                assert (verdict.status, verdict.drained, e.unavailable) == (451, (), ())
                body451 = serving.refusal_body(verdict, m, p, at)
                assert body451["error"]["type"] == "unavailable_for_legal_reasons"


@settings(max_examples=60, deadline=None)
@given(fleet_and_drained(), instants())
def test_the_drain_what_if_lists_exactly_the_cells_that_move(
    case: tuple[Fleet, frozenset[str]], at: datetime
) -> None:
    fleet, drained = case
    table = RouteTable.compile(fleet)
    changes = drain_effect(fleet, frozenset(), drained, at, table=table)
    for c in changes:
        legal = table.route(c.model, c.representative(), at)
        assert c.before == legal
        assert c.after == tuple(s for s in legal if s not in drained)
        assert set(c.after) <= set(c.before)  # a drain never adds a site to a route
        # a drain never makes a refusal of the law: whoever it leaves without a site loses
        # service (503), the law still allows them
        assert c.effect is (Effect.UNAVAILABLE if not c.after else Effect.REROUTED)
    # restoring is the exact mirror image
    back = drain_effect(fleet, drained, frozenset(), at, table=table)
    assert [(c.model, c.residency, c.after, c.before) for c in back] == [
        (c.model, c.residency, c.before, c.after) for c in changes
    ]
    assert all(c.effect is not Effect.REFUSED for c in back)


def test_a_drain_with_until_ends_on_its_own() -> None:
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    d = Drain("s", "EU", "maintenance", "t@h", t0, until=t0 + timedelta(hours=2))
    drains = Drains((d,), "1")
    assert drains.sites_at(t0) == {"s"}
    assert drains.sites_at(t0 + timedelta(hours=1, minutes=59)) == {"s"}
    assert drains.sites_at(t0 + timedelta(hours=2)) == frozenset()
    assert drains.sites_at(t0 - timedelta(seconds=1)) == frozenset()
    assert Drain.from_json(d.to_json()) == d


def test_impact_tells_service_lost_to_drains_from_the_laws_refusal() -> None:
    """The June directive leaves Japanese residents only gcp-asia-northeast1; drained, that is
    an outage ("unavailable"), while foreigners in the US are refused by the law."""
    fleet = load_fleet(REGIONS)
    d = fleet.directives["us-doc-2026-06-12"]
    base = fleet.with_directives({k: v for k, v in fleet.directives.items() if k != d.id})
    at = datetime(2026, 6, 13, tzinfo=UTC)
    drained = impact(base, d, at, drained=frozenset({"gcp-asia-northeast1"}))
    plain = impact(base, d, at)
    lost = [c for c in drained.changes if c.residency == "JP" and c.model == "fable-5"]
    assert lost and all(c.effect is Effect.UNAVAILABLE and c.after == () for c in lost)
    moved = [c for c in plain.changes if c.residency == "JP" and c.model == "fable-5"]
    assert moved and all(c.after == ("gcp-asia-northeast1",) for c in moved)
    assert all(c.effect is Effect.REROUTED for c in moved)
    for result in (plain, drained):
        us = [c for c in result.changes if c.residency == "US" and c.model == "fable-5"]
        assert us and all(c.effect is Effect.REFUSED for c in us)
    assert drained.summary()["unavailable"] == len(
        [c for c in drained.changes if c.effect is Effect.UNAVAILABLE]
    )
    assert plain.summary()["unavailable"] == 0
