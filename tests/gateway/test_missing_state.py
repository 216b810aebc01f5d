"""Readers never create, and a damaged state is an error, not a crash (issue 9.5, 9.6; docs/cli.md).

``status``, ``audit verify`` and ``gateway`` on a state that does not exist say so, exit 1 and
create nothing; a state whose applied fleet file holds TEXT instead of the file's bytes is
reported as damaged by ``status`` and ``gateway``, never a TypeError.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.fleet.loader import read_fleet_files
from orchestrator.state import open_store
from tests.fleet.builder import FleetFactory
from tests.gateway.support import Keys


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def readers(root: Path, keys: Keys, *state: str) -> list[list[str]]:
    fleet = ["--fleet", str(root), *state]
    token = ["--token-key", str(keys.public_pem_path), "--port", "0"]
    return [
        ["status", *fleet, "--sites", "local"],
        ["audit", "verify", *fleet],
        ["gateway", *fleet, *token],
    ]


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_readers_on_a_named_state_that_does_not_exist_create_nothing(
    keys: Keys,
    signed_fleet_factory: FleetFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = signed_fleet_factory()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = listing(root)
    for argv in readers(root, keys, "--state", "typo.db"):
        code, _, err = run(argv, capsys)
        assert code == 1, argv
        assert "no state at" in err and "typo.db" in err, (argv, err)
        assert "Traceback" not in err
    assert not (work / "typo.db").exists()
    assert list(work.iterdir()) == []
    assert listing(root) == before


def test_readers_without_a_default_state_create_nothing(
    keys: Keys, signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    for argv in readers(root, keys):
        code, _, err = run(argv, capsys)
        assert code == 1, argv
        assert "no state at" in err, (argv, err)
    assert not (root / ".sovereign").exists()


def test_a_text_column_where_the_fleet_bytes_belong_is_reported_as_damage(
    keys: Keys, signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    store = open_store(None, root)
    with store.lock("apply") as lease:
        store.record_applied_fleet(lease, read_fleet_files(root))
    store.close()
    db = root / ".sovereign" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE applied_fleet_file SET data = CAST(data AS TEXT)")
    for argv in readers(root, keys)[::2]:  # status and gateway read the applied fleet
        code, _, err = run(argv, capsys)
        assert code == 1, (argv, err)
        assert "is damaged" in err and "stored as str" in err, (argv, err)
        assert "Traceback" not in err
