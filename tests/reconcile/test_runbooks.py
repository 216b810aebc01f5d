"""drain / evacuate / restore (docs/runbooks.md) in the demo workspace, through the real entry
point.

Routes move only inside legal sets: every route after a runbook command equals the law's route
(``rules.route``) minus the drained sites; the interlock refuses a drain that leaves a model
below its jurisdiction's budget unless ``--allow-outage``; every step is audited.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.demo.workspace import Workspace
from orchestrator.fleet.loader import load_fleet
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from orchestrator.state import open_store
from tests.cli.support import run_cli as cli

REPO = Path(__file__).resolve().parents[2]


def audit_kinds(ws: Workspace) -> list[str]:
    store = open_store(None, ws.fleet_dir, create=False)
    try:
        return [e.kind for e in store.audit.entries()]
    finally:
        store.close()


def test_drain_reroutes_inside_the_legal_set_and_restore_undoes_it(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_dir = str(ws.fleet_dir)
    code, out, err = cli(
        capsys,
        "drain",
        "--site",
        "aws-eu-central-1",
        "--reason",
        "INC-4711: 5xx",
        "--fleet",
        fleet_dir,
        "--yes",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert [d["site"] for d in result["drains"]] == ["aws-eu-central-1"]
    assert result["drains"][0]["reason"] == "INC-4711: 5xx" and "@" in result["drains"][0]["by"]
    fleet = load_fleet(ws.fleet_dir)
    now = datetime.now(UTC)
    moved = result["change"]["routes"]
    assert moved and result["change"]["summary"]["refused"] == 0
    for cell in moved:
        nats = [n if n != "*" else "ZZ" for n in cell["audience"]["nationalities"]]  # "*": other
        principal = Principal.of(cell["residency"], nats, cell["audience"]["groups"])
        legal = rules.route(fleet, cell["model"], principal, now)
        assert cell["before"] == list(legal) and "aws-eu-central-1" in legal
        assert cell["after"] == [s for s in legal if s != "aws-eu-central-1"]
    # explain shows it, leaves it out of the route; status lists it
    code, out, _ = cli(
        capsys, "explain", "-m", "fable-5", "-r", "DE", "-n", "DE", "--fleet", fleet_dir, "--json"
    )
    explained = json.loads(out)
    assert explained["sites"]["aws-eu-central-1"] == {
        "allowed": True,
        "reasons": [],
        "drained": True,
    }
    assert explained["route"] == ["gcp-europe-west4"]
    code, out, _ = cli(capsys, "status", "--fleet", fleet_dir, "--sites", "local", "--json")
    status = json.loads(out)
    assert [d["site"] for d in status["drains"]] == ["aws-eu-central-1"]
    assert status["drains"][0]["active"] is True
    assert all("aws-eu-central-1" not in r["route"] for r in status["routing"])
    # restore: back to the law's route
    code, out, err = cli(
        capsys, "restore", "--site", "aws-eu-central-1", "--fleet", fleet_dir, "--yes", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["drains"] == []
    code, out, _ = cli(
        capsys, "explain", "-m", "fable-5", "-r", "DE", "-n", "DE", "--fleet", fleet_dir, "--json"
    )
    assert json.loads(out)["route"] == ["aws-eu-central-1", "gcp-europe-west4"]
    assert audit_kinds(ws)[-2:] == ["drain.added", "drain.lifted"]


def test_evacuate_is_refused_below_budget_unless_allow_outage(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_dir = str(ws.fleet_dir)
    code, _, err = cli(
        capsys, "evacuate", "-j", "EU", "--reason", "region down", "--fleet", fleet_dir, "--yes"
    )
    assert code == 1
    flat = " ".join(err.split())
    assert "refused by the safety interlock (EU)" in flat and "--allow-outage" in flat
    assert "lose service" in flat  # the effect was shown before the refusal
    assert "drain.added" not in audit_kinds(ws)
    code, out, err = cli(
        capsys,
        "evacuate",
        "-j",
        "EU",
        "--reason",
        "region down",
        "--allow-outage",
        "INC-9, approved by the IC",
        "--fleet",
        fleet_dir,
        "--yes",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert sorted(d["site"] for d in result["drains"]) == ["aws-eu-central-1", "gcp-europe-west4"]
    lost = [c for c in result["change"]["routes"] if c["effect"] == "unavailable"]
    assert lost and all(c["home"] == "EU" for c in lost)  # EU residents lose service
    # ... to an outage: the law still allows them, so none of it is a refusal (451)
    assert result["change"]["summary"]["refused"] == 0
    assert result["change"]["summary"]["unavailable"] == len(lost)
    # ... and nobody else: UK residents are rerouted to UK sites only
    assert all(c["home"] == "EU" or c["after"] for c in result["change"]["routes"])
    kinds = audit_kinds(ws)
    assert kinds[-2:] == ["interlock.overridden", "drain.added"]
    # explain: an outage, not the law. Human: "unavailable (drained)"; JSON keeps the law's
    # decision per site and marks the drain.
    german = ["explain", "-m", "fable-5", "-r", "DE", "-n", "DE", "--fleet", fleet_dir]
    code, out, err = cli(capsys, *german)
    assert code == 0, err
    flat = " ".join(out.split())
    assert "route: unavailable (drained)" in flat and "refused" not in flat
    assert "aws-eu-central-1, gcp-europe-west4" in flat
    code, out, _ = cli(capsys, *german, "--json")
    sites = json.loads(out)["sites"]
    assert sites["aws-eu-central-1"] == {"allowed": True, "reasons": [], "drained": True}
    assert sites["gcp-europe-west4"]["allowed"] and sites["gcp-europe-west4"]["drained"]
    assert json.loads(out)["route"] == []
    # the HTML report: EU residents' cells are "unavailable (drained)", none is "refused"
    # by the drains (the same cells without the drains are served)
    page = ws.fleet_dir / "report.html"
    code, _, err = cli(capsys, "report", "--html", str(page), "--fleet", fleet_dir)
    assert code == 0, err
    html = page.read_text()
    assert 'data-state="unavailable"' in html and "unavailable (drained)" in html
    assert 'href="#site-gcp-europe-west4"' in html
    # restore the jurisdiction: never refused
    code, out, err = cli(capsys, "restore", "-j", "EU", "--fleet", fleet_dir, "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["drains"] == []


def test_confirmation_scope_and_bad_input(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_dir = str(ws.fleet_dir)
    base = ["--reason", "x", "--fleet", fleet_dir]
    # no terminal and no --yes: refused, nothing recorded
    code, _, err = cli(capsys, "drain", "--site", "aws-eu-central-1", *base)
    assert code == 1 and "--yes" in err
    # blast radius: a site outside --jurisdiction is refused
    code, _, err = cli(
        capsys, "drain", "--site", "aws-eu-central-1", "--jurisdiction", "US", *base, "--yes"
    )
    assert code == 1 and "outside --jurisdiction US" in " ".join(err.split())
    code, _, err = cli(capsys, "drain", "--site", "nope", *base, "--yes")
    assert code == 1 and "unknown site 'nope'" in err and "aws-eu-central-1" in err
    code, _, err = cli(
        capsys, "drain", "--site", "aws-eu-central-1", *base, "--until", "2001-01-01", "--yes"
    )
    assert code == 1 and "not in the future" in err
    code, _, err = cli(capsys, "restore", "--site", "aws-eu-central-1", "--fleet", fleet_dir)
    assert code == 1 and "is not drained" in err
    assert "drain.added" not in audit_kinds(ws)
    # a drain with --until ends on its own
    code, out, err = cli(
        capsys,
        "drain",
        "--site",
        "aws-eu-central-1",
        *base,
        "--until",
        "2999-01-01T00:00:00Z",
        "--yes",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["drains"][0]["until"] == "2999-01-01T00:00:00Z"
    code, out, _ = cli(
        capsys,
        "explain",
        "-m",
        "fable-5",
        "-r",
        "DE",
        "--at",
        "2999-01-01T00:00:01Z",
        "--fleet",
        fleet_dir,
        "--json",
    )
    assert "aws-eu-central-1" in json.loads(out)["route"]
