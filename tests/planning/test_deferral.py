"""What may wait for a change window or a rollout wave, and what never does
(orchestrator/planning/deferral.py; docs/gitops.md, "Change windows and rollout waves")."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet, Rollout
from orchestrator.fleet.windows import ChangeWindows, Window, WindowKind, window_state
from orchestrator.planning.deferral import Health, defer, may_wait
from orchestrator.planning.desired import desired_pairs
from orchestrator.planning.plan import Change, WaitReason
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


_FREEZE = ChangeWindows(
    "Europe/Berlin", (Window(WindowKind.DENY, "0 18 * * 5", timedelta(hours=62)),)
)


@pytest.fixture(scope="module")
def staged(fleet: Fleet) -> Fleet:
    """The example fleet with EU's weekend freeze and three waves."""
    jurisdictions = dict(fleet.jurisdictions)
    jurisdictions["EU"] = replace(jurisdictions["EU"], changes=_FREEZE)
    rollout = Rollout((("JP",), ("UK", "IN"), ("EU", "US")), timedelta(minutes=10))
    return Fleet(
        jurisdictions,
        fleet.sites,
        fleet.models,
        fleet.directives,
        replace(fleet.settings, rollout=rollout),
        digest=fleet.digest,
    )


_CAUSES = st.sampled_from(["config", "drift", "directive:us-doc-2026-06-12"])
_OPS = st.sampled_from([Op.CREATE, Op.UPDATE, Op.DELETE])
_KINDS = st.sampled_from([ResourceKind.ARTIFACT, ResourceKind.DEPLOYMENT])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(_OPS, _KINDS, st.integers(0, 50), st.integers(0, 10), _CAUSES), max_size=30),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    st.booleans(),
)
def test_defer_splits_the_changes_and_holds_back_only_what_may_wait(
    staged: Fleet,
    picks: list[tuple[Op, ResourceKind, int, int, str]],
    at: datetime,
    jp_healthy: bool,
) -> None:
    sites, models = sorted(staged.sites), sorted(staged.models)
    changes = tuple(
        {
            (op, kind, sites[s % len(sites)], models[m % len(models)]): change(
                op, kind, sites[s % len(sites)], models[m % len(models)], cause
            )
            for op, kind, s, m, cause in picks
        }.values()
    )
    desired = desired_pairs(staged, at)
    health = {
        (m, s): Health(jp_healthy, at - timedelta(hours=1) if jp_healthy else None, "x")
        for m, s in desired
        if staged.sites[s].jurisdiction == "JP"
    }
    go, waiting = defer(staged, at, changes, desired, health)
    assert sorted(go + tuple(d.change for d in waiting), key=repr) == sorted(changes, key=repr)
    eu_open = window_state(_FREEZE, at).open
    for d in waiting:
        assert may_wait(staged, d.change)
        owner = staged.sites[d.change.target].jurisdiction
        if d.why is WaitReason.WINDOW:
            assert owner == "EU" and not eu_open
        else:
            assert owner != "JP"  # the first wave never waits for a wave
        if d.why is WaitReason.WAVE_FAILED:
            assert not jp_healthy
    for c in go:
        if may_wait(staged, c) and staged.sites[c.target].jurisdiction == "EU":
            assert eu_open
