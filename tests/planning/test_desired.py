"""Desired state (docs/planning.md, "Desired state") on generated fleets and on the example
fleet."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings

from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.loader import load_fleet, read_fleet_files
from orchestrator.fleet.model import Action, Fleet
from orchestrator.planning.causes import cause_context, directive_events
from orchestrator.planning.desired import (
    desired_pairs,
    desired_state,
)
from orchestrator.planning.plan import TABLE_TARGET
from orchestrator.policy.epochs import in_force
from orchestrator.policy.rules import deployable
from orchestrator.providers.base import ResourceKind
from tests.strategies import fleets, instants

JUNE_13 = datetime(2026, 6, 13, tzinfo=UTC)


@settings(max_examples=40)
@given(fleets(), instants())
def test_desired_pairs_follow_the_rules(fleet: Fleet, at: datetime) -> None:
    active = in_force(fleet, at)
    pairs = desired_pairs(fleet, at)
    for s in fleet.sites:
        for m in fleet.models:
            assert ((m, s) in pairs) == deployable(fleet, m, s, active)


@settings(max_examples=40)
@given(fleets(), instants())
def test_artifact_exactly_where_deployment(fleet: Fleet, at: datetime) -> None:
    state = desired_state(fleet, at, fleet_digest="d")
    deps = {(r.model, r.target) for r in state if r.kind is ResourceKind.DEPLOYMENT}
    arts = {(r.model, r.target) for r in state if r.kind is ResourceKind.ARTIFACT}
    assert deps == arts == desired_pairs(fleet, at)
    tables = [r for r in state if r.kind is ResourceKind.ROUTE and r.target == TABLE_TARGET]
    assert len(tables) == 1 and tables[0].spec_dict() == {"fleet_digest": "d"}


@settings(max_examples=40)
@given(fleets(), instants())
def test_a_suspend_never_removes_a_deployment(fleet: Fleet, at: datetime) -> None:
    without_suspends = fleet.with_directives(
        {i: d for i, d in fleet.directives.items() if d.action is not Action.SUSPEND}
    )
    # Supersession links may point at removed suspends; that only ever un-supersedes withdraws
    # of another id, so compare against a fleet whose withdraws are not superseded by suspends.
    if any(
        d.supersedes in fleet.directives and fleet.directives[d.supersedes].action is not d.action
        for d in fleet.directives.values()
    ):
        return
    assert desired_pairs(fleet, at) == desired_pairs(without_suspends, at)


def test_example_fleet_keeps_suspended_deployments(example_fleet_dir: Path) -> None:
    fleet = load_fleet(example_fleet_dir)
    pairs = desired_pairs(fleet, JUNE_13)
    # The suspend stops routing foreign nationals; the deployment stays for US nationals.
    assert ("fable-5", "aws-us-east-1") in pairs
    assert ("fable-5", "aws-ap-northeast-1") in pairs
    # Export rules: sarvam-2 only in India, fable-5 never there.
    assert ("sarvam-2", "aws-ap-south-1") in pairs
    assert ("fable-5", "aws-ap-south-1") not in pairs
    assert ("sarvam-2", "aws-us-east-1") not in pairs


def test_table_digest_is_the_fleet_digest(example_fleet_dir: Path) -> None:
    files = read_fleet_files(example_fleet_dir)
    assert fleet_digest(files) == load_fleet(example_fleet_dir).digest
    changed = dict(files)
    changed["fleet.yaml"] = files["fleet.yaml"] + b"\n# comment\n"
    assert fleet_digest(changed) != fleet_digest(files)


def test_directive_events_and_table_cause(example_fleet_dir: Path) -> None:
    files = read_fleet_files(example_fleet_dir)
    fleet = load_fleet(example_fleet_dir)
    applied = {k: v for k, v in files.items() if "2026-06-26" not in k}
    events = directive_events(fleet, JUNE_13, applied)
    assert [(e.kind, e.directive_id) for e in events] == [("directive.added", "us-doc-2026-06-26")]
    ctx = cause_context(fleet, JUNE_13, applied, [])
    assert ctx.table_cause == "directive:us-doc-2026-06-26"
    # Removing a directive from the working fleet is named too.
    older = fleet.with_directives(
        {i: d for i, d in fleet.directives.items() if i != "us-doc-2026-06-26"}
    )
    removed = directive_events(older, JUNE_13, files)
    assert ("directive.removed", "us-doc-2026-06-26") in [(e.kind, e.directive_id) for e in removed]
    # A changed file under the same path is a change.
    edited = dict(files)
    edited["directives/us-doc-2026-06-12.yaml"] += b"\n"
    assert ("directive.changed", "us-doc-2026-06-12") in [
        (e.kind, e.directive_id) for e in directive_events(fleet, JUNE_13, edited)
    ]
    # Applied and superseded: reported as expired.
    later = directive_events(fleet, datetime(2026, 7, 1, tzinfo=UTC), files)
    assert [(e.kind, e.directive_id) for e in later] == [("directive.expired", "us-doc-2026-06-12")]
    # The first publication of the table is configuration.
    assert cause_context(fleet, JUNE_13, None, []).table_cause == "config"


def test_withdraw_causes_name_the_directive(example_fleet_dir: Path) -> None:
    fleet = load_fleet(example_fleet_dir)
    d = fleet.directives["us-doc-2026-06-12"]
    withdraw = replace(d, id="us-withdraw", action=Action.WITHDRAW, supersedes=None)
    fleet = fleet.with_directives({"us-withdraw": withdraw})
    ctx = cause_context(fleet, JUNE_13, None, [])
    assert ctx.withdrawn[("fable-5", "aws-us-east-1")] == "us-withdraw"
    assert ctx.withdrawn[("mythos-5", "aws-ap-northeast-1")] == "us-withdraw"  # governed_by US
    assert ("fable-5", "aws-eu-central-1") not in ctx.withdrawn
    assert ("fable-5", "aws-us-east-1") not in desired_pairs(fleet, JUNE_13)
