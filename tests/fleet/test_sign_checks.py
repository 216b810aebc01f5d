"""`directive sign` checks before it writes (the file's schema and instants, and that the
authority is registered in the directive's own jurisdiction); `verify` says to register an
unregistered signer; `validate` says whether it judged the fleet against a state."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.fleet.keyfiles import read_private_key_file
from orchestrator.fleet.signing import sign_file_bytes, signature_path, write_signature
from tests.cli.support import run_cli

REPO = Path(__file__).resolve().parents[2]
AMENDMENT = REPO / "regions" / "directives" / "us-doc-2026-06-26.yaml"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "regions", tmp_path / "regions")
    return tmp_path / "regions"


def new_directive(tmp_path: Path, effective: str) -> Path:
    text = AMENDMENT.read_text().replace("id: us-doc-2026-06-26", "id: us-doc-2026-07-01")
    text = text.replace("effective: 2026-06-26T00:00:00Z", f"effective: {effective}")
    path = tmp_path / "new.yaml"
    path.write_text(text)
    return path


def key(tmp_path: Path, capsys: pytest.CaptureFixture[str], authority: str) -> Path:
    pem = tmp_path / f"{authority}.pem"
    assert run_cli(capsys, "keygen", "--out", str(pem), "--authority", authority)[0] == 0
    return pem


def test_a_bare_date_is_refused_before_anything_is_signed(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = new_directive(tmp_path, "2026-07-01")
    pem = key(tmp_path, capsys, "us-commerce")
    code, out, err = run_cli(
        capsys, "directive", "sign", str(file), "--key", str(pem), "--authority", "us-commerce",
        "--fleet", str(fleet), "--json",
    )  # fmt: skip
    assert code == 1 and not signature_path(file).exists()
    error = json.loads(out)["error"]
    [problem] = error["problems"]
    assert problem["field"] == "effective" and problem["line"] == 12
    assert "timezone" in problem["message"] and "sign it" in error["hint"]


def test_an_authority_the_profile_does_not_register_is_refused_and_verify_says_register(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = new_directive(tmp_path, "2026-07-01T00:00:00Z")
    pem = key(tmp_path, capsys, "rogue")
    code, _, err = run_cli(
        capsys, "directive", "sign", str(file), "--key", str(pem), "--authority", "rogue",
        "--fleet", str(fleet),
    )  # fmt: skip
    assert code == 1 and not signature_path(file).exists()
    assert "'rogue' is not an authority of US" in err and "register the authority" in err
    # Signed anyway (by hand): verify points at the registration, not at signing again.
    private = read_private_key_file(pem, make_hint="")
    write_signature(file, "rogue", sign_file_bytes(private, file.read_bytes()))
    code, out, err = run_cli(capsys, "directive", "verify", str(file), "--fleet", str(fleet))
    assert code == 1
    assert "register the authority (rogue)" in err and str(fleet / "us.yaml") in err


def test_validate_says_whether_it_judged_against_a_state(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "validate", "--fleet", str(fleet), "--json")
    assert code == 0 and json.loads(out)["state"] is None
    code, out, _ = run_cli(capsys, "validate", "--fleet", str(fleet))
    assert code == 0 and "not judged against a state" in out
    code, out, err = run_cli(capsys, "apply", "--fleet", str(fleet), "--sites", "local", "--yes")
    assert code == 0, out + err
    code, out, _ = run_cli(capsys, "validate", "--fleet", str(fleet), "--json")
    assert code == 0 and json.loads(out)["state"] == str(fleet / ".sovereign" / "state.db")
    code, out, _ = run_cli(capsys, "validate", "--fleet", str(fleet))
    assert code == 0 and "judged against the state" in " ".join(out.split())
