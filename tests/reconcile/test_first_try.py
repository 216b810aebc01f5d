"""What a newcomer meets on the first try, in process: the `--sites` override recorded by an
apply and reused by later commands (saying so), a plan that records nothing as applied, and the
one confirmation rule of the commands that change something."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.demo.workspace import Workspace
from orchestrator.state import open_store
from tests.cli.support import run_cli as cli

REPO = Path(__file__).resolve().parents[2]
AT = "2026-06-13T00:00:00Z"
REUSED = "Using --sites local"


def kinds(w: Workspace) -> list[str]:
    store = open_store(None, w.fleet_dir, create=False)
    try:
        return [e.kind for e in store.audit.entries()]
    finally:
        store.close()


def test_an_apply_records_sites_local_and_later_commands_reuse_it_and_say_so(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = ["--fleet", str(ws.fleet_dir)]
    code, out, err = cli(capsys, "apply", *fleet, "--sites", "local", "--yes")
    assert code == 0, out + err
    assert REUSED not in err  # given, not reused
    code, out, err = cli(capsys, "status", *fleet)
    assert code == 0, out + err
    assert err.count(REUSED) == 1 and "recorded by the state's last apply" in err
    code, out, err = cli(capsys, "plan", *fleet, "--detailed-exitcode")
    assert code == 0, out + err
    assert "No changes" in out and REUSED in err
    # --json: the stderr line stays quiet, stdout is the document alone.
    code, out, err = cli(capsys, "status", *fleet, "--json")
    assert code == 0 and REUSED not in err and json.loads(out)["unobservable"] == []
    # Given another, the other is used (and not said to be reused).
    code, out, err = cli(capsys, "plan", *fleet, "--sites", "nowhere")
    assert code == 1 and "--sites own" in err


def test_a_plan_made_with_sites_local_is_applied_with_its_own_record(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = ["--fleet", str(ws.fleet_dir)]
    planfile = ws.root / "plan.json"
    code, out, err = cli(capsys, "plan", *fleet, "--sites", "local", "--out", str(planfile))
    assert code == 0, out + err
    code, out, err = cli(capsys, "apply", str(planfile), *fleet)
    assert code == 0, out + err
    assert f"Using --sites local, as the plan {planfile} records" in err
    # The apply recorded it: the controller's pass uses it too, and converges.
    code, out, err = cli(capsys, "controller", "--once", *fleet)
    assert code == 0, out + err
    assert "controller.sites" in err
    # Asked for the other, the saved plan is refused by name, never half-applied.
    code, out, err = cli(capsys, "plan", *fleet, "--out", str(planfile))
    assert code == 0, out + err
    code, out, err = cli(capsys, "apply", str(planfile), *fleet, "--sites", "own")
    assert code == 1 and "--sites local" in err and "--sites own" in err


def test_plan_records_nothing_that_reads_as_applied(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = ["--fleet", str(ws.fleet_dir), "--sites", "local", "--at", AT]
    code, out, err = cli(capsys, "plan", *fleet)
    assert code == 0, out + err
    logged = kinds(ws)
    assert "plan.created" in logged
    assert [k for k in logged if k.startswith("directive.")] == []
    store = open_store(None, ws.fleet_dir, create=False)
    try:
        [created] = [e for e in store.audit.entries() if e.kind == "plan.created"]
    finally:
        store.close()
    proposed = {(d["kind"], d["id"]) for d in created.payload["directives"]}
    assert ("directive.added", "us-doc-2026-06-12") in proposed
    code, out, err = cli(capsys, "apply", *fleet, "--yes")
    assert code == 0, out + err
    logged = kinds(ws)
    assert logged.count("directive.added") >= 1
    assert logged.index("apply.started") < logged.index("directive.added")


@pytest.mark.parametrize(
    "command",
    [
        ["apply"],
        ["drain", "--site", "aws-eu-central-1", "--reason", "INC-1"],
        ["evacuate", "--jurisdiction", "UK", "--reason", "INC-1", "--allow-outage", "INC-1"],
    ],
    ids=lambda c: c[0],
)
def test_without_a_terminal_and_without_yes_a_change_is_refused_naming_yes(
    ws: Workspace, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    fleet = ["--fleet", str(ws.fleet_dir)]
    code, out, err = cli(capsys, "apply", *fleet, "--sites", "local", "--yes")
    assert code == 0, out + err
    if command == ["apply"]:
        ws.add_directive("us-doc-2026-06-26.yaml")  # something to apply
    code, out, err = cli(capsys, *command, *fleet)
    assert code == 1, out + err
    assert "refusing to" in err and "no terminal" in err and "--yes" in err
    code, out, err = cli(capsys, *command, *fleet, "--json")
    assert code == 1
    assert "--yes" in json.loads(out)["error"]["hint"]


def test_a_refused_evacuate_answers_with_the_effect_beside_the_error(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = ["--fleet", str(ws.fleet_dir)]
    code, out, err = cli(capsys, "apply", *fleet, "--sites", "local", "--yes")
    assert code == 0, out + err
    code, out, err = cli(
        capsys, "evacuate", "--jurisdiction", "EU", "--reason", "INC-1", "--yes", "--json", *fleet
    )
    assert code == 1
    doc = json.loads(out)
    assert "interlock" in doc["error"]["message"]
    assert doc["change"]["sites"] and "drains" in doc
