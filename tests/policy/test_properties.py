"""docs/decisions.md properties over generated fleets: residency, zero collateral, restoration,
order, fail-closed nationality, and incremental recompilation."""

from __future__ import annotations

from datetime import datetime
from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.model import Action, Directive, Fleet
from orchestrator.policy import rules
from orchestrator.policy.epochs import in_force
from orchestrator.policy.impact import Effect, impact
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from tests.strategies import ALL_COUNTRIES, GROUPS, directives, fleets, instants, principals


@st.composite
def fleet_and_new_directive(draw: st.DrawFn) -> tuple[Fleet, Directive]:
    fleet = draw(fleets())
    new = draw(directives(tuple(fleet.jurisdictions), tuple(fleet.models), "new"))
    return fleet, new


def _allowed(fleet: Fleet, at: datetime, principal: Principal) -> set[tuple[str, str]]:
    active = in_force(fleet, at)
    return {
        (m, s)
        for m in fleet.models
        for s in fleet.sites
        if rules.decide(fleet, m, s, principal, at, active).allowed
    }


@settings(max_examples=120, deadline=None)
@given(fleets(), principals(), instants())
def test_no_route_contains_a_site_failing_residency(
    fleet: Fleet, principal: Principal, at: datetime
) -> None:
    table = RouteTable.compile(fleet)
    home = fleet.home_of(principal.residency)
    for m in fleet.models:
        for s in table.route(m, principal, at):
            if home is not None:
                assert fleet.sites[s].jurisdiction in fleet.jurisdictions[home].process_in
            assert fleet.settings.unlisted_countries.value == "any" or home is not None


@settings(max_examples=120, deadline=None)
@given(fleet_and_new_directive(), st.lists(principals(), min_size=1, max_size=4), instants())
def test_adding_a_directive_only_removes_what_it_reaches(
    case: tuple[Fleet, Directive], people: list[Principal], at: datetime
) -> None:
    fleet, new = case
    new = _without_supersedes(new)
    with_it = fleet.with_directives({**fleet.directives, new.id: new})
    new_in_force = new in in_force(with_it, at)
    for p in people:
        before, after = _allowed(fleet, at, p), _allowed(with_it, at, p)
        assert after <= before  # nothing is ever gained
        for m, s in before - after:
            assert new_in_force
            assert new.jurisdiction in fleet.sites[s].governing
            assert new.names(m)
            assert new.action is Action.WITHDRAW or rules.audience_matches(new.audience, p)


@settings(max_examples=100, deadline=None)
@given(fleet_and_new_directive(), st.lists(st.tuples(principals(), instants()), max_size=6))
def test_removing_it_restores_every_decision_and_recompiles_incrementally(
    case: tuple[Fleet, Directive], queries: list[tuple[Principal, datetime]]
) -> None:
    fleet, new = case
    with_it = fleet.with_directives({**fleet.directives, new.id: new})
    table = RouteTable.compile(fleet)
    added = RouteTable.compile(with_it, previous=table)
    removed = RouteTable.compile(fleet, previous=added)
    for p, at in queries:
        for m in fleet.models:
            assert added.route(m, p, at) == rules.route(with_it, m, p, at)
            assert removed.route(m, p, at) == table.route(m, p, at)
            assert removed.route(m, p, at) == rules.route(fleet, m, p, at)


@settings(max_examples=80, deadline=None)
@given(fleet_and_new_directive())
def test_recompiling_reuses_every_key_the_directive_cannot_reach(
    case: tuple[Fleet, Directive],
) -> None:
    fleet, new = case
    new = _without_supersedes(new)
    table = RouteTable.compile(fleet)
    added = RouteTable.compile(fleet.with_directives({**fleet.directives, new.id: new}), table)
    for m in fleet.models:
        for h in [*fleet.jurisdictions, None]:
            old = table.timelines[m].get(h)
            if old is not None and not new.names(m):
                assert added.timelines[m][h] is old


@settings(max_examples=120, deadline=None)
@given(fleets(), principals(), instants())
def test_route_is_the_allowed_set_in_spec_order(
    fleet: Fleet, principal: Principal, at: datetime
) -> None:
    table = RouteTable.compile(fleet)
    home = fleet.home_of(principal.residency)
    failover = fleet.jurisdictions[home].failover if home is not None else ()
    active = in_force(fleet, at)
    for m in fleet.models:
        allowed = {
            s for s in fleet.sites if rules.decide(fleet, m, s, principal, at, active).allowed
        }
        route = table.route(m, principal, at)
        assert set(route) == allowed and len(route) == len(allowed)
        head = [s for s in failover if s in allowed]
        assert list(route[: len(head)]) == head
        assert list(route[len(head) :]) == sorted(allowed - set(head))


@settings(max_examples=120, deadline=None)
@given(
    fleets(),
    st.sampled_from(ALL_COUNTRIES),
    st.frozensets(st.sampled_from(GROUPS)),
    instants(),
)
def test_unknown_nationality_is_never_treated_better_than_a_known_one(
    fleet: Fleet, residency: str, groups: frozenset[str], at: datetime
) -> None:
    table = RouteTable.compile(fleet)
    unknown = Principal(residency, frozenset(), groups)
    known_sets = [frozenset({c}) for c in ALL_COUNTRIES] + [
        frozenset(pair) for pair in product(ALL_COUNTRIES[:3], ALL_COUNTRIES[3:6])
    ]
    for m in fleet.models:
        served_unknown = set(table.route(m, unknown, at))
        for nats in known_sets:
            known = Principal(residency, nats, groups)
            assert served_unknown <= set(table.route(m, known, at))


def _without_supersedes(d: Directive) -> Directive:
    """A fresh directive that replaces nothing: its effect is only ever a removal."""
    return Directive(
        **{f: getattr(d, f) for f in Directive.__slots__ if f != "supersedes"}, supersedes=None
    )


@settings(max_examples=60, deadline=None)
@given(fleet_and_new_directive(), instants())
def test_impact_has_no_collateral_and_matches_the_rules(
    case: tuple[Fleet, Directive], at: datetime
) -> None:
    fleet, new = case
    result = impact(fleet, new, at)
    assert result.collateral == 0
    with_it = fleet.with_directives({**fleet.directives, new.id: new})
    for c in result.changes:
        p = c.representative()
        assert c.before == rules.route(fleet, c.model, p, result.at)
        assert c.after == rules.route(with_it, c.model, p, result.at)
        if new.supersedes is None:
            assert c.effect is not Effect.RESTORED  # only a replacement can give back
