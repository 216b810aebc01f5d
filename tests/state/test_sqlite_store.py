"""The SQLite store: serial and lineage, recorded steps, the applied fleet, lease checks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.errors import StateError, StateLockedError
from orchestrator.state import StateStore, open_store
from orchestrator.state.sqlite import SqliteStateStore


def test_a_new_store_starts_at_serial_zero_with_a_lineage_that_never_changes(
    db_path: Path,
) -> None:
    store = SqliteStateStore(db_path)
    lineage = store.lineage()
    assert store.serial() == 0
    assert len(lineage) == 36
    store.close()
    again = SqliteStateStore(db_path)
    assert again.lineage() == lineage
    assert SqliteStateStore(db_path.with_name("other.db")).lineage() != lineage
    again.close()


def test_every_recorded_change_bumps_the_serial_by_one(store: SqliteStateStore) -> None:
    with store.lock("apply") as lease:
        serials = [
            store.record_change(lease, f"site/{i}", "create", "ok", {"i": i}) for i in range(5)
        ]
        serials.append(store.record_applied_fleet(lease, {"fleet.yaml": b"x"}))
        serials.append(store.record_change(lease, "site/0", "delete", "ok", None))
    assert serials == [1, 2, 3, 4, 5, 6, 7]
    assert store.serial() == 7


def test_recorded_resources_track_what_is_managed(store: SqliteStateStore) -> None:
    with store.lock("apply") as lease:
        store.record_change(lease, "b/site", "create", "ok", {"kind": "deployment"})
        store.record_change(lease, "a/site", "create", "ok", {"kind": "artifact"})
        store.record_change(lease, "b/site", "update", "failed", {"kind": "deployment", "v": 2})
        store.record_change(lease, "c/site", "create", "ok", {"kind": "route"})
        store.record_change(lease, "c/site", "delete", "ok", None)
    got = store.recorded_resources()
    assert [r["address"] for r in got] == ["a/site", "b/site"]
    assert got[1]["resource"] == {"kind": "deployment", "v": 2}
    assert (got[1]["op"], got[1]["outcome"], got[1]["serial"]) == ("update", "failed", 3)


def test_applied_fleet_returns_the_exact_bytes_of_the_latest(store: SqliteStateStore) -> None:
    assert store.applied_fleet() is None
    first = {"fleet.yaml": b"a: 1\n", "directives/d.yaml.sig": b"\x00\xffsig"}
    second = {"fleet.yaml": b"a: 2\n"}
    with store.lock("apply") as lease:
        store.record_applied_fleet(lease, first)
        serial = store.record_applied_fleet(lease, second)
    applied = store.applied_fleet()
    assert applied is not None
    assert applied.serial == serial == 2
    assert dict(applied.files) == second


def test_an_altered_applied_fleet_is_refused(store: SqliteStateStore, db_path: Path) -> None:
    with store.lock("apply") as lease:
        store.record_applied_fleet(lease, {"eu.yaml": b"models: [a]\n"})
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE applied_fleet_file SET data = ?", (b"models: [a, b]\n",))
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="does not match its digest"):
        store.applied_fleet()


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.yaml", "a/../../b", ""])
def test_applied_fleet_names_must_stay_inside_the_fleet(store: SqliteStateStore, name: str) -> None:
    with store.lock("apply") as lease, pytest.raises(StateError, match="fleet-relative"):
        store.record_applied_fleet(lease, {name: b"x"})
    assert store.serial() == 0


def test_bad_change_values_are_refused_before_anything_is_written(
    store: SqliteStateStore,
) -> None:
    with store.lock("apply") as lease:
        with pytest.raises(StateError, match="address"):
            store.record_change(lease, "", "create", "ok", {})
        with pytest.raises(StateError, match="not JSON"):
            store.record_change(lease, "a", "create", "ok", {"x": float("nan")})
    assert store.serial() == 0


def test_a_second_lock_in_the_same_process_names_the_holder(store: SqliteStateStore) -> None:
    with store.lock("apply") as lease:
        with pytest.raises(StateLockedError) as info:
            with store.lock("plan"):
                pass
        assert info.value.exit_code == 4
        assert f"pid {lease.pid}" in info.value.message
        assert "'apply'" in info.value.message
        assert f"{lease.user}@{lease.host}" in info.value.message
    with store.lock("plan"):  # released on exit: free again
        pass


def test_a_writer_without_the_lease_cannot_write(store: SqliteStateStore, db_path: Path) -> None:
    with store.lock("apply") as lease:
        pass
    with pytest.raises(StateError, match="no longer holds"):
        store.record_change(lease, "a", "create", "ok", {})
    other = SqliteStateStore(db_path)
    with store.lock("apply") as old:
        raw = sqlite3.connect(db_path)
        raw.execute("UPDATE lock SET holder_id = 'someone-else'")
        raw.commit()
        raw.close()
        with pytest.raises(StateError, match="no longer holds"):
            other.record_applied_fleet(old, {"a.yaml": b""})
        assert old.lost
    assert store.serial() == 0
    other.close()


def test_an_expired_lease_cannot_write(db_path: Path) -> None:
    store = SqliteStateStore(db_path, lease_seconds=60)
    with store.lock("apply") as lease:
        raw = sqlite3.connect(db_path)
        raw.execute("UPDATE lock SET expires_at = '2000-01-01T00:00:00.000000Z'")
        raw.commit()
        raw.close()
        with pytest.raises(StateError, match="expired"):
            store.record_change(lease, "a", "create", "ok", {})
    assert store.serial() == 0
    store.close()


def test_the_heartbeat_keeps_a_short_lease_alive(db_path: Path) -> None:
    store = SqliteStateStore(db_path, lease_seconds=0.3)
    with store.lock("apply") as lease:
        first = lease.expires_at
        time.sleep(0.8)
        assert lease.expires_at > first
        assert store.record_change(lease, "a", "create", "ok", {}) == 1
    store.close()


def test_the_file_is_in_wal_mode(store: SqliteStateStore, db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_open_store_default_creates_the_state_beside_the_fleet(tmp_path: Path) -> None:
    fleet = tmp_path / "regions"
    store: StateStore = open_store(None, fleet)
    assert (fleet / ".sovereign" / "state.db").is_file()
    assert store.url == f"sqlite:///{(fleet / '.sovereign' / 'state.db').resolve()}"
    store.close()


def test_open_store_without_create_refuses_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state at"):
        open_store(None, tmp_path, create=False)
    assert not (tmp_path / ".sovereign").exists()


def test_readers_report_a_damaged_store_instead_of_recreating_it(
    store: SqliteStateStore, db_path: Path
) -> None:
    store.audit.append("plan.created", {})
    raw = sqlite3.connect(db_path)
    raw.execute("DELETE FROM meta")
    raw.execute("DELETE FROM audit")
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="no 'lineage'"):
        SqliteStateStore(db_path, create=False)
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 0  # nothing written
    raw.execute("INSERT INTO audit VALUES (1, 't', 'k', '{}', 'p', 'h')")
    raw.commit()
    raw.close()
    with pytest.raises(StateError, match="damaged"):
        SqliteStateStore(db_path)  # even a writer refuses to paper over it


def test_an_empty_sqlite_file_is_not_a_state_for_readers(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StateError, match="exists but cannot be read"):
        SqliteStateStore(empty, create=False)


def test_writers_never_create_over_an_unreadable_store(tmp_path: Path) -> None:
    """The state as an anchor (docs/state.md): an emptied file, another SQLite database, or
    an object-store prefix that lost its state object are refused by writers, named."""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StateError, match="exists but cannot be read .the file is empty"):
        SqliteStateStore(empty)
    assert empty.read_bytes() == b""
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (x TEXT)")
    conn.close()
    with pytest.raises(StateError, match="exists but cannot be read .missing tables"):
        SqliteStateStore(other)


def test_a_file_that_is_not_sqlite_is_a_state_error(tmp_path: Path) -> None:
    bad = tmp_path / "state.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="cannot"):
        open_store(str(bad), tmp_path)


def test_the_default_store_never_imports_a_cloud_sdk(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from orchestrator.state import open_store; "
        f"s = open_store(None, Path({str(tmp_path)!r})); s.audit.append('plan.created', {{}}); "
        "s.audit.verify(); sdks = ('boto3', 'botocore', 'google'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in sdks))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_applied_fleet_is_found_by_its_digest(store: SqliteStateStore) -> None:
    from orchestrator.fleet.digest import fleet_digest

    first = {"fleet.yaml": b"a: 1\n"}
    second = {"fleet.yaml": b"a: 2\n"}
    with store.lock("apply") as lease:
        store.record_applied_fleet(lease, first)
        store.record_applied_fleet(lease, second)
    old = store.applied_fleet_of(fleet_digest(first))
    assert old is not None and old.serial == 1 and dict(old.files) == first
    new = store.applied_fleet_of(fleet_digest(second))
    assert new is not None and new.serial == 2
    assert store.applied_fleet_of("0" * 64) is None


def test_runs_creating_one_store_at_once_share_it(tmp_path: Path) -> None:
    """A new store appears whole (built beside it, then linked into place): runs that create
    it at the same moment all open the same store, and none meets a half-created file."""
    import threading

    path = tmp_path / "fresh" / "state.db"
    lineages: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def create() -> None:
        start.wait()
        try:
            store = SqliteStateStore(path)
            lineages.append(store.lineage())
            store.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(lineages)) == 1 and len(lineages) == 6
    store = SqliteStateStore(path)
    assert store.audit.verify().entries == 1
    store.close()
    assert sorted(p.name for p in path.parent.iterdir() if "creating" in p.name) == []
