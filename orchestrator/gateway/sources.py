"""Where the gateway's fleet comes from, and how it notices that it changed.

In production the gateway serves the fleet that was last *applied*, read back from the state
store and re-verified (signatures included) before it is compiled: a file edited in the working
tree but never applied is never served. ``marker`` is the cheap question asked every reload
interval (the state serial); ``load`` is the expensive answer, asked only when the marker moved.
A source may also offer a ``change_signal`` (see ``changes``): an even cheaper question, asked
every few milliseconds, so that an apply reaches the gateway well before the next interval.

Drained sites (docs/runbooks.md) and API key records (docs/identity.md) come from the state
too: ``drains`` and ``api_keys`` are read with every load, and the marker of an applied fleet
moves when either does, so a drain, a new key or a revoked one reaches the gateway within one
reload interval.

For development ``WorkingFleetSource`` serves the fleet directory as it is on disk and reloads
when its files change; ``StaticSource`` holds a fleet in memory (tests, the demo).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from orchestrator.errors import StateError
from orchestrator.fleet.drain import NO_DRAINS, Drains
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.changes import (
    ChangeSignal,
    CounterSignal,
    PolledVersion,
    SqliteDataVersion,
)
from orchestrator.planning.trust import check_pinned_authorities
from orchestrator.state.apikeys import NO_KEYS, ApiKeys
from orchestrator.state.base import StateReader

__all__ = [
    "AppliedFleetSource",
    "FleetSource",
    "LoadedFleet",
    "StaticSource",
    "WorkingFleetSource",
    "api_keys_of",
]

LoadedFleet = tuple[Fleet, int | None]  # the fleet, and the state serial it was applied under

_FLEET_SUFFIXES = (".yaml", ".yml", ".sig")


class FleetSource(Protocol):
    label: str

    def marker(self) -> Hashable:
        """Cheap; a different value means ``load`` may return another fleet."""
        ...

    def load(self) -> LoadedFleet:
        """The fleet to serve, fully validated; raises ``SovereignError`` if there is none."""
        ...

    def drains(self) -> Drains:
        """The sites to leave out of routing (docs/runbooks.md)."""
        ...


def api_keys_of(source: FleetSource) -> ApiKeys:
    """The API key records the source offers (sources need not: then none)."""
    read = getattr(source, "api_keys", None)
    keys: ApiKeys = read() if callable(read) else NO_KEYS
    return keys


def change_signal(source: FleetSource) -> ChangeSignal | None:
    """The source's fast change signal, if it has one (sources need not)."""
    make = getattr(source, "change_signal", None)
    signal: ChangeSignal | None = make() if callable(make) else None
    return signal


_SQLITE_PREFIX = "sqlite:///"


def _now() -> datetime:
    return datetime.now(UTC)


class AppliedFleetSource:
    """The fleet last recorded by ``sovereign apply`` in the state store."""

    def __init__(
        self,
        reader: StateReader,
        fleet_from_files: Callable[[Mapping[str, bytes]], Fleet],
        *,
        object_signal_interval_s: float = 0.05,
    ) -> None:
        self.reader = reader
        self.object_signal_interval_s = object_signal_interval_s
        self.label = f"applied fleet in {reader.url}"
        self._fleet_from_files = fleet_from_files
        self._last: tuple[str, Fleet] | None = None
        self._lineage: str | None = None  # of the state the first load read
        self.state_serial: int | None = None  # the state's serial when last asked (/healthz)

    def marker(self) -> Hashable:
        self.state_serial = self.reader.serial()
        return (self.state_serial, self.reader.drains().version, self.api_keys().version)

    def drains(self) -> Drains:
        return self.reader.drains()

    def api_keys(self) -> ApiKeys:
        """API key records (docs/identity.md): a create or revoke moves the marker."""
        return self.reader.api_keys()

    def change_signal(self) -> ChangeSignal | None:
        """SQLite's ``data_version`` for a state file; for S3/GCS the version of the state
        object, polled every ``object_signal_interval_s`` on a thread (0: no signal, the serial
        is read every reload interval only)."""
        url = self.reader.url
        if not url.startswith(_SQLITE_PREFIX):
            read = getattr(self.reader, "state_version", None)
            if not callable(read) or self.object_signal_interval_s <= 0:
                return None
            return PolledVersion(read, self.object_signal_interval_s)
        try:
            return SqliteDataVersion(Path(url[len(_SQLITE_PREFIX) :]))
        except Exception:  # noqa: BLE001 - no signal only means the interval poll alone
            return None

    def load(self) -> LoadedFleet:
        lineage = self.reader.lineage()
        if self._lineage is None:
            self._lineage = lineage
        elif lineage != self._lineage:
            # The state was replaced under the gateway (wiped and re-created): what it says now
            # is not the record the gateway started from; keep the last good table.
            raise StateError(
                f"the state at {self.reader.url} was replaced (lineage {self._lineage} -> "
                f"{lineage}): its fleet is not served",
                hint="restore the state the gateway started with, or restart the gateway on "
                "purpose (docs/gitops.md, pin the state: its lineage)",
            )
        applied = self.reader.applied_fleet()
        if applied is None:
            raise StateError(
                f"nothing has been applied yet in {self.reader.url}",
                hint="run `sovereign apply` first (or pass --serve-working-fleet to serve the "
                "fleet directory as it is, for development)",
            )
        digest = applied.digest  # the one fleet digest, verified by the store on read
        if self._last is not None and self._last[0] == digest:
            # The serial moved for another reason (a recorded change): same verified files.
            return self._last[1], applied.serial
        fleet = self._fleet_from_files(applied.files)
        # Authority sets are a trust root: a recorded fleet whose sets are not the pinned ones
        # (a state written behind apply's back) is never served; the reload keeps the last
        # good table. Its own directives count as applied, so no rotation is taken from it.
        _, problems = check_pinned_authorities(
            fleet, applied.files, self.reader.pinned_authorities(), fleet.directives, _now()
        )
        if problems:
            raise StateError(
                "the applied fleet in "
                f"{self.reader.url} is not served: " + "; ".join(p.message for p in problems),
                hint="only `sovereign apply` records a fleet, after checking its authority sets "
                "against the pins; the state was written some other way",
            )
        self._last = (digest, fleet)
        return fleet, applied.serial


class WorkingFleetSource:
    """The fleet directory as it is on disk (development only: not what was applied)."""

    def __init__(
        self,
        fleet_dir: Path,
        load_fleet: Callable[[Path], Fleet],
        keys_from: StateReader | None = None,
    ) -> None:
        self.fleet_dir = fleet_dir
        self.label = f"working fleet {fleet_dir}"
        self._load_fleet = load_fleet
        self._keys_from = keys_from  # a state holding API keys, when there is one

    def api_keys(self) -> ApiKeys:
        return self._keys_from.api_keys() if self._keys_from is not None else NO_KEYS

    def marker(self) -> Hashable:
        entries: list[tuple[str, int, int]] = []
        for path in self.fleet_dir.rglob("*"):
            rel = path.relative_to(self.fleet_dir)
            if rel.parts and rel.parts[0].startswith("."):
                continue  # .sovereign/ (state, local sites) is not fleet input
            if path.suffix in _FLEET_SUFFIXES and path.is_file():
                st = path.stat()
                entries.append((rel.as_posix(), st.st_mtime_ns, st.st_size))
        return (tuple(sorted(entries)), self.api_keys().version)

    def load(self) -> LoadedFleet:
        return self._load_fleet(self.fleet_dir), None

    def drains(self) -> Drains:
        return NO_DRAINS


class StaticSource:
    """A fleet held in memory; ``set`` replaces it (the gateway picks it up on its next poll)."""

    def __init__(self, fleet: Fleet, label: str = "in-memory fleet") -> None:
        self.label = label
        self._lock = threading.Lock()
        self._fleet = fleet
        self._generation = 0
        self._failure: Exception | None = None
        self._drains = NO_DRAINS
        self._keys = NO_KEYS

    def set(self, fleet: Fleet) -> None:
        with self._lock:
            self._fleet = fleet
            self._failure = None
            self._generation += 1

    def set_drains(self, drains: Drains) -> None:
        with self._lock:
            self._drains = drains
            self._generation += 1

    def drains(self) -> Drains:
        with self._lock:
            return self._drains

    def set_api_keys(self, keys: ApiKeys) -> None:
        with self._lock:
            self._keys = keys
            self._generation += 1

    def api_keys(self) -> ApiKeys:
        with self._lock:
            return self._keys

    def fail_next(self, error: Exception) -> None:
        """Make the next load fail with ``error`` (to check a failed reload keeps the old
        table)."""
        with self._lock:
            self._failure = error
            self._generation += 1

    def marker(self) -> Hashable:
        return self._generation

    def change_signal(self) -> ChangeSignal:
        return CounterSignal(lambda: self._generation)

    def load(self) -> LoadedFleet:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            return self._fleet, self._generation
