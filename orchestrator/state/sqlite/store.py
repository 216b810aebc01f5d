"""``SqliteStateStore``: the ``StateStore`` on one SQLite file (see the package docstring).

Reads, the lock (one row, taken over only by the rules of ``state.lease``) and the recorded
steps; each step is one write transaction that first checks the caller still holds the lease.

Over 400 lines on purpose: the whole ``StateStore`` on one SQLite file (reads, the lock, each
recorded step), whose parts share one transaction-and-lease argument; the audit log is apart
already (``sqlite/audit.py``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.errors import StateError
from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.drain import Drain, Drains
from orchestrator.fleet.instants import format_utc
from orchestrator.state.apikeys import (
    ApiKey,
    ApiKeys,
    api_keys_from_text,
    api_keys_moved_error,
)
from orchestrator.state.audit import STATE_CREATED, canonical_json
from orchestrator.state.base import (
    AppliedDirective,
    AppliedFleet,
    PinnedAuthorities,
    pins_from_json,
    pins_to_text,
)
from orchestrator.state.lease import (
    DEFAULT_LEASE_SECONDS,
    Lease,
    fenced_error,
    hold_lease,
    locked_error,
    lost_error,
    new_lease,
    takeover_reason,
    unlock_mismatch,
)
from orchestrator.state.records import (
    applied_directive_from_text,
    check_change,
    check_fleet_files,
    drains_from_text,
    drains_moved_error,
    unreadable_store,
    verified_applied_fleet,
)
from orchestrator.state.sqlite.audit import SqliteAuditLog, append_in
from orchestrator.state.sqlite.database import SCHEMA_VERSION, Database


def _create_whole(path: Path) -> None:
    """Create a new store at ``path`` all at once: built (schema, lineage, the log's first
    entry) in a staging file beside it, then linked into place only if nothing is there. So a
    file at ``path`` is always a whole store or something else, never a store half created:
    a writer that meets one without Sovereign's tables refuses it (docs/state.md, the state as
    an anchor), and two runs creating the same store at once both end up using one of them."""
    target = path.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create {target.parent}: {exc}") from exc
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.creating")
    try:
        SqliteStateStore(staging, _staging=True).close()
        try:
            os.link(staging, target)
        except FileExistsError:
            pass  # another run created it first: use theirs
        except OSError as exc:
            raise StateError(f"cannot create the state database {target}: {exc}") from exc
    finally:
        for leftover in (staging, *(Path(f"{staging}{x}") for x in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


class SqliteStateStore:
    """State in one SQLite file. Thread-safe; many processes may open the same file."""

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        _staging: bool = False,
    ) -> None:
        if create and not _staging and not path.exists():
            _create_whole(path)
        self._db = Database(path, create=create)
        self.path = self._db.path
        self.url = f"sqlite:///{self.path}"
        self.lease_seconds = lease_seconds
        try:
            self._init_schema(create)
        except StateError:
            self._db.close()
            raise
        self.audit = SqliteAuditLog(self._db)

    def _init_schema(self, create: bool) -> None:
        if not create:
            # Readers never write: a damaged store must be reported, not quietly re-created.
            missing = self._db.missing_tables()
            if missing:
                raise StateError(
                    f"{self.path} is not a Sovereign state database "
                    f"(missing tables: {', '.join(missing)})"
                )
            with self._db.read() as conn:
                self._db.meta(conn, "lineage")
            return
        if self._db.existed:
            missing = self._db.missing_tables()
            if missing:
                # Empty, truncated, or some other SQLite file: never re-created behind
                # anyone's back (a wiped store would forget applied directives and pins).
                raise unreadable_store(self.path, f"missing tables: {', '.join(missing)}")
        with self._db.write() as conn:
            self._db.create_tables(conn)
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
        self._db.close()

    def __enter__(self) -> SqliteStateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads ------------------------------------------------------------------------------

    def serial(self) -> int:
        with self._db.read() as conn:
            return int(self._db.meta(conn, "serial"))

    def lineage(self) -> str:
        with self._db.read() as conn:
            return self._db.meta(conn, "lineage")

    def applied_fleet(self) -> AppliedFleet | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT serial, digest FROM applied_fleet ORDER BY serial DESC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            return self._applied_at(conn, int(row[0]), str(row[1]))

    def applied_fleet_of(self, digest: str) -> AppliedFleet | None:
        """The fleet applied with this digest (the last time it was), verified; None when
        this state never applied it."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT serial, digest FROM applied_fleet WHERE digest = ? "
                "ORDER BY serial DESC LIMIT 1",
                (digest,),
            ).fetchone()
            if row is None:
                return None
            return self._applied_at(conn, int(row[0]), str(row[1]))

    @staticmethod
    def _applied_at(conn: sqlite3.Connection, serial: int, digest: str) -> AppliedFleet:
        files: dict[str, bytes] = {}
        for path, data in conn.execute(
            "SELECT path, data FROM applied_fleet_file WHERE serial = ?", (serial,)
        ):
            if not isinstance(data, bytes):  # SQLite keeps whatever type was written
                raise StateError(
                    f"the applied fleet recorded at serial {serial} is damaged: "
                    f"{path} is stored as {type(data).__name__}, not the file's bytes",
                    hint="the state database was altered; restore it from a backup, or "
                    "re-apply the fleet to record it again",
                )
            files[str(path)] = data
        return verified_applied_fleet(serial, files, digest)

    def recorded_resources(self) -> list[dict[str, Any]]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT address, resource, last_op, outcome, serial, updated_at "
                "FROM resources ORDER BY address"
            ).fetchall()
        return [
            {
                "address": address,
                "resource": _resource_json(address, resource),
                "op": op,
                "outcome": outcome,
                "serial": serial,
                "updated_at": updated_at,
            }
            for address, resource, op, outcome, serial, updated_at in rows
        ]

    def current_lock(self) -> Lease | None:
        """The lease currently recorded (held, expired or stale), for status displays."""
        with self._db.read() as conn:
            return self._lock_row(conn)

    # --- drains (docs/runbooks.md): in meta, versioned, written without the lease -----------

    @staticmethod
    def _drains_in(conn: sqlite3.Connection) -> Drains:
        rows = dict(
            conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('drains', 'drains_version')"
            ).fetchall()
        )
        return drains_from_text(rows.get("drains"), str(rows.get("drains_version", "0")))

    def drains(self) -> Drains:
        with self._db.read() as conn:
            return self._drains_in(conn)

    def replace_drains(
        self,
        drains: tuple[Drain, ...],
        *,
        expected_version: str,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> Drains:
        new = Drains(drains)  # refuses a site drained twice
        text = canonical_json(new.to_json())
        with self._db.write() as conn:
            current = self._drains_in(conn)
            if current.version != expected_version:
                raise drains_moved_error(self.url)
            version = str(int(current.version) + 1)
            append_in(conn, audit_kind, audit_payload)  # same transaction: both or neither
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("drains", text), ("drains_version", version)],
            )
        return Drains(new.entries, version)

    # --- API keys (docs/identity.md): in meta, versioned, written without the lease ---------

    @staticmethod
    def _api_keys_in(conn: sqlite3.Connection) -> ApiKeys:
        rows = dict(
            conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('api_keys', 'api_keys_version')"
            ).fetchall()
        )
        return api_keys_from_text(rows.get("api_keys"), str(rows.get("api_keys_version", "0")))

    def api_keys(self) -> ApiKeys:
        with self._db.read() as conn:
            return self._api_keys_in(conn)

    def replace_api_keys(
        self,
        keys: tuple[ApiKey, ...],
        *,
        expected_version: str,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> ApiKeys:
        new = ApiKeys(keys)  # refuses a duplicate id or hash
        text = canonical_json(new.to_json())
        with self._db.write() as conn:
            current = self._api_keys_in(conn)
            if current.version != expected_version:
                raise api_keys_moved_error(self.url)
            version = str(int(current.version) + 1)
            append_in(conn, audit_kind, audit_payload)  # same transaction: both or neither
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("api_keys", text), ("api_keys_version", version)],
            )
        return ApiKeys(new.entries, version)

    # --- the lock ---------------------------------------------------------------------------

    @staticmethod
    def _lock_row(conn: sqlite3.Connection) -> Lease | None:
        row = conn.execute(
            "SELECT holder_id, pid, host, user, operation, acquired_at, expires_at "
            "FROM lock WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        names = ("holder_id", "pid", "host", "user", "operation", "acquired_at", "expires_at")
        # a row whose fields do not parse is a lease marked damaged (Lease.from_json)
        return Lease.from_json(dict(zip(names, row, strict=True)), epoch=_lock_epoch(conn))

    @staticmethod
    def _lock_epoch(conn: sqlite3.Connection) -> int:
        return _lock_epoch(conn)

    @staticmethod
    def _bump_lock_epoch(conn: sqlite3.Connection) -> int:
        epoch = SqliteStateStore._lock_epoch(conn) + 1
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('lock_epoch', ?)", (str(epoch),)
        )
        return epoch

    def _acquire(self, operation: str) -> Lease:
        if not isinstance(operation, str) or not operation:
            raise StateError("lock: operation must be a non-empty string")
        with self._db.write() as conn:
            now = datetime.now(UTC)
            holder = self._lock_row(conn)
            if holder is not None:
                reason = takeover_reason(holder, now)
                if reason is None:
                    raise locked_error(holder)
            lease = new_lease(operation, self.lease_seconds, now, self._bump_lock_epoch(conn))
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
                    format_utc(lease.acquired_at, "microseconds"),
                    format_utc(lease.expires_at, "microseconds"),
                ),
            )
        return lease

    def _renew(self, lease: Lease) -> bool:
        expires = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE lock SET expires_at = ? WHERE id = 1 AND holder_id = ?",
                (format_utc(expires, "microseconds"), lease.holder_id),
            )
            ours = cur.rowcount == 1
        if ours:
            lease.expires_at = expires
        return ours

    def _release(self, lease: Lease) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM lock WHERE id = 1 AND holder_id = ?", (lease.holder_id,))

    def lock(self, operation: str) -> AbstractContextManager[Lease]:
        return hold_lease(
            lambda: self._acquire(operation), self._renew, self._release, self.lease_seconds
        )

    def _check_lease(self, conn: sqlite3.Connection, lease: Lease) -> None:
        if lease.lost:
            raise lost_error(lease, "its heartbeat found the lock taken over")
        holder = self._lock_row(conn)
        if holder is None or holder.holder_id != lease.holder_id or holder.damaged:
            lease.lost = True
            why = f"now held by {holder.describe()}" if holder else "the lock was released"
            raise lost_error(lease, why)
        if holder.expires_at <= datetime.now(UTC):
            raise lost_error(
                lease, f"its lease expired at {format_utc(holder.expires_at, 'microseconds')}"
            )
        fence = self._lock_epoch(conn)
        if fence != lease.epoch:
            raise fenced_error(lease, fence)

    def break_lock(self, holder_id: str, *, by: str, reason: str) -> Lease:
        """Remove the lock held by ``holder_id`` (``state unlock --force``), audited in the
        same transaction; the epoch moves on so that holder can never write again."""
        with self._db.write() as conn:
            holder = self._lock_row(conn)
            if holder is None or holder.holder_id != holder_id:
                raise unlock_mismatch(holder, holder_id)
            conn.execute("DELETE FROM lock WHERE id = 1")
            epoch = self._bump_lock_epoch(conn)
            append_in(
                conn,
                "lock.force_unlocked",
                {"holder": holder.to_json(), "by": by, "reason": reason, "epoch": epoch},
            )
        return holder

    # --- recorded steps ---------------------------------------------------------------------

    def _bump_serial(self, conn: sqlite3.Connection) -> int:
        serial = int(self._db.meta(conn, "serial")) + 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'serial'", (str(serial),))
        return serial

    def record_change(
        self, lease: Lease, address: str, op: str, outcome: str, resource: dict[str, Any] | None
    ) -> int:
        text = check_change(address, op, outcome, resource)
        with self._db.write() as conn:
            self._check_lease(conn, lease)
            serial = self._bump_serial(conn)
            if resource is None:
                conn.execute("DELETE FROM resources WHERE address = ?", (address,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO resources (address, resource, last_op, outcome, "
                    "serial, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        address,
                        text,
                        op,
                        outcome,
                        serial,
                        format_utc(datetime.now(UTC), "microseconds"),
                    ),
                )
        return serial

    def record_applied_fleet(
        self,
        lease: Lease,
        files: Mapping[str, bytes],
        directives: Iterable[AppliedDirective] = (),
        pins: Mapping[str, PinnedAuthorities] | None = None,
    ) -> int:
        clean = check_fleet_files(files)
        digest = fleet_digest(clean)
        records = [(d.id, canonical_json(d.to_json())) for d in directives]
        with self._db.write() as conn:
            self._check_lease(conn, lease)
            serial = self._bump_serial(conn)
            if pins is not None:
                self._write_pins(conn, pins)
            conn.execute(
                "INSERT INTO applied_fleet (serial, digest, applied_at) VALUES (?, ?, ?)",
                (serial, digest, format_utc(datetime.now(UTC), "microseconds")),
            )
            conn.executemany(
                "INSERT INTO applied_fleet_file (serial, path, data) VALUES (?, ?, ?)",
                [(serial, path, data) for path, data in sorted(clean.items())],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO applied_directive (id, record) VALUES (?, ?)", records
            )
        return serial

    def applied_directives(self) -> dict[str, AppliedDirective]:
        with self._db.read() as conn:
            have = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'applied_directive'"
            ).fetchone()
            if have is None:  # a store made before rollback protection, opened read-only
                return {}
            rows = conn.execute("SELECT id, record FROM applied_directive ORDER BY id").fetchall()
        return {str(ident): applied_directive_from_text(record) for ident, record in rows}

    # --- pinned authority sets (docs/security.md, authority sets are a trust root) ----------

    @staticmethod
    def _write_pins(conn: sqlite3.Connection, pins: Mapping[str, PinnedAuthorities]) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('pinned_authorities', ?)",
            (pins_to_text(pins),),
        )

    def pinned_authorities(self) -> dict[str, PinnedAuthorities]:
        with self._db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'pinned_authorities'").fetchone()
        if row is None:
            return {}
        try:
            raw = json.loads(row[0])
        except ValueError as exc:
            raise StateError(f"the pinned authority sets in {self.path} are damaged") from exc
        return pins_from_json(raw, str(self.path))

    def replace_pins(
        self,
        lease: Lease,
        pins: Mapping[str, PinnedAuthorities],
        *,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> int:
        with self._db.write() as conn:
            self._check_lease(conn, lease)
            serial = self._bump_serial(conn)
            self._write_pins(conn, pins)
            append_in(conn, audit_kind, audit_payload)  # same transaction: both or neither
        return serial


def _lock_epoch(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'lock_epoch'").fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise StateError(
            f"the state's lock epoch {str(row[0])[:80]!r} is not a number: the state is damaged",
            hint="restore the state from a backup",
        ) from None


def _resource_json(address: object, text: object) -> dict[str, Any]:
    """One recorded resource row's JSON; a damaged row is a ``StateError`` naming it."""
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise StateError(
            f"the recorded resource {address} in the state is damaged (its record is not a "
            f"JSON object: {str(text)[:80]!r})",
            hint="the state was altered; restore it from a backup, or delete that row and let "
            "the next `sovereign plan` observe the site again",
        )
    return value
