"""The audit chain in the ``audit`` table; its head lives in ``meta``, in the same transaction.

``append_in`` appends inside a caller's open write transaction, so a step and its audit entry
(the store's genesis, a lock hand-over) commit together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from orchestrator.errors import AuditError, StateError
from orchestrator.state.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    AuditReport,
    StoredEntry,
    make_entry,
    parse_entry,
    verify_chain,
)
from orchestrator.state.sqlite.database import Database


class SqliteAuditLog:
    """The ``AuditLog`` of a SQLite state."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def append(self, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        try:
            with self._db.write() as conn:
                return append_in(conn, kind, payload)
        except StateError as exc:
            raise AuditError(
                f"cannot append to the audit log ({kind}): {exc.message}",
                hint="the operation stops here: nothing is done without an audit record",
            ) from exc

    def _stored(self) -> tuple[list[StoredEntry], AuditHead | None]:
        with self._db.read() as conn:
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
