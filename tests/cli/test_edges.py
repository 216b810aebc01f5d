"""Edges an attacker (or an accident) reaches first: every one a clean refusal, never a traceback.

Each test here failed on the code before the fix it names (issue 20, "Crashes"): the CLI is
driven in process through its one entry point, so a traceback would be an uncaught exception
(exit 1 with "Traceback" in the output, or an exception out of ``main``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.cli.output import printable
from orchestrator.planning.plan import PLAN_FORMAT, Plan
from tests.cli.support import run_cli
from tests.fleet.builder import DIRECTIVE_YAML, FleetFactory

OVERFLOW = "0001-01-01T00:00:00+01:00"  # one hour before the first representable instant


def _no_traceback(out: str, err: str) -> None:
    assert "Traceback" not in out + err, out + err


def test_a_directive_instant_whose_offset_overflows_is_a_problem_not_a_crash(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DIRECTIVE_YAML.replace("effective: 2026-01-01T00:00:00Z", f"effective: {OVERFLOW}")
    root = signed_fleet_factory({"directives/us-d1.yaml": text})
    code, out, err = run_cli(capsys, "validate", "--fleet", str(root))
    assert code == 1
    _no_traceback(out, err)
    assert "effective" in out + err and "range" in out + err
    code, out, err = run_cli(capsys, "directive", "verify", str(root / "directives/us-d1.yaml"),
                             "--fleet", str(root))  # fmt: skip
    assert code == 1
    _no_traceback(out, err)


def test_a_saved_plan_with_an_infinite_serial_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "p.json"
    plan.write_text(
        f'{{"format": {PLAN_FORMAT}, "lineage": "x", "serial": 1e400, "fleet_digest": "d", '
        '"created_at": "2026-06-13T00:00:00+00:00", "at": "2026-06-13T00:00:00+00:00", '
        '"changes": [], "interlocks": []}'
    )
    code, out, err = run_cli(capsys, "apply", str(plan), "--fleet", str(tmp_path), "--json")
    assert code == 1
    _no_traceback(out, err)
    assert "malformed" in json.loads(out)["error"]["message"]


def test_plan_out_into_a_missing_directory_is_a_usage_error(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = signed_fleet_factory()
    missing = tmp_path / "nonexistent" / "p.json"
    code, out, err = run_cli(
        capsys, "plan", "--fleet", str(root), "--sites", "local", "--out", str(missing)
    )
    assert code == 1
    _no_traceback(out, err)
    assert "cannot write the plan" in err


def _fifo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


def _in_thread(args: list[str]) -> tuple[int | None, bool]:
    """Run the CLI in a thread: (exit code, whether it finished within 60 s). A command that
    opens a FIFO for reading blocks forever, so a hang shows as not finished."""
    result: list[int | None] = []

    def run() -> None:
        try:
            main(args)
        except SystemExit as done:
            result.append(done.code if isinstance(done.code, int) else 1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    return (result[0] if result else None), not t.is_alive()


def test_directive_verify_and_apply_refuse_a_fifo_without_waiting_on_it(
    signed_fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    root = signed_fleet_factory()
    fifo = _fifo(tmp_path, "d.yaml")
    try:
        code, finished = _in_thread(["directive", "verify", str(fifo), "--fleet", str(root)])
        assert finished and code == 1
        plan_fifo = _fifo(tmp_path, "plan.json")
        code, finished = _in_thread(["apply", str(plan_fifo), "--fleet", str(root)])
        assert finished and code == 1
    finally:
        # release a reader stuck on a FIFO (only on failure): open the write end, close it
        for name in ("d.yaml", "plan.json"):
            path = tmp_path / name
            if path.exists():
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                    os.close(fd)
                except OSError:
                    pass


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_directive_verify_and_apply_refuse_dev_zero(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    code, out, err = run_cli(capsys, "directive", "verify", "/dev/zero", "--fleet", str(root))
    assert code == 1 and "character device" in out + err
    code, out, err = run_cli(capsys, "apply", "/dev/zero", "--fleet", str(root))
    assert code == 1 and "character device" in out + err


def test_an_edited_sha256_in_a_saved_plan_is_refused(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = signed_fleet_factory()
    out_file = tmp_path / "p.json"
    code, out, err = run_cli(
        capsys, "plan", "--fleet", str(root), "--sites", "local", "--out", str(out_file)
    )
    assert code == 0, out + err
    doc = json.loads(out_file.read_text())
    assert Plan.loads(out_file.read_bytes()).sha256() == doc["sha256"]  # unchanged: accepted
    doc["sha256"] = "0" * 64
    out_file.write_text(json.dumps(doc))
    code, out, err = run_cli(capsys, "apply", str(out_file), "--fleet", str(root), "--json")
    assert code == 1
    assert "sha256" in json.loads(out)["error"]["message"]
    del doc["sha256"]
    out_file.write_text(json.dumps(doc))
    code, out, err = run_cli(capsys, "apply", str(out_file), "--fleet", str(root), "--json")
    assert code == 1 and "has no sha256" in json.loads(out)["error"]["message"]


def _state_with_lock_row(root: Path, capsys: pytest.CaptureFixture[str], **row: str) -> Path:
    code, out, err = run_cli(capsys, "apply", "--fleet", str(root), "--sites", "local", "--yes")
    assert code == 0, out + err
    db = root / ".sovereign" / "state.db"
    fields = {
        "holder_id": "h1",
        "pid": "1",
        "host": "elsewhere",
        "user": "u",
        "operation": "apply",
        "acquired_at": "2026-06-13T00:00:00Z",
        "expires_at": "2999-01-01T00:00:00Z",
        **row,
    }
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO lock (id, holder_id, pid, host, user, operation, "
            "acquired_at, expires_at) VALUES (1, :holder_id, :pid, :host, :user, :operation, "
            ":acquired_at, :expires_at)",
            fields,
        )
    conn.close()
    return db


def test_a_damaged_lock_row_is_named_and_can_be_cleared(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    _state_with_lock_row(root, capsys, expires_at="garbage")
    args = ["--fleet", str(root), "--sites", "local", "--yes"]
    code, out, err = run_cli(capsys, "apply", *args)
    assert code == 1
    _no_traceback(out, err)
    assert "lock record is damaged" in err and "expires_at 'garbage'" in err
    code, out, err = run_cli(capsys, "state", "lock-info", "--fleet", str(root), "--json")
    assert code == 0, out + err
    info = json.loads(out)
    assert info["locked"] and "expires_at" in info["damaged"]
    code, out, err = run_cli(
        capsys, "state", "unlock", "--force", "h1", "--yes", "--fleet", str(root)
    )
    assert code == 0, out + err
    code, out, err = run_cli(capsys, "apply", *args)
    assert code == 0, out + err


def test_a_non_json_resource_row_is_a_state_error_naming_it(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    code, out, err = run_cli(capsys, "apply", "--fleet", str(root), "--sites", "local", "--yes")
    assert code == 0, out + err
    db = root / ".sovereign" / "state.db"
    with sqlite3.connect(db) as conn:
        address = conn.execute("SELECT address FROM resources LIMIT 1").fetchone()[0]
        conn.execute("UPDATE resources SET resource = 'not json' WHERE address = ?", (address,))
    conn.close()
    code, out, err = run_cli(capsys, "status", "--fleet", str(root), "--sites", "local")
    assert code == 1
    _no_traceback(out, err)
    assert address in err and "damaged" in err
    code, out, err = run_cli(capsys, "state", "lock-info", "--fleet", str(root))
    assert code == 0, out + err


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_gateway_refuses_a_timeout_that_is_not_a_finite_positive_number(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k.pem"
    key.write_text("unused: refused before it is read")
    code, out, err = run_cli(
        capsys, "gateway", "--token-key", str(key), "--upstream-timeout", value, "--port", "0"
    )
    assert code == 1
    _no_traceback(out, err)
    assert "--upstream-timeout must be > 0 and finite" in err


def test_token_mint_refuses_a_group_the_gateway_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "dev.pem"
    code, out, err = run_cli(capsys, "token", "keygen", "--out", str(key))
    assert code == 0, out + err
    for bad in ("bad group", "admins\nroot", "-lead", "é"):
        code, out, err = run_cli(capsys, "token", "mint", "--key", str(key), "-r", "DE",
                                 "--group", bad)  # fmt: skip
        assert code == 1 and "invalid --group" in err, (bad, out, err)
    code, out, err = run_cli(
        capsys, "token", "mint", "--key", str(key), "-r", "DE", "--group", "trusted-partners"
    )
    assert code == 0, out + err


@pytest.mark.parametrize("value", ["uſ", "ın", "ＵＳ", "u\u0308s"])
def test_token_mint_and_explain_refuse_unicode_that_upper_cases_to_a_country(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], example_fleet_dir: Path
) -> None:
    key = tmp_path / "dev.pem"
    run_cli(capsys, "token", "keygen", "--out", str(key))
    code, out, err = run_cli(capsys, "token", "mint", "--key", str(key), "-r", value)
    assert code == 1 and "invalid residency" in err, (out, err)
    code, out, err = run_cli(
        capsys, "token", "mint", "--key", str(key), "-r", "DE", "--nationality", value
    )
    assert code == 1 and "invalid nationality" in err, (out, err)
    code, out, err = run_cli(
        capsys, "explain", "--fleet", str(example_fleet_dir), "--model", "fable-5",
        "--residency", "DE", "--nationality", value,
    )  # fmt: skip
    assert code == 1 and "invalid nationality" in err, (out, err)


def test_status_shows_control_characters_in_a_drain_reason_escaped(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    code, out, err = run_cli(capsys, "apply", "--fleet", str(root), "--sites", "local", "--yes")
    assert code == 0, out + err
    reason = "INC-1 \x1b[2J\x1b[31mfake\x07\rok\u202eevil"
    code, out, err = run_cli(
        capsys, "drain", "--site", "eu-1", "--reason", reason, "--yes", "--fleet", str(root),
        "--allow-outage", "test",
    )  # fmt: skip
    assert code == 0, out + err
    assert "\x1b" not in out + err
    code, out, err = run_cli(capsys, "status", "--fleet", str(root), "--sites", "local")
    assert code == 0, out + err
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[31mfake" in out.replace("\n", "")
    assert printable("a\x1bb\u202ec\nd") == "a\\x1bb\\u202ec\nd"


def _unshare_works() -> bool:
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True, check=False, stdin=subprocess.DEVNULL
    )
    return done.returncode == 0


@pytest.mark.slow  # a read-only mount namespace and a subprocess per reader
@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -rm (user + mount namespaces)")
def test_readers_work_on_a_read_only_file_system(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state on a read-only mount (a backup, a snapshot): status, audit verify and lock-info
    read it (SQLite could not create its -shm file there: "unable to open database file")."""
    import subprocess
    import sys

    root = signed_fleet_factory()
    code, out, err = run_cli(capsys, "apply", "--fleet", str(root), "--sites", "local", "--yes")
    assert code == 0, out + err
    repo = Path(__file__).resolve().parents[2]
    fleet = str(root)
    commands = " && ".join(
        f"{sys.executable} -m orchestrator {args} --fleet {fleet}"
        for args in ("status --sites local", "audit verify", "state lock-info")
    )
    script = f"mount --bind -o ro {fleet} {fleet} && mount -o remount,ro,bind {fleet} && {commands}"
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "unable to open" not in done.stderr and "is not locked" in done.stdout
