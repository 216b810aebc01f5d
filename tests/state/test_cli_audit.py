"""`sovereign audit verify` / `audit log`: text, --json, exit codes, in a real subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.state.sqlite import SqliteStateStore
from tests.state.conftest import ROOT


def sovereign(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOVEREIGN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


def make_fleet_state(tmp_path: Path, entries: int = 3) -> tuple[Path, str]:
    fleet = tmp_path / "fleet"
    store = SqliteStateStore(fleet / ".sovereign" / "state.db")
    for i in range(entries):
        store.audit.append("change.applied", {"address": f"site/{i}", "token": "hide-me"})
    head = store.audit.entries()[-1].hash
    store.close()
    return fleet, head


def test_verify_an_intact_chain_as_text_and_json(tmp_path: Path) -> None:
    fleet, head = make_fleet_state(tmp_path)
    result = sovereign("audit", "verify", "--fleet", str(fleet))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"audit chain intact: 4 entries, head {head}"  # never cut
    result = sovereign("audit", "verify", "--fleet", str(fleet), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"ok": True, "entries": 4, "head": head, "problem": None}


def test_verify_names_the_broken_entry_and_exits_1(tmp_path: Path) -> None:
    fleet, _ = make_fleet_state(tmp_path)
    db = fleet / ".sovereign" / "state.db"
    conn = sqlite3.connect(db)
    conn.execute("UPDATE audit SET kind = 'change.failed' WHERE seq = 3")
    conn.commit()
    conn.close()
    text = sovereign("audit", "verify", "--state", str(db))
    assert text.returncode == 1
    assert text.stdout == ""
    assert "entry 3" in text.stderr and "edited" in text.stderr
    as_json = sovereign("audit", "verify", "--state", f"sqlite:///{db}", "--json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["entries"] == 4
    assert doc["problem"]["seq"] == 3 and doc["problem"]["kind"] == "change.failed"
    assert doc["problem"]["message"].startswith("edited")


def test_verify_without_a_state_fails_instead_of_creating_one(tmp_path: Path) -> None:
    result = sovereign("audit", "verify", "--fleet", str(tmp_path))
    assert result.returncode == 1
    assert "no state at" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".sovereign").exists()


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same entry point in this process (cheaper than a subprocess for the details)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_a_bad_state_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_in_process(capsys, "audit", "verify", "--state", "ftp://host/x")
    assert code == 1 and out == ""
    assert "sqlite:///PATH" in err and "Traceback" not in err


def test_log_shows_the_last_entries_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, _ = make_fleet_state(tmp_path)
    code, out, _ = run_in_process(
        capsys, "audit", "log", "--fleet", str(fleet), "--limit", "2", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert [e["seq"] for e in doc] == [3, 4]
    assert doc[-1]["payload"] == {"address": "site/2", "token": "[redacted]"}
    code, out, _ = run_in_process(
        capsys, "audit", "log", "--fleet", str(fleet), "--kind", "state.created"
    )
    assert code == 0
    assert "state.created" in out and "change.applied" not in out
    code, out, _ = run_in_process(capsys, "audit", "log", "--fleet", str(fleet))
    assert code == 0 and out.count("change.applied") == 3 and "hide-me" not in out


def test_log_refuses_a_negative_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet, _ = make_fleet_state(tmp_path)
    code, _, err = run_in_process(capsys, "audit", "log", "--fleet", str(fleet), "--limit", "-1")
    assert code == 1 and "--limit" in err
