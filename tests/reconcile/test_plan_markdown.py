"""``plan --markdown FILE``: the pull-request comment (docs/cli.md).

In the demo workspace through the real entry point: the comment carries the plan's SHA-256 (the
one ``plan --out`` saves and ``apply`` records), the changes per jurisdiction, and the impact of
each new or changed directive, the same numbers ``sovereign impact`` gives; a directive already
applied is not reviewed again. The interlock section is checked on a built plan.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.cli.markdown import plan_markdown
from orchestrator.demo.workspace import Workspace
from orchestrator.planning.plan import Blocker, InterlockViolation, Plan, Shortfall
from tests.cli.support import run_cli as cli

REPO = Path(__file__).resolve().parents[2]


def test_the_comment_names_the_plan_its_changes_and_directive_impacts(
    ws: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["--fleet", str(ws.fleet_dir), "--sites", "local"]
    md, saved = tmp_path / "plan.md", tmp_path / "plan.json"
    code, _, err = cli(capsys, "plan", *args, "--markdown", str(md), "--out", str(saved))
    assert code == 0, err
    text = md.read_text()
    sha = json.loads(saved.read_text())["sha256"]
    assert f"plan SHA-256: `{sha}`" in text
    assert text.startswith("## Sovereign plan") and "65 to create" in text
    for j in ("EU", "IN", "JP", "UK", "US"):
        assert f"**{j}**:" in text
    assert "`artifact.aws-eu-central-1.fable-5` | `config`" in text
    assert "<details><summary>16 changes in EU</summary>" in text  # long tables fold
    assert "<details><summary>8 changes in IN" not in text  # short ones do not
    # the directive's impact: the numbers `sovereign impact` gives for it
    directive = ws.fleet_dir / "directives" / "us-doc-2026-06-12.yaml"
    code, out, _ = cli(capsys, "impact", str(directive), "--fleet", str(ws.fleet_dir), "--json")
    s = json.loads(out)["summary"]
    assert (
        "**us-doc-2026-06-12** (new; suspend by US" in text
        and f"{s['refused']} cells refused, {s['unavailable']} lose service (drained), "
        f"{s['rerouted']} rerouted, {s['restored']} restored"
        in text
    )
    assert "No refusal, no warning." in text
    # applied, then a new directive arrives: only it is reviewed
    code, _, err = cli(capsys, "apply", str(saved), *args)
    assert code == 0, err
    ws.add_directive("us-doc-2026-06-26.yaml")
    code, _, err = cli(capsys, "plan", *args, "--markdown", str(md))
    assert code == 0, err
    text = md.read_text()
    assert "**us-doc-2026-06-26** (new;" in text and "us-doc-2026-06-12**" not in text
    assert "`directive:us-doc-2026-06-26`" in text


def test_refusals_and_warnings_and_folding() -> None:
    at = datetime(2026, 6, 13, tzinfo=UTC)
    refusal = InterlockViolation(
        "min_sites_per_model", "US", "fable-5", 1, 2, ("deployment.us-1.fable-5",), "too few", True
    )
    warning = Shortfall("JP", "olmo-3", 0, 1, (Blocker("jp-1", "export", "US", "not exportable"),))
    plan = Plan("lin", 3, "f" * 64, at, at, (), (refusal,), warnings=(warning,))
    text = plan_markdown(plan, Path("regions"), ())
    assert "(refused by the interlock)" in text.splitlines()[0]
    assert "**refused** (US): too few (override with `--allow-outage`)" in text
    assert "warning (JP): olmo-3 is deployed at 0 of JP's sites" in text
    assert "No changes" in text and plan.sha256() in text
