"""Change signals: how a gateway learns within milliseconds that a new fleet was applied.

Reading the state serial is cheap but not free (a read transaction; on S3 or GCS an HTTP
request), so the gateway asks it only every ``--reload-interval`` (0.5 s). A directive must
reach every gateway faster than that, so sources that can offer a *cheaper* question do:

- SQLite: ``PRAGMA data_version`` on a connection of our own. SQLite changes the value whenever
  another connection (in this process or any other) commits to the file, and reading it costs a
  few microseconds, so it is asked every ``signal_interval_s`` (10 ms) on the event loop.
- ``StaticSource`` (tests, the demo): its generation counter.

A signal only triggers the usual reload (serial read, load, verify, compile); it never decides
what is served. A signal that is missed, broken or absent costs speed, never safety: the serial
is still read every reload interval, so a gateway never serves an outdated table for longer
than that interval (the old guarantee).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = ["ChangeSignal", "CounterSignal", "SqliteDataVersion"]


class ChangeSignal(Protocol):
    def changed(self) -> bool:
        """Cheap and non-blocking; True when the source may hold a new fleet since the last
        call (a false alarm is harmless: the gateway then reads the serial, finds it equal)."""
        ...

    def close(self) -> None: ...


class SqliteDataVersion:
    """``PRAGMA data_version`` of an SQLite file, on a read-only connection of our own."""

    def __init__(self, path: Path) -> None:
        # Read-only and autocommit: this connection never takes a lock a writer would wait on.
        self._conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        self._version = self._read()

    def _read(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        try:
            version = self._read()
        except sqlite3.Error:
            return True  # let the reload say what is wrong (it reports and keeps the table)
        if version == self._version:
            return False
        self._version = version
        return True

    def close(self) -> None:
        self._conn.close()


class CounterSignal:
    """Fires when a counter (read through ``read``) moved since the last call."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read
        self._seen = read()

    def changed(self) -> bool:
        value = self._read()
        if value == self._seen:
            return False
        self._seen = value
        return True

    def close(self) -> None:
        pass
