"""A separate process that uses a state store, so tests can race, stop and SIGKILL real holders.

Run as ``python -m tests.state.worker COMMAND DB [ARGS]``; it prints one line per step so the
test can wait for a precise point before it acts.

    hold DB LEASE_SECONDS     take the lock, print "locked", then on each stdin line record one
                              change and print "recorded SERIAL" (or "lost" and exit 5)
    race DB GO_FILE           wait until GO_FILE exists, try the lock; hold it 1.5 s if won
    writer DB                 take the lock and record changes forever, printing each serial
    open-txn DB               record one change, then hang inside an open write transaction
Exit 4 with the error on stderr when the lock is held by someone else (like the CLI).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

from orchestrator.errors import StateError, StateLockedError
from orchestrator.state import open_store


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def hold(db: str, lease_seconds: float) -> int:
    store = open_store(db, Path("."), lease_seconds=lease_seconds)
    with store.lock("apply") as lease:
        say(f"locked {lease.holder_id}")
        n = 0
        for _ in sys.stdin:
            n += 1
            try:
                serial = store.record_change(lease, f"held/{n}", "create", "ok", {"n": n})
            except StateError as exc:
                say(f"lost {exc.message}")
                return 5
            say(f"recorded {serial}")
    return 0


def race(db: str, go_file: str) -> int:
    store = open_store(db, Path("."))
    while not os.path.exists(go_file):
        time.sleep(0.005)
    with store.lock("race"):
        say("won")
        time.sleep(1.5)
    return 0


def writer(db: str) -> int:
    store = open_store(db, Path("."))
    with store.lock("apply") as lease:
        n = 0
        while True:
            n += 1
            serial = store.record_change(lease, f"w/{n:06d}", "create", "ok", {"n": n})
            store.audit.append("change.applied", {"address": f"w/{n:06d}", "serial": serial})
            say(f"serial {serial}")


def open_txn(db: str) -> int:
    store = open_store(db, Path("."))
    with store.lock("apply") as lease:
        store.record_change(lease, "before/crash", "create", "ok", {"kept": True})
        raw = sqlite3.connect(db, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("UPDATE meta SET value = '999' WHERE key = 'serial'")
        raw.execute("DELETE FROM resources")
        raw.execute(
            "INSERT INTO audit (seq, ts, kind, payload, prev_hash, hash) "
            "VALUES (1000, 'x', 'half', '{}', 'x', 'x')"
        )
        say("in-transaction")
        time.sleep(600)
    return 0


def main(argv: list[str]) -> int:
    command, db, *rest = argv
    try:
        if command == "hold":
            return hold(db, float(rest[0]))
        if command == "race":
            return race(db, rest[0])
        if command == "writer":
            return writer(db)
        if command == "open-txn":
            return open_txn(db)
    except StateLockedError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.exit_code
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
