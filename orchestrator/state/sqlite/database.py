"""The SQLite file itself: opening it with the right pragmas, its schema, its transactions.

Everything above works through ``write()`` (one ``BEGIN IMMEDIATE`` transaction, the file's
writer lock taken up front) and ``read()`` (one snapshot), so no caller can forget to commit,
to roll back, or to turn an ``sqlite3.Error`` into a ``StateError``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from orchestrator.errors import StateError

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
CREATE TABLE IF NOT EXISTS applied_directive (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL
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


class Database:
    """One connection to the state file, shared by threads under a mutex."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path.resolve()
        self._mutex = threading.RLock()
        # Whether a file was there before this open: a writer creates a store only where none
        # exists (docs/state.md, the state as an anchor).
        self.existed = self.path.exists()
        if self.existed and self.path.is_file() and self.path.stat().st_size == 0:
            # An emptied file (`: > state.db`): SQLite would take it for a new database and
            # write one over it. Refused before it is even opened.
            from orchestrator.state.records import unreadable_store

            raise unreadable_store(self.path, "the file is empty")
        if not self.existed:
            if not create:
                raise StateError(
                    f"no state at {self.path}",
                    hint="nothing was applied with this state yet; check --fleet and --state",
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create {self.path.parent}: {exc}") from exc
        self.read_only = not create and _on_read_only_storage(self.path)
        if self.read_only:
            self._conn = self._open_immutable()
            return
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

    def _open_immutable(self) -> sqlite3.Connection:
        """A reader on a read-only file system: SQLite cannot create the ``-shm`` file WAL
        readers need there, so the file is opened read-only and immutable (nothing can change
        it underneath)."""
        uri = f"file:{quote(str(self.path))}?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot open the state database {self.path} (read-only storage): {exc}",
                hint="is it an SQLite file, readable by you?",
            ) from exc
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
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
    def read(self) -> Iterator[sqlite3.Connection]:
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

    def meta(self, conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StateError(f"the state database {self.path} has no {key!r}: it is damaged")
        return str(row[0])

    def missing_tables(self) -> list[str]:
        """The Sovereign tables this file lacks (read only)."""
        with self.read() as conn:
            tables = {
                str(row[0])
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        return sorted(TABLES - tables)

    def create_tables(self, conn: sqlite3.Connection) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)

    def close(self) -> None:
        with self._mutex:
            self._conn.close()


def _on_read_only_storage(path: Path) -> bool:
    """Whether the state file lies on a read-only file system (a read-only mount of a backup,
    a snapshot): nothing can write it there, so a reader opens it immutable rather than fail
    on the ``-shm`` file it cannot create. Where others may still write (permissions only),
    the normal, locking open is kept."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
