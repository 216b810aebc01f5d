"""The state store interface: what was applied, under a serial, behind a lock.

The default backend is SQLite (``.sovereign/state.db`` beside the fleet); object-storage
backends keep the same interface. The gateway reads only ``serial`` and ``applied_fleet``:
it serves exactly the fleet that was last applied, re-verifying its signatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.fleet.drain import Drain, Drains
from orchestrator.state.audit import AuditLog
from orchestrator.state.lease import Lease


@dataclass(frozen=True)
class AppliedFleet:
    serial: int
    files: Mapping[str, bytes]  # fleet-relative path -> exact bytes, as applied
    digest: str  # fleet.digest.fleet_digest(files): equals Fleet.digest of the applied fleet


class StateReader(Protocol):
    """The read side every consumer may rely on (the gateway polls ``serial`` cheaply)."""

    url: str

    def serial(self) -> int: ...

    def applied_fleet(self) -> AppliedFleet | None: ...

    def drains(self) -> Drains:
        """The drained sites (SPEC 7) and the version of that record; cheap, polled."""
        ...


class StateStore(StateReader, Protocol):
    """The full store: reads, the lock, recorded steps and the audit log (every backend).

    Every mutating call takes the ``Lease`` from :meth:`lock` and refuses (``StateError``) when
    that lease is no longer held, so a run that lost its lock cannot write. Each call is one
    atomic step: a crash between two calls loses nothing recorded and leaves nothing half done.
    """

    @property
    def audit(self) -> AuditLog:
        """The hash-chained audit log kept with this state."""
        ...

    def lineage(self) -> str:
        """A random id fixed when the store was created (tells two stores apart)."""
        ...

    def lock(self, operation: str) -> AbstractContextManager[Lease]:
        """Hold the state lock; ``StateLockedError`` (exit 4) names the current holder."""
        ...

    def record_change(
        self, lease: Lease, address: str, op: str, outcome: str, resource: dict[str, Any] | None
    ) -> int:
        """Record one applied (or failed) change; ``resource=None`` means no longer managed.

        Returns the new serial.
        """
        ...

    def record_applied_fleet(self, lease: Lease, files: Mapping[str, bytes]) -> int:
        """Record the exact fleet files just applied; returns the new serial."""
        ...

    def replace_drains(
        self,
        drains: tuple[Drain, ...],
        *,
        expected_version: str,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> Drains:
        """Record ``drains`` as the drained sites, audited as ``audit_kind``, only if the
        record is still at ``expected_version`` (``StateError`` otherwise: someone else drained
        or restored meanwhile). No lease: an on-call drain never waits behind an apply, and it
        touches nothing an apply writes."""
        ...

    def current_lock(self) -> Lease | None:
        """The lease recorded now (held, expired or stale), or None: ``state lock-info``."""
        ...

    def break_lock(self, holder_id: str, *, by: str, reason: str) -> Lease:
        """Free the lock that ``holder_id`` holds (``state unlock --force ID``), audited as
        ``lock.force_unlocked``; the lock epoch moves on, so that holder's later writes are
        refused. ``StateError`` when the lock is free or held by someone else."""
        ...

    def recorded_resources(self) -> list[dict[str, Any]]:
        """What Sovereign believes it manages: one dict per address, sorted by address."""
        ...

    def close(self) -> None: ...
