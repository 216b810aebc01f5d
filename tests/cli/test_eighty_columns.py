"""Readable at 80 columns: the audit log as prose (JSON with --json), impact's routes whole,
help texts wrapped by the terminal (not pre-wrapped), a refused drain said once, and
impact pointing out what nationality_in does to unknown nationality."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.support import run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "80")
    shutil.copytree(REPO / "regions", tmp_path / "regions")
    return tmp_path / "regions"


def test_the_audit_log_reads_as_prose_and_is_json_with_json(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = ["--fleet", str(fleet)]
    assert run_cli(capsys, "apply", *f, "--sites", "local", "--yes")[0] == 0
    assert (
        run_cli(capsys, "drain", *f, "--site", "aws-eu-central-1", "--reason", "INC-1", "--yes")[0]
        == 0
    )
    code, out, _ = run_cli(capsys, "audit", "log", *f, "--kind", "drain.added")
    assert code == 0
    assert "{'" not in out and "None" not in out  # no Python reprs
    assert "        reason: INC-1" in out.splitlines()
    assert all(len(line) <= 80 for line in out.splitlines())
    code, out, _ = run_cli(capsys, "audit", "log", *f, "--kind", "drain.added", "--json")
    [entry] = json.loads(out)
    assert entry["payload"]["reason"] == "INC-1"


def test_a_refused_evacuate_says_its_error_once_at_80_columns(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = ["--fleet", str(fleet)]
    assert run_cli(capsys, "apply", *f, "--sites", "local", "--yes")[0] == 0
    code, _, err = run_cli(capsys, "evacuate", *f, "--jurisdiction", "EU", "--reason", "x", "--yes")
    assert code == 1
    assert all(len(line) <= 80 for line in err.splitlines())
    error = err[err.index("error:") :]
    assert error.count("min_sites_per_model") == 1  # the interlock: lines above hold the detail


def test_impact_keeps_routes_whole_and_points_out_unknown_nationality(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys, "impact", str(fleet / "directives" / "us-doc-2026-06-12.yaml"),
        "--fleet", str(fleet), "--at", "2026-06-13",
    )  # fmt: skip
    assert code == 0
    assert "    aws-ap-northeast-1 > gcp-asia-northeast1 => gcp-asia-northeast1" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    amendment = (fleet / "directives" / "us-doc-2026-06-26.yaml").read_text()
    russia = tmp_path / "ru.yaml"
    russia.write_text(
        amendment.replace("id: us-doc-2026-06-26", "id: us-ru-2026-07-01")
        .replace("nationality_not_in: [US]", "nationality_in: [RU]")
        .replace("supersedes: us-doc-2026-06-12", "supersedes: null")
        .replace("models: [fable-5, mythos-5]", "models: [olmo-3]")
    )
    code, out, _ = run_cli(capsys, "impact", str(russia), "--fleet", str(fleet))
    assert code == 0
    said = " ".join(out.split())
    assert "nationality_in: [RU] also reaches every principal whose nationality is unknown" in said
    code, out, _ = run_cli(capsys, "impact", str(russia), "--fleet", str(fleet), "--json")
    doc = json.loads(out)
    assert doc["unknown_nationality"]["nationality_in"] == ["RU"]
    assert doc["unknown_nationality"]["cells"] >= 1


def test_help_prose_is_wrapped_by_the_terminal_not_by_the_docstring(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "drain", "--help")
    assert code == 0
    prose = " ".join(out.split())
    assert "never one the law does not already allow" in prose
    lines = [line.strip() for line in out.splitlines()]
    # A pre-wrapped docstring re-wrapped at 80 leaves one-word stubs ("already", "model").
    assert "already" not in lines and "model" not in lines
