"""``sovereign export``: one jurisdiction's desired state, the input of its Pulumi stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from orchestrator.cli.app import main
from orchestrator.errors import UsageError
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.planning.desired import desired_pairs
from orchestrator.planning.export import StackInput, desired_digest, export_stack_input
from tests.strategies import fleets, instants

REGIONS = Path(__file__).resolve().parents[2] / "regions"
SHIPPED = tuple(sorted(load_fleet(REGIONS).jurisdictions))  # every one of them must export
AT = "2026-07-01T00:00:00Z"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_the_shipped_fleet_has_jurisdictions_to_export() -> None:
    assert len(SHIPPED) >= 2


@pytest.mark.parametrize("jurisdiction", SHIPPED)
def test_every_shipped_jurisdiction_exports_its_desired_state(
    capsys: pytest.CaptureFixture[str], jurisdiction: str
) -> None:
    code, out, err = run(
        capsys, "export", "--fleet", str(REGIONS), "-j", jurisdiction, "--format", "pulumi",
        "--at", AT,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    fleet = load_fleet(REGIONS)
    own = set(fleet.jurisdictions[jurisdiction].sites)
    want = {(m, s) for m, s in desired_pairs(fleet, datetime(2026, 7, 1, tzinfo=UTC)) if s in own}
    assert doc["jurisdiction"] == jurisdiction
    assert {s["id"] for s in doc["sites"]} == own
    assert {(d["model"], d["site"]) for d in doc["deployments"]} == want
    assert {(a["model"], a["site"]) for a in doc["artifacts"]} == want
    assert StackInput.from_json(doc, stack=jurisdiction).jurisdiction == jurisdiction


def test_out_writes_the_file_and_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "eu.json"
    code, out, err = run(
        capsys, "export", "--fleet", str(REGIONS), "-j", "EU", "--out", str(target), "--at", AT
    )
    assert code == 0 and out == ""
    assert "EU" in err and str(target) in err
    assert json.loads(target.read_text())["jurisdiction"] == "EU"


def test_an_unknown_jurisdiction_is_exit_1_with_the_valid_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "export", "--fleet", str(REGIONS), "-j", "MARS")
    assert code == 1 and out == ""
    assert "'MARS' is not a jurisdiction" in err
    assert ", ".join(SHIPPED) in err
    assert "Traceback" not in err


def test_an_unknown_jurisdiction_with_json_is_a_json_error_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "export", "--fleet", str(REGIONS), "-j", "MARS", "--json")
    assert code == 1
    error = json.loads(out)["error"]
    assert error["exit_code"] == 1
    assert "MARS" in error["message"] and ", ".join(SHIPPED) in error["hint"]


def test_an_unknown_format_is_refused_naming_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "export", "--fleet", str(REGIONS), "-j", "EU", "--format", "tf")
    assert code == 1 and out == ""
    assert "'tf' is not supported" in err and "pulumi" in err


@settings(max_examples=60, deadline=None)
@given(fleet=fleets(), at=instants())
def test_an_export_holds_its_own_sites_and_exactly_the_desired_pairs(
    fleet: Fleet, at: datetime
) -> None:
    pairs = desired_pairs(fleet, at)
    seen: set[tuple[str, str]] = set()
    for j in fleet.jurisdictions:
        doc = export_stack_input(fleet, at, j)
        parsed = StackInput.from_json(json.loads(json.dumps(doc)), stack=j)
        own = set(fleet.jurisdictions[j].sites)
        assert {s.id for s in parsed.sites} == own
        exported = {(d.model, d.site) for d in parsed.deployments}
        assert exported == {(m, s) for m, s in pairs if s in own}
        assert {(a.model, a.site) for a in parsed.artifacts} == exported
        for a in parsed.artifacts:
            # in the site's own provider's form: AWS tags, GCS labels
            marks = {k.replace("-", ":"): v for k, v in a.tags.items()}
            assert marks["sovereign:site"] == a.site and marks["sovereign:model"] == a.model
        seen |= exported
    assert seen == set(pairs)  # every desired pair belongs to exactly one stack


def _eu(fleet: Fleet) -> dict[str, Any]:
    return export_stack_input(fleet, datetime(2026, 7, 1, tzinfo=UTC), "EU")


def test_a_stack_refuses_another_jurisdictions_input() -> None:
    doc = _eu(load_fleet(REGIONS))
    with pytest.raises(UsageError, match="stack 'US' was given the desired state of 'EU'"):
        StackInput.from_json(doc, stack="US")


def test_an_input_naming_a_foreign_site_is_refused() -> None:
    doc = _eu(load_fleet(REGIONS))
    doc["deployments"][0]["site"] = "aws-us-east-1"
    with pytest.raises(UsageError, match="not a site of EU"):
        StackInput.from_json(doc, stack="EU")


@pytest.mark.parametrize("broken", [{"format": 2}, {"sites": None}, {"tags": []}])
def test_a_malformed_input_is_a_usage_error(broken: dict[str, Any]) -> None:
    doc = {**_eu(load_fleet(REGIONS)), **broken}
    with pytest.raises(UsageError, match="malformed"):
        StackInput.from_json(doc)


def test_the_desired_digest_ignores_the_instant_but_not_the_content() -> None:
    fleet = load_fleet(REGIONS)
    a = export_stack_input(fleet, datetime(2026, 7, 1, tzinfo=UTC), "EU")
    b = export_stack_input(fleet, datetime(2026, 7, 2, tzinfo=UTC), "EU")
    assert desired_digest(a) == desired_digest(b)
    b["deployments"] = b["deployments"][1:]
    assert desired_digest(a) != desired_digest(b)
