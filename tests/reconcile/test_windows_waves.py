"""Change windows and rollout waves on the example fleet (every site local, the clock injected
with --at, no sleeps): what waits, what never does, and who carries the waiting out
(docs/gitops.md, "Change windows and rollout waves")."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from orchestrator.demo.workspace import Workspace, prepare_workspace
from orchestrator.fleet.signing import generate_key, sign_file_bytes, write_signature
from orchestrator.planning.plan import Plan
from orchestrator.reconcile.controller import (
    Controller,
    ControllerMetrics,
    ControllerSettings,
    Outcome,
    PassResult,
)
from orchestrator.state import open_store
from tests.cli.support import run_cli

REPO = Path(__file__).resolve().parents[2]
BASE = "2026-06-11T10:00:00Z"  # a Thursday: the first apply, before the new model
FRIDAY_NIGHT = "2026-06-12T20:00:00Z"  # 22:00 in Berlin: EU's freeze is on
SATURDAY = "2026-06-13T12:00:00Z"
MONDAY_0800_BERLIN = "2026-06-15T06:00:00Z"  # the freeze ends (CEST, UTC+2)

FREEZE = """\
changes:
  timezone: Europe/Berlin
  windows:
    - deny: "0 18 * * 5"         # Friday 18:00 ...
      duration: 62h              # ... to Monday 08:00
"""
WAVES = """\
rollout:
  waves: [[JP], [UK, IN], [EU, US]]
  healthy_for: 10m
"""
WITHDRAW = """\
id: us-withdraw-gemma
jurisdiction: US
issuer: us-commerce
reference: "test: withdraw gemma-4"
action: withdraw
models: [gemma-4]
effective: 2026-06-13T00:00:00Z
expires: null
supersedes: null
"""


@pytest.fixture
def ws(tmp_path: Path) -> tuple[Workspace, bytes]:
    """The example fleet, localised, with the US authority's key replaced by one this test
    holds (so it can sign a withdraw); returns the workspace and that private key."""
    w = prepare_workspace(REPO / "regions", tmp_path / "ws")
    private, public = generate_key()
    us = w.fleet_dir / "us.yaml"
    text = us.read_text()
    us.write_text(re.sub(r'public_key: "[^"]+"', f'public_key: "{public}"', text, count=1))
    uk = w.fleet_dir / "uk.yaml"  # room for one more model at the UK sites
    uk.write_text(uk.read_text().replace("capacity: 4", "capacity: 6"))
    return w, private


def sovereign(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code, out, err = run_cli(capsys, *args, "--json")
    try:
        return code, json.loads(out)
    except ValueError:
        raise AssertionError(f"exit {code}; stdout {out!r}; stderr {err!r}") from None


def local(w: Workspace, at: str) -> tuple[str, ...]:
    return ("--fleet", str(w.fleet_dir), "--sites", "local", "--at", at)


def add_new_model(
    w: Workspace, model: str = "gemma-4", profiles: tuple[str, ...] = ("eu", "jp", "uk", "us", "in")
) -> None:
    """An open model, listed by ``profiles`` (every jurisdiction by default)."""
    catalog = w.fleet_dir / "models.yaml"
    catalog.write_text(
        catalog.read_text()
        + f"  - id: {model}\n    origin: US\n    export_control: open\n"
        + f"    artifact: s3://acme-models/{model}/\n"
    )
    for profile in profiles:
        path = w.fleet_dir / f"{profile}.yaml"
        path.write_text(re.sub(r"^models: \[", f"models: [{model}, ", path.read_text(), flags=re.M))


def append(w: Workspace, rel: str, text: str) -> None:
    path = w.fleet_dir / rel
    path.write_text(path.read_text() + text)


def addresses(changes: list[dict[str, Any]]) -> set[str]:
    return {c["address"] for c in changes}


def deferred(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["change"]["address"]: d for d in plan["deferred"]}


def model_sites(plan_changes: list[dict[str, Any]], model: str) -> set[str]:
    return {c["jurisdiction"] for c in plan_changes if c["model"] == model}


def test_a_freeze_defers_eus_share_the_law_does_not_wait_and_the_window_end_carries_it_out(
    ws: tuple[Workspace, bytes], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    w, us_key = ws
    code, _ = sovereign(capsys, "apply", *local(w, BASE), "--yes")
    assert code == 0
    add_new_model(w)
    append(w, "eu.yaml", FREEZE)

    # Inside EU's freeze: JP, UK, IN and US get the new model; EU's share is deferred.
    md = tmp_path / "plan.md"
    code, plan = sovereign(
        capsys, "plan", *local(w, FRIDAY_NIGHT), "--detailed-exitcode", "--markdown", str(md)
    )
    assert code == 2
    assert model_sites(plan["changes"], "gemma-4") == {"JP", "UK", "IN", "US"}
    waiting = deferred(plan)
    assert set(waiting) == {
        f"{kind}.{site}.gemma-4"
        for kind in ("artifact", "deployment")
        for site in ("aws-eu-central-1", "gcp-europe-west4")
    }
    for d in waiting.values():
        assert d["why"] == "window" and d["not_before"] == "2026-06-15T06:00:00+00:00"
        assert "deny '0 18 * * 5' for 62h" in d["message"]
    assert plan["summary"]["deferred"] == 4
    assert "### Deferred" in md.read_text() and "2026-06-15T06:00:00Z" in md.read_text()

    code, done = sovereign(capsys, "apply", *local(w, FRIDAY_NIGHT), "--yes")
    assert code == 0 and len(done["plan"]["deferred"]) == 4
    # Only deferred changes are left: they do not count for --detailed-exitcode.
    code, plan = sovereign(capsys, "plan", *local(w, SATURDAY), "--detailed-exitcode")
    assert code == 0 and plan["changes"] == [] and len(plan["deferred"]) == 4

    # A US withdraw inside the window deletes at once (the law never waits).
    directive = w.fleet_dir / "directives" / "us-withdraw-gemma.yaml"
    directive.parent.mkdir(exist_ok=True)
    directive.write_text(WITHDRAW)
    write_signature(directive, "us-commerce", sign_file_bytes(us_key, directive.read_bytes()))
    code, done = sovereign(capsys, "apply", *local(w, SATURDAY), "--yes")
    assert code == 0, done
    deletes = [c for c in done["plan"]["changes"] if c["op"] == "delete"]
    assert addresses(deletes) == {  # the US sites, and the JP site governed_by US
        f"{kind}.{site}.gemma-4"
        for kind in ("artifact", "deployment")
        for site in ("aws-us-east-1", "gcp-us-central1", "aws-ap-northeast-1")
    }
    assert {c["cause"] for c in deletes} == {"directive:us-withdraw-gemma"}
    assert len(done["plan"]["deferred"]) == 4  # EU still waits for its window

    # The status shows the window closed and when it opens.
    code, status = sovereign(capsys, "status", *local(w, SATURDAY))
    assert code == 0
    (eu,) = status["windows"]
    assert (eu["jurisdiction"], eu["open"], eu["next_opening"]) == (
        "EU",
        False,
        "2026-06-15T06:00:00Z",
    )

    # The window ends: one controller pass carries the deferred changes out, no new commit.
    code, result = sovereign(capsys, "controller", "--once", *local(w, MONDAY_0800_BERLIN))
    assert code == 0, result
    assert (result["outcome"], result["changes"], result["deferred"]) == ("applied", 4, {})
    assert result["windows_open"] == {"EU": True}
    code, plan = sovereign(capsys, "plan", *local(w, MONDAY_0800_BERLIN), "--detailed-exitcode")
    assert code == 0 and plan["changes"] == [] and plan["deferred"] == []


def test_drift_repair_and_export_removals_never_wait_and_override_is_audited(
    ws: tuple[Workspace, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    w, _ = ws
    assert sovereign(capsys, "apply", *local(w, BASE), "--yes")[0] == 0
    always = FREEZE.replace('"0 18 * * 5"', '"0 0 * * *"').replace("62h", "24h")
    append(w, "eu.yaml", always)
    append(w, "uk.yaml", always.replace("Europe/Berlin", "Europe/London"))
    # drift: a deployment removed by hand at an EU site
    sites = w.fleet_dir / ".sovereign" / "sites"
    (sites / "aws-eu-central-1" / "deployments" / "olmo-3.json").unlink()
    # R2: EU's restricted models may no longer be placed at UK sites
    # (UK's guarantee relaxed, so that the interlock does not refuse the removal)
    eu = w.fleet_dir / "eu.yaml"
    eu.write_text(eu.read_text().replace("restricted: [UK]", "restricted: []"))
    uk = w.fleet_dir / "uk.yaml"
    uk.write_text(uk.read_text().replace("min_sites_per_model: 1", "min_sites_per_model: 0"))
    # config that waits: a new model
    add_new_model(w)

    code, plan = sovereign(capsys, "plan", *local(w, SATURDAY))
    assert code == 0
    by_address = {c["address"]: c for c in plan["changes"]}
    assert by_address["deployment.aws-eu-central-1.olmo-3"]["cause"] == "drift"
    removed = {a for a, c in by_address.items() if c["op"] == "delete"}
    assert "deployment.aws-eu-west-2.mistral-large-3" in removed
    assert "artifact.gcp-europe-west2.mistral-large-3" in removed
    assert {c["cause"] for c in plan["changes"] if c["op"] == "delete"} == {"config"}
    assert {d["change"]["jurisdiction"] for d in plan["deferred"]} == {"EU", "UK"}
    assert {d["change"]["model"] for d in plan["deferred"]} == {"gemma-4"}

    # Break-glass: --override-window carries the deferred changes out, audited with its reason.
    code, done = sovereign(
        capsys, "apply", *local(w, SATURDAY), "--yes", "--override-window", "INC-1: hotfix"
    )
    assert code == 0, done
    assert done["window_override"] == "INC-1: hotfix"
    assert done["plan"]["deferred"] == []
    assert "deployment.aws-eu-central-1.gemma-4" in addresses(done["plan"]["changes"])
    store = open_store(None, w.fleet_dir, create=False)
    try:
        (entry,) = [e for e in store.audit.entries() if e.kind == "window.overridden"]
    finally:
        store.close()
    assert entry.payload["reason"] == "INC-1: hotfix"
    assert "deployment.gcp-europe-west2.gemma-4" in entry.payload["changes"]


def test_a_drain_inside_a_deny_window_goes_at_once(
    ws: tuple[Workspace, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    w, _ = ws
    assert sovereign(capsys, "apply", *local(w, BASE), "--yes")[0] == 0
    append(w, "eu.yaml", FREEZE.replace('"0 18 * * 5"', '"0 0 * * *"').replace("62h", "24h"))
    code, out = sovereign(
        capsys,
        "drain",
        "--fleet",
        str(w.fleet_dir),
        "--site",
        "aws-eu-central-1",
        "--reason",
        "maintenance",
        "--yes",
    )
    assert code == 0, out
    store = open_store(None, w.fleet_dir, create=False)
    try:
        assert "aws-eu-central-1" in {d.site for d in store.drains().entries}
    finally:
        store.close()


def test_a_new_model_goes_wave_by_wave_and_a_failed_wave_stops_the_rollout(
    ws: tuple[Workspace, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    w, _ = ws
    assert sovereign(capsys, "apply", *local(w, BASE), "--yes")[0] == 0
    append(w, "fleet.yaml", WAVES)
    add_new_model(w)

    t0 = "2026-06-16T10:00:00Z"
    code, done = sovereign(capsys, "apply", *local(w, t0), "--yes")
    assert code == 0
    assert model_sites(done["plan"]["changes"], "gemma-4") == {"JP"}
    waiting = deferred(done["plan"])
    assert {d["change"]["jurisdiction"] for d in waiting.values()} == {"UK", "IN", "EU", "US"}
    assert {d["why"] for d in waiting.values()} == {"wave"}

    # One minute later a pass observes JP healthy (first observed healthy: recorded in the
    # state); the next waves may go ten minutes after that.
    code, result = sovereign(capsys, "controller", "--once", *local(w, "2026-06-16T10:01:00Z"))
    assert code == 0 and result["changes"] == 0
    assert result["deferred"] == {"wave": 16}
    assert result["next_deferred"] == "2026-06-16T10:11:00Z"
    code, status = sovereign(capsys, "status", *local(w, "2026-06-16T10:05:00Z"))
    (rollout,) = status["rollouts"]
    assert (rollout["model"], rollout["wave"], rollout["state"]) == (
        "gemma-4",
        "wave 2 (UK, IN)",
        "waiting",
    )
    code, result = sovereign(capsys, "controller", "--once", *local(w, "2026-06-16T10:10:59Z"))
    assert result["changes"] == 0

    code, result = sovereign(capsys, "controller", "--once", *local(w, "2026-06-16T10:11:00Z"))
    assert code == 0 and result["changes"] == 8  # UK and IN, two sites each
    assert result["deferred"] == {"wave": 8}  # EU and US wait for wave 2

    # A JP deployment fails: the rollout stops before the later waves, and says so.
    manifest = w.fleet_dir / ".sovereign" / "sites" / "aws-ap-northeast-1" / "deployments"
    path = manifest / "gemma-4.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "status": "failed"}))
    late = "2026-06-16T11:00:00Z"  # long after every healthy_for
    code, plan = sovereign(capsys, "plan", *local(w, late))
    stopped = deferred(plan)
    assert {d["why"] for d in stopped.values()} == {"wave_failed"}
    assert {d["change"]["jurisdiction"] for d in stopped.values()} == {"EU", "US"}
    assert (
        "wave 1 (JP) failed: gemma-4 at aws-ap-northeast-1 is unhealthy"
        in next(iter(stopped.values()))["message"]
    )
    code, status = sovereign(capsys, "status", *local(w, late))
    (rollout,) = status["rollouts"]
    assert (rollout["wave"], rollout["state"]) == ("wave 3 (EU, US)", "stopped")
    # The controller repairs the drift at once (it never waits) and keeps the rollout stopped.
    code, result = sovereign(capsys, "controller", "--once", *local(w, late))
    assert result["rollouts_stopped"].keys() == {"gemma-4"}
    assert result["deferred"] == {"wave_failed": 8}
    assert result["changes"] >= 1  # the repair of JP's deployment


def test_a_pass_that_starts_inside_an_allow_window_finishes_past_its_end(
    ws: tuple[Workspace, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """The edge rule (docs/gitops.md): windows are judged once, when a pass starts; a pass that
    starts inside an allow window carries out everything it planned even though the clock
    passes the window's end meanwhile; the next pass defers again."""
    w, _ = ws
    assert sovereign(capsys, "apply", *local(w, BASE), "--yes")[0] == 0
    # EU may be changed on Tuesdays 09:00-10:00 Berlin time (07:00-08:00 UTC) only
    append(
        w,
        "eu.yaml",
        "changes:\n  timezone: Europe/Berlin\n  windows:\n"
        '    - allow: "0 9 * * 2"\n      duration: 1h\n',
    )
    add_new_model(w)
    inside, after = (
        datetime(2026, 6, 16, 7, 59, 59, tzinfo=UTC),
        datetime(2026, 6, 16, 8, 0, 1, tzinfo=UTC),
    )
    readings = iter([inside])

    def clock() -> datetime:  # the first reading starts the pass; every later one is past
        return next(readings, after)

    settings = ControllerSettings(fleet_dir=w.fleet_dir, sites_local=True)
    result = Controller(settings, log=lambda *a, **k: None, clock=clock).reconcile_once()
    assert result.outcome is Outcome.APPLIED
    assert result.deferred == {}  # everything planned inside the window, EU's share included
    sites = w.fleet_dir / ".sovereign" / "sites"
    assert (sites / "aws-eu-central-1" / "deployments" / "gemma-4.json").is_file()
    assert result.windows == {"EU": True}

    # The next pass starts after the window: a new EU change waits for next Tuesday.
    add_new_model(w, "gemma-4-mini", ("eu",))
    late = Controller(settings, log=lambda *a, **k: None, clock=lambda: after).reconcile_once()
    assert late.deferred == {"window": 4}
    assert late.next_deferred == datetime(2026, 6, 23, 7, 0, tzinfo=UTC)
    assert late.windows == {"EU": False}
    assert Controller(settings).wait_after(late) <= settings.interval


def test_a_saved_plan_carries_its_deferred_changes_and_is_verified_with_them(
    ws: tuple[Workspace, bytes], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    w, _ = ws
    assert sovereign(capsys, "apply", *local(w, BASE), "--yes")[0] == 0
    add_new_model(w)
    append(w, "eu.yaml", FREEZE)
    saved = tmp_path / "plan.json"
    code, plan = sovereign(capsys, "plan", *local(w, FRIDAY_NIGHT), "--out", str(saved))
    assert code == 0 and len(plan["deferred"]) == 4

    # An edited file that drops a deferred change is not the plan the fleet gives: refused.
    edited = tmp_path / "edited.json"
    data = json.loads(saved.read_text())
    # (its sha256 made to match, as someone who edits a plan file would)
    edited.write_text(Plan.from_json({**data, "deferred": data["deferred"][1:]}).dumps())
    code, refused = sovereign(
        capsys, "apply", str(edited), "--fleet", str(w.fleet_dir), "--sites", "local"
    )
    assert code == 1 and "not deferred when saved" in refused["error"]["message"]

    # The reviewed file, with the break-glass: its deferred changes are carried out too.
    code, done = sovereign(
        capsys,
        "apply",
        str(saved),
        "--fleet",
        str(w.fleet_dir),
        "--sites",
        "local",
        "--override-window",
        "CHG-7: reviewed exception",
    )
    assert code == 0, done
    assert done["window_override"] == "CHG-7: reviewed exception"
    assert model_sites(done["plan"]["changes"], "gemma-4") == {"JP", "UK", "IN", "US", "EU"}


def test_metrics_expose_deferred_changes_open_windows_and_stopped_rollouts() -> None:
    metrics = ControllerMetrics()
    at = datetime(2026, 6, 13, tzinfo=UTC)
    metrics.record(
        PassResult(
            Outcome.APPLIED,
            at,
            changes=3,
            deferred={"window": 4, "wave_failed": 2},
            next_deferred=datetime(2026, 6, 15, 6, tzinfo=UTC),
            stopped={"gemma-4": "wave 1 (JP) failed"},
            windows={"EU": False, "JP": True},
        )
    )
    text = generate_latest(metrics.registry).decode()
    assert 'sovereign_controller_deferred_changes{why="window"} 4.0' in text
    assert 'sovereign_controller_deferred_changes{why="wave"} 0.0' in text
    assert 'sovereign_controller_deferred_changes{why="wave_failed"} 2.0' in text
    assert 'sovereign_controller_window_open{jurisdiction="EU"} 0.0' in text
    assert 'sovereign_controller_window_open{jurisdiction="JP"} 1.0' in text
    assert 'sovereign_controller_rollout_stopped{model="gemma-4"} 1.0' in text
    assert "sovereign_controller_next_deferred_timestamp_seconds 1.7815032e+09" in text
    # the rollout is no longer stopped: the label goes away
    metrics.record(PassResult(Outcome.IN_SYNC, at))
    assert "rollout_stopped{" not in generate_latest(metrics.registry).decode()


def test_the_plan_says_when_a_freeze_across_a_dst_change_ends_in_utc(
    ws: tuple[Workspace, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """Friday 18:00 to Monday 08:00 Berlin time: 06:00 UTC after the spring change (CEST),
    07:00 UTC after the autumn one (CET)."""
    w, _ = ws
    assert sovereign(capsys, "apply", *local(w, BASE), "--yes")[0] == 0
    add_new_model(w)
    append(w, "eu.yaml", FREEZE)
    for saturday, opens in (
        ("2026-03-28T12:00:00Z", "2026-03-30T06:00:00+00:00"),
        ("2026-10-24T12:00:00Z", "2026-10-26T07:00:00+00:00"),
    ):
        code, plan = sovereign(capsys, "plan", *local(w, saturday))
        assert code == 0
        assert {d["not_before"] for d in plan["deferred"]} == {opens}
        code, status = sovereign(capsys, "status", *local(w, saturday))
        assert status["windows"][0]["next_opening"] == opens.replace("+00:00", "Z")


def test_the_controller_wakes_when_the_first_deferred_change_may_go(tmp_path: Path) -> None:
    now = datetime(2026, 6, 15, 5, 59, 30, tzinfo=UTC)
    settings = ControllerSettings(fleet_dir=tmp_path, interval=60.0)
    controller = Controller(settings, log=lambda *a, **k: None, clock=lambda: now)
    soon = PassResult(Outcome.IN_SYNC, now, next_deferred=datetime(2026, 6, 15, 6, tzinfo=UTC))
    assert controller.wait_after(soon) == pytest.approx(30.05)
    later = PassResult(Outcome.IN_SYNC, now, next_deferred=datetime(2026, 6, 16, tzinfo=UTC))
    assert controller.wait_after(later) == 60.0


def test_a_blank_override_reason_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, answer = sovereign(capsys, "apply", "--yes", "--override-window", " ")
    assert code == 1
    assert "--override-window needs a reason" in answer["error"]["message"]
