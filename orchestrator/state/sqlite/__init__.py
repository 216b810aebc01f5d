"""The default state store: one SQLite file, one transaction per recorded step.

Why SQLite: it is embedded (nothing to run), and with WAL plus ``synchronous=FULL`` a committed
transaction survives a killed process or a power cut, while an uncommitted one leaves no trace.
Every recorded step (a change, the applied fleet, an audit entry, a lock hand-over) is exactly
one ``BEGIN IMMEDIATE ... COMMIT``, so a crash between steps loses nothing that was recorded and
never leaves a step half-recorded.

Tables::

    meta           key -> value: lineage (uuid, set once), serial, audit head (seq, hash),
                   drains (JSON list) and drains_version
    resources      address -> resource json, last op, outcome, serial of that change
    applied_fleet  serial -> digest, time; applied_fleet_file: (serial, path) -> bytes
    audit          seq -> ts, kind, payload (canonical json), prev_hash, hash
    lock           the single row (id = 1) of the current lease, absent when free

``serial`` works like Terraform's: it increases by one on every recorded change, so a saved
plan can tell whether the state moved since it was made.

Modules: ``database`` (the file, its schema and its transactions), ``audit`` (the hash chain
in the ``audit`` table), ``store`` (the ``StateStore``: reads, the lock, recorded steps).
"""

from orchestrator.state.sqlite.store import SqliteStateStore

__all__ = ["SqliteStateStore"]
