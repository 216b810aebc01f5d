"""The law of the soil: a site is bound by the jurisdiction whose countries hold its country.

"Move the border" (issue 19): an EU profile declaring a site in Virginia (``country: US``)
without ``governed_by`` must not take it out of the US suspension's reach. The governing set is
defined once (``fleet.model.governing_set``); these tests hold every reader to it: the
reference rules, the compiled table, explain, impact, desired state and the point of action.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings

from orchestrator.cli.app import main
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet, governing_set
from orchestrator.planning.desired import desired_state
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from orchestrator.providers.base import ResourceKind
from tests.strategies import fleets

VIRGINIA = """\
  - id: aws-eu-in-virginia
    provider: aws
    region: us-east-1
    country: US
    operator: acme-eu-gmbh
"""
AT = datetime(2026, 7, 1, tzinfo=UTC)


def moved_border(example_fleet_dir: Path, tmp_path: Path) -> Path:
    """The example fleet with an EU-declared site on US soil (no governed_by)."""
    root = tmp_path / "regions"
    shutil.copytree(example_fleet_dir, root, ignore=shutil.ignore_patterns(".sovereign"))
    eu = root / "eu.yaml"
    text = eu.read_text()
    assert "\nsites:\n" in text
    eu.write_text(text.replace("\nsites:\n", "\nsites:\n" + VIRGINIA, 1))
    return root


@settings(max_examples=200, deadline=None)
@given(fleets())
def test_every_site_is_governed_by_its_soil(fleet: Fleet) -> None:
    for site in fleet.sites.values():
        soil = fleet.home_of(site.country)
        assert site.jurisdiction in site.governing
        assert site.governed_by <= site.governing
        if soil is not None:
            assert soil in site.governing
        assert site.governing == governing_set(site, fleet.country_home)


def test_a_site_on_foreign_soil_is_bound_by_the_soil(
    example_fleet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = moved_border(example_fleet_dir, tmp_path)
    fleet = load_fleet(root)
    site = fleet.sites["aws-eu-in-virginia"]
    assert site.jurisdiction == "EU" and not site.governed_by
    assert site.governing == {"EU", "US"}

    german = Principal(residency="DE", nationalities=frozenset({"DE"}))
    route = rules.route(fleet, "fable-5", german, AT)
    assert "aws-eu-in-virginia" not in route  # the US suspension binds US soil
    assert RouteTable.compile(fleet).route("fable-5", german, AT) == route
    reasons = rules.decide(fleet, "fable-5", "aws-eu-in-virginia", german, AT)
    assert [(r.rule, r.ref) for r in reasons.reasons] == [("directive", "us-doc-2026-06-26")]

    # explain, as a user runs it
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "explain",
                "--fleet",
                str(root),
                "-m",
                "fable-5",
                "-r",
                "DE",
                "-n",
                "DE",
                "--at",
                AT.isoformat(),
                "--json",
            ]
        )
    assert exited.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert "aws-eu-in-virginia" not in doc["route"]
    refused = doc["sites"]["aws-eu-in-virginia"]
    assert refused["allowed"] is False
    assert refused["reasons"][0]["ref"] == "us-doc-2026-06-26"


def test_a_withdraw_binds_foreign_soil_in_desired_state_and_at_the_point_of_action(
    example_fleet_dir: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from orchestrator.fleet.model import Action
    from orchestrator.planning.plan import Change
    from orchestrator.providers.base import Op
    from orchestrator.reconcile.law import forbidden_placement

    fleet = load_fleet(moved_border(example_fleet_dir, tmp_path))
    june = fleet.directives["us-doc-2026-06-26"]
    withdraw = replace(june, id="us-withdraw", action=Action.WITHDRAW, supersedes=None)
    withdrawn = fleet.with_directives({**fleet.directives, withdraw.id: withdraw})
    placed = {
        (r.target, r.model)
        for r in desired_state(withdrawn, AT, fleet_digest="x")
        if r.kind is ResourceKind.DEPLOYMENT
    }
    assert ("aws-eu-in-virginia", "fable-5") not in placed
    assert ("aws-eu-in-virginia", "fable-5") in {
        (r.target, r.model)
        for r in desired_state(fleet, AT, fleet_digest="x")
        if r.kind is ResourceKind.DEPLOYMENT
    }
    change = Change(
        Op.CREATE,
        ResourceKind.DEPLOYMENT,
        "aws-eu-in-virginia",
        "fable-5",
        "",
        None,
        (("x", "y"),),
        "config",
        "EU",
    )
    why = forbidden_placement(withdrawn, change, (AT,))
    assert why is not None and "R4 withdrawn" in why and "us-withdraw" in why
