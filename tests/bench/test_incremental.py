"""The benchmark's incremental re-planning (``bench/incremental.py``) equals a full re-plan, so
the figures ``bench/plan.py`` reports are for a correct answer."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.incremental import DesiredPairs, IncrementalPlanner
from orchestrator.fleet.model import Fleet
from orchestrator.planning.desired import desired_pairs, desired_state
from orchestrator.planning.diff import CauseContext, diff, index
from tests.strategies import fleets, instants


@settings(max_examples=40)
@given(fleets(), instants(), st.data())
def test_incremental_update_equals_recompute(
    fleet: Fleet, at: datetime, data: st.DataObject
) -> None:
    if not fleet.directives:
        return
    did = data.draw(st.sampled_from(sorted(fleet.directives)))
    added = fleet.directives[did]
    before = fleet.with_directives({i: d for i, d in fleet.directives.items() if i != did})
    pairs = DesiredPairs.compute(before, at)
    changed = [added]
    if added.supersedes in fleet.directives:
        changed.append(fleet.directives[added.supersedes])
    plus, minus = pairs.update(fleet, changed)
    assert pairs.pairs == set(desired_pairs(fleet, at))
    assert plus == desired_pairs(fleet, at) - desired_pairs(before, at)
    assert minus == desired_pairs(before, at) - desired_pairs(fleet, at)


@settings(max_examples=40)
@given(fleets(), instants(), st.data())
def test_incremental_planner_matches_a_full_plan(
    fleet: Fleet, at: datetime, data: st.DataObject
) -> None:
    if not fleet.directives:
        return
    did = data.draw(st.sampled_from(sorted(fleet.directives)))
    added = fleet.directives[did]
    before = fleet.with_directives({i: d for i, d in fleet.directives.items() if i != did})
    actual = desired_state(before, at, fleet_digest="v1", include_dns=False)
    planner = IncrementalPlanner(before, at, "v1")
    changed = [added]
    if added.supersedes in fleet.directives:
        changed.append(fleet.directives[added.supersedes])
    touched = planner.directives_changed(fleet, changed, "v2")
    incremental = set(planner.plan(index(actual), CauseContext(), touched))
    full = set(diff(desired_state(fleet, at, fleet_digest="v2", include_dns=False), actual))
    assert incremental == full
