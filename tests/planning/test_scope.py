"""Scoping (--jurisdiction) and what left the fleet, as properties over random fleets."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.fleet.model import Fleet
from orchestrator.planning.departed import departed_sites, name_departures, site_record
from orchestrator.planning.desired import desired_state
from orchestrator.planning.diff import CauseContext, diff
from orchestrator.planning.scope import (
    change_in_scope,
    outside_scope,
    parse_scope,
    resource_in_scope,
    sites_in_scope,
)
from orchestrator.providers.base import Resource, ResourceKind, spec_of
from tests.strategies import fleets, instants


def _actual(fleet: Fleet, mask: int) -> frozenset[Resource]:
    every = sorted((m, s) for m in fleet.models for s in fleet.sites)
    return frozenset(
        Resource(kind, s, m, spec=spec_of(source=fleet.models[m].artifact))
        if kind is ResourceKind.ARTIFACT
        else Resource(kind, s, m, spec=spec_of(instance_count=1))
        for i, (m, s) in enumerate(every)
        if mask >> i & 1
        for kind in (ResourceKind.ARTIFACT, ResourceKind.DEPLOYMENT)
    )


@settings(max_examples=100, deadline=None)
@given(fleets(), instants(), st.integers(0, 2**36), st.data())
def test_a_scoped_plan_is_the_full_plan_restricted_to_the_scope(
    fleet: Fleet, at: datetime, mask: int, data: st.DataObject
) -> None:
    chosen = data.draw(st.sets(st.sampled_from(sorted(fleet.jurisdictions)), min_size=1))
    scope = parse_scope(fleet, chosen)
    assert scope is not None
    ctx = CauseContext(jurisdiction_of={s.id: s.jurisdiction for s in fleet.sites.values()})
    desired = desired_state(fleet, at, fleet_digest="d", include_dns=False)
    actual = _actual(fleet, mask)
    in_sites = set(sites_in_scope(fleet, scope))
    scoped = diff(
        frozenset(r for r in desired if resource_in_scope(fleet, r, scope)),
        frozenset(r for r in actual if r.target in in_sites),
        ctx,
    )
    full = diff(desired, actual, ctx)
    assert set(scoped) == {c for c in full if change_in_scope(c, scope)}
    assert outside_scope(scoped, scope) == ()
    # The routing table is always in it, whatever the scope.
    assert any(c.kind is ResourceKind.ROUTE for c in scoped)
    assert all(c.jurisdiction in scope for c in scoped if c.kind is not ResourceKind.ROUTE)


@settings(deadline=None)
@given(fleets())
def test_an_unknown_jurisdiction_is_a_usage_error_naming_the_valid_ones(fleet: Fleet) -> None:
    with pytest.raises(UsageError) as err:
        parse_scope(fleet, ["NOPE"])
    assert err.value.hint is not None and all(j in err.value.hint for j in fleet.jurisdictions)
    assert parse_scope(fleet, []) is None
    assert parse_scope(fleet, ["NOPE"], known={"NOPE"}) == ("NOPE",)


@settings(max_examples=100, deadline=None)
@given(fleets(), st.data())
def test_exactly_the_sites_that_left_are_departed(fleet: Fleet, data: st.DataObject) -> None:
    """Records at sites the fleet no longer declares are departed, with every record; the
    rest are not, and the reason says whether the site or its jurisdiction left."""
    leaving = data.draw(st.sets(st.sampled_from(sorted(fleet.sites))))
    rows = [
        {
            "address": f"deployment.{s.id}.{m}",
            "resource": {
                "kind": "deployment",
                "target": s.id,
                "model": m,
                "key": "",
                "spec": {"instance_count": "1"},
                "site": site_record(s),
            },
        }
        for s in fleet.sites.values()
        for m in sorted(fleet.models)
    ]
    remaining = {sid: site for sid, site in fleet.sites.items() if sid not in leaving}
    gone_jurisdictions = {
        j
        for j in fleet.jurisdictions
        if fleet.jurisdictions[j].sites and set(fleet.jurisdictions[j].sites) <= leaving
    }
    after = Fleet(
        {j: v for j, v in fleet.jurisdictions.items() if j not in gone_jurisdictions},
        remaining,
        fleet.models,
        {},
        fleet.settings,
    )
    found = departed_sites(after, rows)
    assert set(found) == leaving
    for sid, d in found.items():
        assert {r.model for r in d.recorded} == set(fleet.models)
        assert d.site.jurisdiction == fleet.sites[sid].jurisdiction
        expected = (
            f"jurisdiction {d.site.jurisdiction} left the fleet"
            if d.site.jurisdiction in gone_jurisdictions
            else f"site {sid} left the fleet"
        )
        assert d.reason == expected
    # Their teardown is named; nothing else is.
    ctx = CauseContext(
        jurisdiction_of={
            **{s.id: s.jurisdiction for s in after.sites.values()},
            **{t: d.site.jurisdiction for t, d in found.items()},
        }
    )
    recorded = frozenset(r for d in found.values() for r in d.recorded)
    named = name_departures(diff(frozenset(), recorded, ctx), after, found)
    assert {(c.target, c.reason) for c in named} == {(t, d.reason) for t, d in found.items()}
