"""sovereign validate / keygen / directive sign|verify: output shapes, exit codes, no tracebacks.

Most cases run the CLI in-process through its real entry point (``main``, the error boundary);
the "never a traceback" cases run ``python -m orchestrator`` as a user would.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.fleet.signing import public_key_of
from tests.fleet.builder import DIRECTIVE_FILE, DIRECTIVE_YAML, FleetFactory, keys

REPO = Path(__file__).resolve().parents[2]
D = DIRECTIVE_FILE


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def run_process(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SOVEREIGN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_validate_example_fleet(
    capsys: pytest.CaptureFixture[str], example_fleet_dir: Path
) -> None:
    code, out, _ = run(["validate", "--fleet", str(example_fleet_dir)], capsys)
    assert code == 0
    summary = " ".join(out.split())  # one sentence, wrapped between words to the width
    assert "valid: 5 jurisdictions, 10 sites, 5 models, 1 directive in force now" in summary


def test_validate_json_valid(capsys: pytest.CaptureFixture[str], example_fleet_dir: Path) -> None:
    code, out, err = run(["validate", "--fleet", str(example_fleet_dir), "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc.pop("state") in (None, str(example_fleet_dir / ".sovereign" / "state.db"))
    assert doc == {"valid": True, "errors": [], "warnings": []}
    assert err == ""


def test_validate_warns_of_guarantees_the_fleet_cannot_keep(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory
) -> None:
    # The US no longer exports m-us to the EU: EU lists it, but no EU site may hold it.
    root = signed_fleet_factory(mutate={"us.yaml": [("restricted: [EU]", "restricted: []")]})
    code, out, err = run(["validate", "--fleet", str(root)], capsys)
    assert code == 0 and "valid:" in out
    (line,) = [x for x in err.splitlines() if x.startswith("warning:")]
    assert "m-us" in line and "EU" in line and "export rules" in line
    code, out, _ = run(["validate", "--fleet", str(root), "--json"], capsys)
    payload = json.loads(out)
    assert payload["valid"] is True
    ((warning),) = payload["warnings"]
    assert (warning["jurisdiction"], warning["model"], warning["count"]) == ("EU", "m-us", 0)
    assert {b["rule"] for b in warning["blockers"]} == {"export"}


def test_validate_capacity_overflow_is_an_error_naming_the_site(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory
) -> None:
    root = signed_fleet_factory(
        mutate={"us.yaml": [("operator: op-us\n", "operator: op-us\n    capacity: 1\n")]}
    )
    code, out, _ = run(["validate", "--fleet", str(root), "--json"], capsys)
    assert code == 1
    ((error),) = json.loads(out)["errors"]
    assert error["file"] == f"{root}/us.yaml" and error["field"] == "sites[0].capacity"
    assert "us-1" in error["message"] and "capacity 1" in error["message"]
    code, _, err = run(["validate", "--fleet", str(root)], capsys)
    assert code == 1 and f"{root}/us.yaml:" in err and "us-1" in err


def test_validate_json_invalid(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory
) -> None:
    root = signed_fleet_factory(mutate={"us.yaml": [("process_in: [US]", "process_in: [ZZ]")]})
    code, out, _ = run(["validate", "--fleet", str(root), "--json"], capsys)
    assert code == 1
    payload = json.loads(out)
    assert set(payload) == {"valid", "errors", "error"}  # docs/json.md: the error object beside
    assert payload["error"]["problems"] == payload["errors"]
    assert payload["valid"] is False
    assert payload["errors"] == [
        {
            "file": f"{root}/us.yaml",
            "line": 11,
            "field": "residency.process_in[0]",
            "message": "process_in entry 'ZZ' is not a jurisdiction of the fleet (valid: EU, US)",
        }
    ]


def test_validate_prints_file_line_relative_to_what_was_typed(
    signed_fleet_factory: FleetFactory,
) -> None:
    root = signed_fleet_factory(
        name="regions",
        mutate={
            "eu.yaml": [("region: eu-central-1", "region: eu-centrall-1")],
            "us.yaml": [("process_in: [US]", "process_in: [ZZ]")],
        },
    )
    done = run_process(["validate"], cwd=root.parent)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "error: the fleet is invalid (2 problems)"
    assert lines[1].startswith(
        "regions/eu.yaml:18: sites[1].region: 'eu-centrall-1' is not a region of aws"
    )
    assert lines[2].startswith("regions/us.yaml:11: residency.process_in[0]: ")
    assert "Traceback" not in done.stderr


DAMAGE = [
    ("us.yaml", b"\x00\x01\x02garbage"),
    ("eu.yaml", b"jurisdiction: EU\nname: [unclosed\n"),
    (D, b"\xff\xfe not utf-8"),
    ("models.yaml", b"- just\n- a list\n"),
]


@pytest.mark.parametrize(("rel", "content"), DAMAGE[:2])
def test_damaged_fleet_never_shows_a_traceback(
    signed_fleet_factory: FleetFactory, rel: str, content: bytes
) -> None:
    root = signed_fleet_factory({rel: content}, name="regions")
    done = run_process(["validate", "--fleet", "regions"], cwd=root.parent)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"regions/{rel}" in done.stderr


@pytest.mark.parametrize(("rel", "content"), DAMAGE)
def test_damaged_fleet_json(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory, rel: str, content: bytes
) -> None:
    root = signed_fleet_factory({rel: content})
    code, out, err = run(["validate", "--fleet", str(root), "--json"], capsys)
    assert code == 1
    payload = json.loads(out)
    assert payload["valid"] is False
    assert f"{root}/{rel}" in {e["file"] for e in payload["errors"]}
    assert err == ""


def test_validate_missing_fleet(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(["validate", "--fleet", str(tmp_path / "nope")], capsys)
    assert code == 1
    assert out == ""
    assert "fleet directory not found" in err


def test_validate_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["validate", "--help"], capsys)
    assert code == 0
    assert "FILE:LINE: field.path: message" in out
    assert "jurisdiction: EU" in out
    assert "models: [olmo-3]" in out


def test_unknown_option_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["validate", "--no-such-option"], capsys)
    assert code == 1


def test_keygen(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    code, out, _ = run(["keygen", "--out", str(key), "--authority", "us-gov"], capsys)
    assert code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = public_key_of(key.read_bytes())
    assert f"public key: {public}" in out
    assert f'  - id: us-gov\n    public_key: "{public}"' in out

    code, _, err = run(["keygen", "--out", str(key)], capsys)
    assert code == 1
    assert "already exists" in err
    assert public_key_of(key.read_bytes()) == public

    code, out, _ = run(["keygen", "--out", str(key), "--force", "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert payload["public_key"] == public_key_of(key.read_bytes()) != public
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def write_key(tmp_path: Path, authority: str) -> Path:
    path = tmp_path / f"{authority}.pem"
    path.write_bytes(keys()[authority][0])
    path.chmod(0o600)
    return path


NEW = DIRECTIVE_YAML.replace("id: us-d1", "id: us-d2").replace(
    "supersedes: null", "supersedes: us-d1"
)


def test_sign_then_verify(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    root = signed_fleet_factory()
    new = root / "directives" / "us-d2.yaml"
    new.write_text(NEW)
    fleet = ["--fleet", str(root)]

    code, out, _ = run(["directive", "verify", str(new), *fleet, "--json"], capsys)
    assert code == 1
    payload = json.loads(out)
    assert (payload["valid"], payload["signers"], payload["threshold"]) == (False, [], 1)

    key = write_key(tmp_path, "us-gov")
    code, _, err = run(
        ["directive", "sign", str(new), "--key", str(key), "--authority", "us-gov", *fleet], capsys
    )
    assert code == 0, err
    code, out, _ = run(["directive", "verify", str(new), *fleet], capsys)
    assert code == 0
    assert "verified signatures: us-gov (1 of 1 required: threshold met)" in out
    code, out, _ = run(["validate", *fleet], capsys)
    assert code == 0
    assert "(2 signed in total)" in out


def test_sign_refuses_a_key_that_is_not_the_authoritys(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    root = signed_fleet_factory()
    key = write_key(tmp_path, "eu-gov")
    before = (root / (D + ".sig")).read_bytes()
    code, _, err = run(
        [
            "directive",
            "sign",
            str(root / D),
            "--key",
            str(key),
            "--authority",
            "us-gov",
            "--fleet",
            str(root),
        ],
        capsys,
    )
    assert code == 1
    assert "is not the key of authority 'us-gov' of US" in err
    assert (root / (D + ".sig")).read_bytes() == before


def test_verify_tampered(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory
) -> None:
    root = signed_fleet_factory()
    path = root / D
    path.write_bytes(path.read_bytes() + b"# edited\n")
    code, out, err = run(["directive", "verify", str(path), "--fleet", str(root)], capsys)
    assert code == 1
    assert "threshold NOT met" in out
    assert "does not verify" in err


def test_verify_against_an_invalid_fleet(
    capsys: pytest.CaptureFixture[str], signed_fleet_factory: FleetFactory
) -> None:
    root = signed_fleet_factory(mutate={"us.yaml": [("process_in: [US]", "process_in: [ZZ]")]})
    code, out, _ = run(
        ["directive", "verify", str(root / D), "--fleet", str(root), "--json"], capsys
    )
    assert code == 1
    payload = json.loads(out)
    assert payload["valid"] is False
    assert [e["field"] for e in payload["errors"]] == ["residency.process_in[0]"]
