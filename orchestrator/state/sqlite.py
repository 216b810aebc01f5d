"""The default state store: one SQLite file, one transaction per recorded step.

Why SQLite: it is embedded (nothing to run), and with WAL plus ``synchronous=FULL`` a committed
transaction survives a killed process or a power cut, while an uncommitted one leaves no trace.
Every recorded step (a change, the applied fleet, an audit entry, a lock hand-over) is exactly
one ``BEGIN IMMEDIATE ... COMMIT``, so a crash between steps loses nothing that was recorded and
never leaves a step half-recorded.

Tables::

    meta           key -> value: lineage (uuid, set once), serial, audit head (seq, hash)
    resources      address -> resource json, last op, outcome, serial of that change
    applied_fleet  serial -> digest, time; applied_fleet_file: (serial, path) -> bytes
    audit          seq -> ts, kind, payload (canonical json), prev_hash, hash
    lock           the single row (id = 1) of the current lease, absent when free

``serial`` works like Terraform's: it increases by one on every recorded change, so a saved
plan can tell whether the state moved since it was made.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.errors import AuditError, StateError
from orchestrator.fleet.digest import fleet_digest
from orchestrator.state.audit import (
    GENESIS_HASH,
    STATE_CREATED,
    AuditEntry,
    AuditHead,
    AuditReport,
    StoredEntry,
    make_entry,
    parse_entry,
    verify_chain,
)
from orchestrator.state.base import AppliedFleet
from orchestrator.state.lease import (
    DEFAULT_LEASE_SECONDS,
    Lease,
    hold_lease,
    iso_utc,
    locked_error,
    lost_error,
    new_lease,
    parse_time,
    takeover_reason,
)
from orchestrator.state.records import check_change, check_fleet_files, verified_applied_fleet

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
    address TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    last_op TEXT NOT NULL,
    outcome TEXT NOT NULL,
    serial INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS applied_fleet (
    serial INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS applied_fleet_file (
    serial INTEGER NOT NULL REFERENCES applied_fleet(serial),
    path TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (serial, path)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    user TEXT NOT NULL,
    operation TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""

TABLES = frozenset({"meta", "resources", "applied_fleet", "applied_fleet_file", "audit", "lock"})
SCHEMA_VERSION = "1"
BUSY_TIMEOUT_MS = 10_000


class SqliteAuditLog:
    """The audit chain in the ``audit`` table; the head lives in ``meta`` (same transaction)."""

    def __init__(self, store: SqliteStateStore) -> None:
        self._store = store

    def append(self, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        try:
            with self._store._write() as conn:
                return append_in(conn, kind, payload)
        except StateError as exc:
            raise AuditError(
                f"cannot append to the audit log ({kind}): {exc.message}",
                hint="the operation stops here: nothing is done without an audit record",
            ) from exc

    def _stored(self) -> tuple[list[StoredEntry], AuditHead | None]:
        with self._store._read() as conn:
            rows = conn.execute(
                "SELECT seq, ts, kind, payload, prev_hash, hash FROM audit ORDER BY seq"
            ).fetchall()
            head = read_head(conn)
        # Raw edits can leave blobs or numbers in text columns: compare them as text, so that
        # verify reports an edited entry instead of failing on a type.
        return [StoredEntry(int(seq), *(_text(v) for v in rest)) for seq, *rest in rows], head

    def entries(self) -> list[AuditEntry]:
        stored, _ = self._stored()
        return [parse_entry(e) for e in stored]

    def verify(self) -> AuditReport:
        try:
            stored, head = self._stored()
        except sqlite3.Error as exc:  # a mangled row type is a tampered log, not a crash
            raise AuditError(f"cannot read the audit log: {exc}") from exc
        return verify_chain(stored, head)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace") + "\x00(blob)"
    return str(value)


def read_head(conn: sqlite3.Connection) -> AuditHead | None:
    rows = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('audit_head_seq', 'audit_head_hash')"
        ).fetchall()
    )
    if "audit_head_seq" not in rows or "audit_head_hash" not in rows:
        return None
    return AuditHead(int(rows["audit_head_seq"]), str(rows["audit_head_hash"]))


def append_in(conn: sqlite3.Connection, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
    """Append inside the caller's open write transaction (entry and head move together)."""
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    entry, text = make_entry(seq, kind, payload, prev)
    conn.execute(
        "INSERT INTO audit (seq, ts, kind, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
        (entry.seq, entry.ts, entry.kind, text, entry.prev_hash, entry.hash),
    )
    conn.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [("audit_head_seq", str(entry.seq)), ("audit_head_hash", entry.hash)],
    )
    return entry


class SqliteStateStore:
    """State in one SQLite file. Thread-safe; many processes may open the same file."""

    def __init__(
        self, path: Path, *, create: bool = True, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        self.path = path.resolve()
        self.url = f"sqlite:///{self.path}"
        self.lease_seconds = lease_seconds
        self._mutex = threading.RLock()
        if not self.path.exists():
            if not create:
                raise StateError(
                    f"no state at {self.path}",
                    hint="nothing was applied with this state yet; check --fleet and --state",
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create {self.path.parent}: {exc}") from exc
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateError(f"cannot put {self.path} in WAL mode (got {mode})")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot open the state database {self.path}: {exc}",
                hint="is it an SQLite file, readable and writable by you?",
            ) from exc
        try:
            self._init_schema(create)
        except StateError:
            self._conn.close()
            raise
        self.audit = SqliteAuditLog(self)

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the writer lock of the file, taken up front."""
        with self._mutex:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StateError(f"cannot write the state database {self.path}: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise StateError(f"cannot write the state database {self.path}: {exc}") from exc
            except BaseException:
                self._rollback(conn)
                raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite may already have rolled back on its own (disk full, I/O error).
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so multi-statement reads see one snapshot."""
        with self._mutex:
            conn = self._conn
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateError(f"cannot read the state database {self.path}: {exc}") from exc

    def _init_schema(self, create: bool) -> None:
        if not create:
            # Readers never write: a damaged store must be reported, not quietly re-created.
            with self._read() as conn:
                tables = {
                    str(row[0])
                    for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                }
                missing = sorted(TABLES - tables)
                if missing:
                    raise StateError(
                        f"{self.path} is not a Sovereign state database "
                        f"(missing tables: {', '.join(missing)})"
                    )
                self._meta(conn, "lineage")
            return
        with self._write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            have = conn.execute("SELECT value FROM meta WHERE key = 'lineage'").fetchone()
            if have is None:
                leftovers = conn.execute(
                    "SELECT (SELECT COUNT(*) FROM meta) + (SELECT COUNT(*) FROM audit)"
                ).fetchone()[0]
                if leftovers:
                    raise StateError(
                        f"the state database {self.path} has records but no lineage: it is damaged",
                        hint="restore it from a backup; run `sovereign audit verify` on the copy",
                    )
                lineage = str(uuid.uuid4())
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("lineage", lineage), ("serial", "0"), ("schema", SCHEMA_VERSION)],
                )
                # The log starts with the store, so an emptied log is told from a new one.
                append_in(conn, STATE_CREATED, {"lineage": lineage, "backend": "sqlite"})

    def close(self) -> None:
        with self._mutex:
            self._conn.close()

    def __enter__(self) -> SqliteStateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads ------------------------------------------------------------------------------

    def _meta(self, conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StateError(f"the state database {self.path} has no {key!r}: it is damaged")
        return str(row[0])

    def serial(self) -> int:
        with self._read() as conn:
            return int(self._meta(conn, "serial"))

    def lineage(self) -> str:
        with self._read() as conn:
            return self._meta(conn, "lineage")

    def applied_fleet(self) -> AppliedFleet | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT serial, digest FROM applied_fleet ORDER BY serial DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            serial, digest = int(row[0]), str(row[1])
            files = {
                str(path): bytes(data)
                for path, data in conn.execute(
                    "SELECT path, data FROM applied_fleet_file WHERE serial = ?", (serial,)
                )
            }
        return verified_applied_fleet(serial, files, digest)

    def recorded_resources(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT address, resource, last_op, outcome, serial, updated_at "
                "FROM resources ORDER BY address"
            ).fetchall()
        return [
            {
                "address": address,
                "resource": json.loads(resource),
                "op": op,
                "outcome": outcome,
                "serial": serial,
                "updated_at": updated_at,
            }
            for address, resource, op, outcome, serial, updated_at in rows
        ]

    def current_lock(self) -> Lease | None:
        """The lease currently recorded (held, expired or stale), for status displays."""
        with self._read() as conn:
            return self._lock_row(conn)

    # --- the lock ---------------------------------------------------------------------------

    @staticmethod
    def _lock_row(conn: sqlite3.Connection) -> Lease | None:
        row = conn.execute(
            "SELECT holder_id, pid, host, user, operation, acquired_at, expires_at "
            "FROM lock WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        holder_id, pid, host, user, operation, acquired_at, expires_at = row
        return Lease(
            str(holder_id),
            int(pid),
            str(host),
            str(user),
            str(operation),
            parse_time(acquired_at),
            parse_time(expires_at),
        )

    def _acquire(self, operation: str) -> Lease:
        if not isinstance(operation, str) or not operation:
            raise StateError("lock: operation must be a non-empty string")
        with self._write() as conn:
            now = datetime.now(UTC)
            holder = self._lock_row(conn)
            if holder is not None:
                reason = takeover_reason(holder, now)
                if reason is None:
                    raise locked_error(holder)
            lease = new_lease(operation, self.lease_seconds, now)
            if holder is not None:
                append_in(
                    conn,
                    "lock.broken",
                    {"holder": holder.to_json(), "reason": reason, "by": lease.to_json()},
                )
            conn.execute(
                "INSERT OR REPLACE INTO lock (id, holder_id, pid, host, user, operation, "
                "acquired_at, expires_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lease.holder_id,
                    lease.pid,
                    lease.host,
                    lease.user,
                    lease.operation,
                    iso_utc(lease.acquired_at),
                    iso_utc(lease.expires_at),
                ),
            )
        return lease

    def _renew(self, lease: Lease) -> bool:
        expires = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE lock SET expires_at = ? WHERE id = 1 AND holder_id = ?",
                (iso_utc(expires), lease.holder_id),
            )
            ours = cur.rowcount == 1
        if ours:
            lease.expires_at = expires
        return ours

    def _release(self, lease: Lease) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM lock WHERE id = 1 AND holder_id = ?", (lease.holder_id,))

    def lock(self, operation: str) -> AbstractContextManager[Lease]:
        return hold_lease(
            lambda: self._acquire(operation), self._renew, self._release, self.lease_seconds
        )

    def _check_lease(self, conn: sqlite3.Connection, lease: Lease) -> None:
        if lease.lost:
            raise lost_error(lease, "its heartbeat found the lock taken over")
        holder = self._lock_row(conn)
        if holder is None or holder.holder_id != lease.holder_id:
            lease.lost = True
            why = f"now held by {holder.describe()}" if holder else "the lock was released"
            raise lost_error(lease, why)
        if holder.expires_at <= datetime.now(UTC):
            raise lost_error(lease, f"its lease expired at {iso_utc(holder.expires_at)}")

    # --- recorded steps ---------------------------------------------------------------------

    def _bump_serial(self, conn: sqlite3.Connection) -> int:
        serial = int(self._meta(conn, "serial")) + 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'serial'", (str(serial),))
        return serial

    def record_change(
        self, lease: Lease, address: str, op: str, outcome: str, resource: dict[str, Any] | None
    ) -> int:
        text = check_change(address, op, outcome, resource)
        with self._write() as conn:
            self._check_lease(conn, lease)
            serial = self._bump_serial(conn)
            if resource is None:
                conn.execute("DELETE FROM resources WHERE address = ?", (address,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO resources (address, resource, last_op, outcome, "
                    "serial, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (address, text, op, outcome, serial, iso_utc(datetime.now(UTC))),
                )
        return serial

    def record_applied_fleet(self, lease: Lease, files: Mapping[str, bytes]) -> int:
        clean = check_fleet_files(files)
        digest = fleet_digest(clean)
        with self._write() as conn:
            self._check_lease(conn, lease)
            serial = self._bump_serial(conn)
            conn.execute(
                "INSERT INTO applied_fleet (serial, digest, applied_at) VALUES (?, ?, ?)",
                (serial, digest, iso_utc(datetime.now(UTC))),
            )
            conn.executemany(
                "INSERT INTO applied_fleet_file (serial, path, data) VALUES (?, ?, ?)",
                [(serial, path, data) for path, data in sorted(clean.items())],
            )
        return serial
