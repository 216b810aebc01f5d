"""The messages a newcomer hit first (issue 16), each pinned: what went wrong, in their terms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.support import run_cli

REPO = Path(__file__).resolve().parents[2]
REGIONS = REPO / "regions"


def test_impact_of_a_missing_file_says_the_file_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "impact", str(tmp_path / "MISSING.yaml"), "--fleet", str(REGIONS)
    )
    assert code == 1 and out == ""
    assert "cannot read the directive file" in err and "no such file" in err
    assert "fleet is invalid" not in err


def test_one_yaml_error_is_one_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = tmp_path / "regions"
    shutil.copytree(REGIONS, fleet)
    eu = fleet / "eu.yaml"
    eu.write_text(eu.read_text().replace("name: European Union", "name: [European Union"))
    code, out, _ = run_cli(capsys, "validate", "--fleet", str(fleet), "--json")
    errors = json.loads(out)["errors"]
    assert code == 1
    assert [e["file"] for e in errors] == [str(eu)]
    assert "malformed YAML" in errors[0]["message"]


def test_the_demo_names_the_users_files_not_its_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "broken"
    shutil.copytree(REGIONS, fleet)
    (fleet / "us.yaml").write_text("jurisdiction: US\nname: [\n")
    code, _, err = run_cli(capsys, "demo", "--fleet", str(fleet))
    assert code == 1
    assert f"{fleet}/us.yaml" in err
    assert "sovereign-demo-" not in err


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["explain", "-m", "fable-5", "-r", "UK"], "did you mean GB?"),
        (["explain", "-m", "fable-5", "-r", "EL"], "did you mean GR?"),
        (["explain", "-m", "fable5", "-r", "DE"], "did you mean fable-5?"),
        (
            ["drain", "--site", "aws-us-east1", "--reason", "x", "--yes"],
            "did you mean aws-us-east-1?",
        ),
    ],
)
def test_a_near_miss_gets_a_did_you_mean(
    args: list[str], hint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "regions"
    shutil.copytree(REGIONS, fleet)
    code, out, _ = run_cli(capsys, *args, "--fleet", str(fleet), "--json")
    assert code == 1
    assert hint in json.loads(out)["error"]["hint"]


def test_the_readme_impact_example_shows_the_directive_biting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (REPO / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("sovereign impact "))
    args = line.split("#")[0].split()[1:]
    code, out, err = run_cli(capsys, *args, "--fleet", str(REGIONS), "--json")
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert summary["changed"] > 0 and summary["refused"] > 0
