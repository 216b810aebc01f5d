"""Change signals: how a gateway learns within milliseconds that a new fleet was applied.

Reading the state serial is cheap but not free (a read transaction; on S3 or GCS an HTTP
request), so the gateway asks it only every ``--reload-interval`` (0.5 s). A directive must
reach every gateway faster than that, so sources that can offer a *cheaper* question do:

- SQLite: ``PRAGMA data_version`` on a connection of our own. SQLite changes the value whenever
  another connection (in this process or any other) commits to the file, and reading it costs a
  few microseconds, so it is asked every ``signal_interval_s`` (10 ms) on the event loop.
- S3 / GCS: the version (ETag / generation) of ``state.json``, which every recorded step
  rewrites, read without its data (a HEAD / metadata request) every ``--signal-interval``
  (50 ms) by ``PolledVersion`` on a thread of its own: a network request never runs on the
  event loop, and ``changed()`` only reads the flag that thread sets.
- ``StaticSource`` (tests, the demo): its generation counter.

A signal only triggers the usual reload (serial read, load, verify, compile); it never decides
what is served. A signal that is missed, broken or absent costs speed, never safety: the serial
is still read every reload interval, so a gateway never serves an outdated table for longer
than that interval (the old guarantee).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Protocol

__all__ = ["ChangeSignal", "CounterSignal", "PolledVersion", "SqliteDataVersion"]

MAX_BACKOFF_S = 5.0  # a failing version read is retried at most this far apart


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


class PolledVersion:
    """Fires when a version read through ``read`` (a network request) moved.

    ``read`` runs every ``interval_s`` on a daemon thread of its own; ``changed()`` only reads
    and clears the flag it sets. The first read fires too: the gateway loaded its table before
    this thread started, and a commit in between must not wait for the interval (a false alarm
    costs one serial read). A failed read raises the flag
    (the reload then reads the state and reports what is wrong) and the thread backs off,
    doubling up to ``MAX_BACKOFF_S``; the next successful read compares against the last
    version seen. ``close()`` stops the thread and joins it.
    """

    def __init__(self, read: Callable[[], Hashable], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self._read = read
        self._interval_s = interval_s
        self._fired = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="sovereign-state-signal", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        seen: Hashable = None
        known = False  # no version seen yet: the first successful read fires
        wait = self._interval_s
        while True:
            try:
                version = self._read()
            except Exception:  # noqa: BLE001 - any failure: let the reload say what is wrong
                self._fired.set()
                wait = min(max(wait * 2, self._interval_s), MAX_BACKOFF_S)
            else:
                if not known or version != seen:
                    self._fired.set()
                seen, known = version, True
                wait = self._interval_s
            if self._stop.wait(wait):
                return

    def changed(self) -> bool:
        if not self._fired.is_set():
            return False
        self._fired.clear()
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
