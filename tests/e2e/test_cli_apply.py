"""End to end: real ``sovereign`` processes against a localised copy of the example fleet."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.demo.workspace import Workspace, prepare_workspace
from tests.processes import spawn

REPO = Path(__file__).resolve().parents[2]
AT = "2026-06-13T00:00:00Z"

pytestmark = pytest.mark.slow


def env(**extra: str) -> dict[str, str]:
    base = dict(os.environ)
    base["PYTHONPATH"] = str(REPO)
    base.pop("SOVEREIGN_DEBUG", None)
    base.update(extra)
    return base


def sovereign(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=env(**extra),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def start_slow_apply(w: Workspace, step_delay: float, concurrency: int) -> subprocess.Popen[str]:
    """``sovereign apply --yes`` in a real process, waiting ``step_delay`` s before each change
    (tests/e2e/slow_apply.py runs the same sequence with that parameter)."""
    return spawn(
        [
            sys.executable,
            "-m",
            "tests.e2e.slow_apply",
            str(w.fleet_dir),
            AT,
            str(step_delay),
            str(concurrency),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = prepare_workspace(REPO / "regions", tmp_path / "ws")
    w.add_directive("us-doc-2026-06-12.yaml")
    return w


def fleet_args(w: Workspace) -> list[str]:
    return ["--fleet", str(w.fleet_dir), "--sites", "local", "--at", AT]


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def deployments(w: Workspace) -> int:
    return len(list((w.fleet_dir / ".sovereign" / "sites").glob("*/deployments/*.json")))


def test_plan_apply_then_plan_is_clean(ws: Workspace) -> None:
    assert sovereign("plan", *fleet_args(ws), "--detailed-exitcode").returncode == 2
    applied = sovereign("apply", *fleet_args(ws), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete" in applied.stdout and deployments(ws) == 32
    clean = sovereign("plan", *fleet_args(ws), "--detailed-exitcode")
    assert clean.returncode == 0, clean.stderr


def test_sigkill_mid_apply_then_rerun_converges(ws: Workspace) -> None:
    proc = start_slow_apply(ws, step_delay=0.05, concurrency=2)
    try:
        wait_for(lambda: deployments(ws) >= 3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert 3 <= deployments(ws) < 32  # really killed mid-apply
    rerun = sovereign("apply", *fleet_args(ws), "--yes")
    assert rerun.returncode == 0, rerun.stderr
    assert deployments(ws) == 32
    assert sovereign("plan", *fleet_args(ws), "--detailed-exitcode").returncode == 0
    verify = sovereign("audit", "verify", "--fleet", str(ws.fleet_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_concurrent_apply_exits_4_naming_the_holder(ws: Workspace) -> None:
    first = start_slow_apply(ws, step_delay=0.1, concurrency=1)
    try:
        wait_for(lambda: deployments(ws) >= 1)
        second = sovereign("apply", *fleet_args(ws), "--yes")
        assert second.returncode == 4, second.stderr
        assert f"pid {first.pid}" in second.stderr and "apply" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    rerun = sovereign("apply", *fleet_args(ws), "--yes")
    assert rerun.returncode == 0, rerun.stderr


def test_failed_site_exits_3_and_rerun_converges(ws: Workspace) -> None:
    blocker = ws.fleet_dir / ".sovereign" / "sites" / "gcp-us-central1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # every write at this site fails, transiently
    fast = {"SOVEREIGN_RETRY_MAX_ATTEMPTS": "2", "SOVEREIGN_RETRY_BASE_DELAY": "0"}
    r = sovereign("apply", *fleet_args(ws), "--yes", "--json", **fast)
    assert r.returncode == 3, r.stderr
    result = json.loads(r.stdout)["result"]
    assert result["failed"] == ["gcp-us-central1"]
    assert deployments(ws) == 29  # every other site applied (gcp-us-central1 holds 3)
    blocker.unlink()
    again = sovereign("apply", *fleet_args(ws), "--yes")
    assert again.returncode == 0, again.stderr
    assert deployments(ws) == 32


def test_demo_runs_offline_and_leaves_the_example_fleet_alone(tmp_path: Path) -> None:
    # How long it takes is bench/startup.py's business, not an assertion: a loaded machine
    # makes any wall-clock bound flaky (the timeout below only stops a hung demo).
    before = sorted(p.relative_to(REPO) for p in (REPO / "regions").rglob("*"))
    r = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [sys.executable, "-m", "orchestrator", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "gcp-asia-northeast1" in r.stdout and "451" in r.stdout
    assert "audit verify: OK" in r.stdout
    assert '"ok"' not in r.stdout  # without --json, no JSON document among the story
    # The live act: real requests through the gateway, and failover that stays legal.
    out = " ".join(r.stdout.split())  # rich wraps long lines
    assert "Live requests (now)" in out
    assert "Stopped aws-eu-central-1. German in Germany, fable-5: 200 gcp-europe-west4" in out
    # The runbook: drained (the gateway stops trying it), then restored.
    assert "sovereign drain --site aws-eu-central-1" in out and "0 lose service" in out
    assert "German in Germany, fable-5: 200 gcp-europe-west4, aws-eu-central-1 no longer" in out
    assert "route again aws-eu-central-1 > gcp-europe-west4" in out
    assert "German national in US, fable-5: 451 refused: us-doc-2026-06-26" in out
    assert sorted(p.relative_to(REPO) for p in (REPO / "regions").rglob("*")) == before
    assert_demo_counts_agree_with_impact(out, tmp_path)


IMPACT_LINE = re.compile(
    r"Impact of (\S+) \(.*?\), before adding it: (\d+) of (\d+) cells change "
    r"\((\d+) models x (\d+) audience classes\) - (\d+) refused, (\d+) rerouted, "
    r"(\d+) restored; collateral (\d+)\."
)
COLLATERAL_LINE = re.compile(
    r"Counted over the (\d+) fable-5 and mythos-5 cells of the impact of (\S+) above "
    r"\(2 models x (\d+) audience classes\)\. The law required refusing (\d+) of them"
)


def impact_json(tmp_path: Path, directive: str, fleet_has: list[str], at: str) -> dict[str, Any]:
    """`sovereign impact --json` of the example fleet's ``directive`` against the example
    fleet holding only the directives ``fleet_has`` (how the demo adds them one by one)."""
    fleet = tmp_path / f"fleet-before-{directive}"
    shutil.copytree(REPO / "regions", fleet)
    for path in (fleet / "directives").iterdir():
        if path.name.removesuffix(".sig") not in fleet_has:
            path.unlink()
    r = sovereign(
        "impact",
        str(REPO / "regions" / "directives" / directive),
        "--fleet",
        str(fleet),
        "--at",
        at,
        "--json",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    answer: dict[str, Any] = json.loads(r.stdout)
    return answer


def assert_demo_counts_agree_with_impact(out: str, tmp_path: Path) -> None:
    """The demo counts in one unit, the cell of `sovereign impact`, said once; each of its
    figures is what `sovereign impact --json` answers for the same directives."""
    assert out.count("A cell is one model for one audience class") == 1
    first, second = IMPACT_LINE.findall(out)
    expected = [
        ("us-doc-2026-06-12.yaml", [], "2026-06-13T00:00:00Z"),
        ("us-doc-2026-06-26.yaml", ["us-doc-2026-06-12.yaml"], "2026-06-27T00:00:00Z"),
    ]
    answers = [impact_json(tmp_path, *e) for e in expected]
    for shown, answer in zip((first, second), answers, strict=True):
        did, changed, cells, models, classes, refused, rerouted, restored, collateral = shown
        summary = answer["summary"]
        assert did == answer["directive"]
        assert int(cells) == summary["cells"] == int(models) * int(classes)
        assert int(models) == 5  # the example fleet's models
        assert [int(changed), int(refused), int(rerouted), int(restored), int(collateral)] == [
            summary[k] for k in ("changed", "refused", "rerouted", "restored", "collateral")
        ]
    # The amendment's exempt group splits every class: the demo says so, in the same unit.
    assert int(second[4]) == 2 * int(first[4])
    assert f"{second[4]} audience classes where there were {first[4]}" in out
    (hit,) = COLLATERAL_LINE.findall(out)
    cells, did, classes, required = hit
    assert did == first[0] and classes == first[4]
    assert int(cells) == 2 * int(first[4])
    refused = [
        c
        for c in answers[0]["changes"]
        if c["effect"] == "refused" and c["model"] in ("fable-5", "mythos-5")
    ]
    assert int(required) == len(refused) == answers[0]["summary"]["refused"]
