"""The plan/apply/status commands in process (the same entry point, without process start-up)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.demo.workspace import Workspace
from tests.cli.support import run_cli as cli

REPO = Path(__file__).resolve().parents[2]
AT = "2026-06-13T00:00:00Z"


def fleet_args(w: Workspace) -> list[str]:
    return ["--fleet", str(w.fleet_dir), "--sites", "local", "--at", AT]


def deployments(w: Workspace) -> int:
    return len(list((w.fleet_dir / ".sovereign" / "sites").glob("*/deployments/*.json")))


def test_saved_plan_flow_and_status(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    args = fleet_args(ws)
    code, out, _ = cli(capsys, "plan", *args, "--detailed-exitcode")
    assert code == 2
    assert "+ create" in out and "artifact.aws-us-east-1.fable-5" in out and "(config)" in out
    planfile = ws.root / "plan.json"
    code, out, _ = cli(capsys, "plan", *args, "--json", "--out", str(planfile))
    assert code == 0
    on_stdout = json.loads(out)  # --json: stdout is the plan and nothing else
    assert on_stdout["changes"] == json.loads(planfile.read_text())["changes"]
    assert on_stdout["summary"]["by_op"] == {"create": 65, "update": 0, "delete": 0}
    code, out, _ = cli(
        capsys, "apply", str(planfile), "--fleet", str(ws.fleet_dir), "--sites", "local"
    )
    assert code == 0, out
    assert deployments(ws) == 32 and "Apply complete" in out
    code, out, _ = cli(capsys, "plan", *args, "--detailed-exitcode")
    assert code == 0 and "No changes" in out
    code, _, err = cli(
        capsys, "apply", str(planfile), "--fleet", str(ws.fleet_dir), "--sites", "local"
    )
    assert code == 1 and "state moved" in err and "sovereign plan --out" in err
    code, out, _ = cli(capsys, "status", *args, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["fleet"]["in_sync"] is True and not data["missing"]
    assert data["routing_from"] == "applied"
    routes = {(r["jurisdiction"], r["model"]): r["route"] for r in data["routing"]}
    assert routes[("JP", "fable-5")] == ["gcp-asia-northeast1"]  # unknown nationality: fail closed
    assert routes[("US", "fable-5")] == []
    assert routes[("EU", "fable-5")] == ["aws-eu-central-1", "gcp-europe-west4"]
    # Hand-made drift shows up in status and in the plan.
    (ws.fleet_dir / ".sovereign/sites/aws-us-east-1/deployments/olmo-3.json").unlink()
    code, out, _ = cli(capsys, "status", *args, "--json")
    assert {"model": "olmo-3", "site": "aws-us-east-1"} in json.loads(out)["missing"]
    code, out, _ = cli(capsys, "plan", *args, "--json")
    (change,) = json.loads(out)["changes"]
    assert (change["op"], change["address"], change["cause"]) == (
        "create",
        "deployment.aws-us-east-1.olmo-3",
        "drift",
    )


def test_apply_without_terminal_needs_yes(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "apply", *fleet_args(ws))
    assert code == 1 and "--yes" in err and "Traceback" not in err
    assert not (ws.fleet_dir / ".sovereign" / "sites").exists()


def test_interlock_refusal_and_audited_override(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    us = ws.fleet_dir / "us.yaml"
    us.write_text(us.read_text().replace("min_sites_per_model: 1", "min_sites_per_model: 3"))
    # A first rollout takes nothing away: the US shortfall is a warning, not a refusal.
    code, out, err = cli(capsys, "plan", *fleet_args(ws))
    err = out + err  # the plan (and its warnings) on stdout, diagnostics on stderr
    assert code == 0, err
    assert "warning:" in err and "fewer than min_sites_per_model 3" in err
    code, _, err = cli(capsys, "apply", *fleet_args(ws), "--yes")
    assert code == 0, err
    # The US stops exporting restricted models to the EU: the plan deletes them there.
    us.write_text(us.read_text().replace("restricted: [EU, UK, JP]", "restricted: [UK, JP]"))
    code, out, err = cli(capsys, "plan", *fleet_args(ws))
    err = out + err  # the plan on stdout, the refusal on stderr
    assert code == 1
    assert "for EU" in err and "deployment.aws-eu-central-1.fable-5" in err
    assert '--allow-outage "REASON"' in err
    code, _, _ = cli(capsys, "apply", *fleet_args(ws), "--yes")
    kept = ws.fleet_dir / ".sovereign" / "sites" / "aws-eu-central-1" / "deployments"
    assert code == 1 and (kept / "fable-5.json").exists()
    reason = "EU loses fable-5 until the export licence is renewed (CHG-42)"
    code, _, err = cli(capsys, "apply", *fleet_args(ws), "--yes", "--allow-outage", reason)
    assert code == 0, err
    code, out, _ = cli(
        capsys,
        "audit",
        "log",
        "--fleet",
        str(ws.fleet_dir),
        "--kind",
        "interlock.overridden",
        "--json",
        "--limit",
        "0",
    )
    assert code == 0 and reason in out and "fable-5" in out


def test_bad_options_are_usage_errors(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(
        capsys, "plan", "--fleet", str(ws.fleet_dir), "--sites", "local", "--at", "tomorrow"
    )
    assert code == 1 and "ISO 8601" in err and "Traceback" not in err
    code, _, err = cli(capsys, "plan", "--fleet", str(ws.fleet_dir), "--sites", "aws")
    assert code == 1 and "--sites local" in err
    bad = ws.root / "bad.json"
    bad.write_text("{}")
    code, _, err = cli(capsys, "apply", str(bad), "--fleet", str(ws.fleet_dir))
    assert code == 1 and "plan format" in err


def test_jurisdiction_scope_keeps_one_refusal_from_holding_back_another(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    args = fleet_args(ws)
    code, _, err = cli(capsys, "apply", *args, "--yes")
    assert code == 0, err
    sites = ws.fleet_dir / ".sovereign" / "sites"
    # EU loses fable-5 (the US stops exporting to it: refused), UK drops olmo-3 (no guarantee).
    us, uk = ws.fleet_dir / "us.yaml", ws.fleet_dir / "uk.yaml"
    us.write_text(us.read_text().replace("restricted: [EU, UK, JP]", "restricted: [UK, JP]"))
    uk.write_text(uk.read_text().replace("mistral-large-3, olmo-3]", "mistral-large-3]"))
    code, _, err = cli(capsys, "plan", *args)
    assert code == 1 and "for EU" in err and "--jurisdiction UK" in err
    code, _, err = cli(capsys, "plan", *args, "--jurisdiction", "XX")
    assert code == 1 and "XX" in err and "EU, IN, JP, UK, US" in err
    planfile = ws.root / "uk.json"
    code, out, err = cli(
        capsys, "plan", *args, "--jurisdiction", "UK", "--json", "--out", str(planfile)
    )
    assert code == 0, err
    plan = json.loads(out)
    assert plan["scope"] == ["UK"]
    assert {c["jurisdiction"] for c in plan["changes"]} == {"UK", ""}  # "" = the routing table
    assert {c["address"] for c in plan["changes"] if c["op"] == "delete"} == {
        f"{kind}.{site}.olmo-3"
        for kind in ("artifact", "deployment")
        for site in ("aws-eu-west-2", "gcp-europe-west2")
    }
    assert "route.table.*" in {c["address"] for c in plan["changes"]}
    base = ["--fleet", str(ws.fleet_dir), "--sites", "local"]
    code, _, err = cli(capsys, "apply", str(planfile), *base, "--jurisdiction", "EU")
    assert code == 1 and "--jurisdiction UK" in err and "--jurisdiction EU" in err
    code, _, err = cli(capsys, "apply", str(planfile), *base)
    assert code == 0, err
    assert not (sites / "aws-eu-west-2" / "deployments" / "olmo-3.json").exists()
    assert (sites / "aws-eu-central-1" / "deployments" / "fable-5.json").exists()
    # UK is done; EU's refusal is still there, and only EU's.
    code, out, _ = cli(capsys, "plan", *args, "--json")
    assert code == 1
    assert {c["jurisdiction"] for c in json.loads(out)["changes"]} == {"EU"}


def _without_gcp_europe_west4(text: str) -> str:
    head, _, rest = text.partition("  - id: gcp-europe-west4\n")
    _, _, tail = rest.partition("failover:")
    return head + "failover:" + tail.replace(", gcp-europe-west4", "")


def test_a_removed_site_is_torn_down_exactly(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    args = fleet_args(ws)
    code, _, err = cli(capsys, "apply", *args, "--yes")
    assert code == 0, err
    site = ws.fleet_dir / ".sovereign" / "sites" / "gcp-europe-west4"
    held = {p.name for p in (site / "artifacts").iterdir()}
    assert held == {"fable-5", "mythos-5", "mistral-large-3", "olmo-3"}
    eu = ws.fleet_dir / "eu.yaml"
    eu.write_text(_without_gcp_europe_west4(eu.read_text()))
    code, out, err = cli(capsys, "plan", *args, "--json")
    assert code == 0, err
    changes = json.loads(out)["changes"]
    deletes = {c["address"] for c in changes if c["op"] == "delete"}
    assert deletes == {
        f"{kind}.gcp-europe-west4.{m}" for kind in ("artifact", "deployment") for m in held
    }
    assert {
        (c["cause"], c["reason"], c["jurisdiction"]) for c in changes if c["op"] == "delete"
    } == {("config", "site gcp-europe-west4 left the fleet", "EU")}
    assert {c["op"] for c in changes} == {"delete", "update"}  # and the routing table
    code, out, _ = cli(capsys, "status", *args, "--json")
    (leaving,) = json.loads(out)["departed"]
    assert leaving["site"] == "gcp-europe-west4" and len(leaving["resources"]) == 8
    planfile = ws.root / "teardown.json"
    code, out, _ = cli(capsys, "plan", *args, "--out", str(planfile))
    assert "(config: site gcp-europe-west4 left the fleet)" in " ".join(out.split())
    base = ["--fleet", str(ws.fleet_dir), "--sites", "local"]
    code, _, err = cli(capsys, "apply", str(planfile), *base)  # verified, then carried out
    assert code == 0, err
    assert list((site / "artifacts").iterdir()) == []
    assert list((site / "deployments").iterdir()) == []
    code, _, _ = cli(capsys, "plan", *args, "--detailed-exitcode")
    assert code == 0  # nothing left to do
    code, out, _ = cli(capsys, "status", *args, "--json")
    assert json.loads(out)["departed"] == []


def test_a_removed_jurisdiction_and_model_are_torn_down(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    args = fleet_args(ws)
    code, _, err = cli(capsys, "apply", *args, "--yes")
    assert code == 0, err
    sites = ws.fleet_dir / ".sovereign" / "sites"
    before = {p.relative_to(sites).as_posix() for p in sites.glob("*/*/*")}
    (ws.fleet_dir / "in.yaml").unlink()
    models = ws.fleet_dir / "models.yaml"
    text = models.read_text()
    models.write_text(text[: text.index("  - id: sarvam-2")])
    code, out, err = cli(capsys, "plan", *args, "--json")
    assert code == 0, err
    deletes = {
        (c["address"], c["reason"]) for c in json.loads(out)["changes"] if c["op"] == "delete"
    }
    indian = {p for p in before if p.startswith(("aws-ap-south-1/", "gcp-asia-south1/"))}
    assert {a for a, _ in deletes} == {
        f"{'artifact' if kind == 'artifacts' else 'deployment'}.{site}.{name.removesuffix('.json')}"
        for site, kind, name in (p.split("/") for p in indian)
    }
    assert {r for _, r in deletes} == {"jurisdiction IN left the fleet"}
    # Only IN's sites held sarvam-2; its weights go with them.
    assert any("sarvam-2" in a for a, _ in deletes)
    # --jurisdiction names a jurisdiction that left, to tear it down on its own.
    code, out, err = cli(capsys, "plan", *args, "--jurisdiction", "IN", "--json")
    assert code == 0, err
    assert {c["jurisdiction"] for c in json.loads(out)["changes"]} == {"IN", ""}
    assert json.loads(out)["decommission"] == ["IN"]
    # A jurisdiction leaving is decommissioned only by name, with a reason (audited).
    code, _, err = cli(capsys, "apply", *args, "--yes")
    assert code == 1 and "decommissions IN" in err
    assert {p.relative_to(sites).as_posix() for p in sites.glob("*/*/*")} == before
    code, _, err = cli(
        capsys, "apply", *args, "--yes", "--decommission", "IN", "--reason", "CHG-1: IN exits"
    )
    assert code == 0, err
    after = {p.relative_to(sites).as_posix() for p in sites.glob("*/*/*")}
    assert after == before - indian
    code, _, _ = cli(capsys, "plan", *args, "--detailed-exitcode")
    assert code == 0  # nothing left to do
