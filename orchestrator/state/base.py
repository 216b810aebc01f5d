"""The state store interface: what was applied, under a serial, behind a lock.

The default backend is SQLite (``.sovereign/state.db`` beside the fleet); object-storage
backends keep the same interface. The gateway reads only ``serial`` and ``applied_fleet``:
it serves exactly the fleet that was last applied, re-verifying its signatures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from orchestrator.errors import StateError
from orchestrator.fleet.drain import Drain, Drains
from orchestrator.state.apikeys import ApiKey, ApiKeys
from orchestrator.state.audit import AuditLog
from orchestrator.state.lease import Lease


@dataclass(frozen=True)
class AppliedFleet:
    serial: int
    files: Mapping[str, bytes]  # fleet-relative path -> exact bytes, as applied
    digest: str  # fleet.digest.fleet_digest(files): equals Fleet.digest of the applied fleet


@dataclass(frozen=True)
class AppliedDirective:
    """A directive the state has applied: what rollback protection (docs/state.md) compares against.

    Kept for good once applied, so that deleting a directive's files, or putting back an older
    version of it, is noticed. ``history`` holds the SHA-256 of every version applied under this
    id, oldest first (the last one is ``sha256``).
    """

    id: str
    jurisdiction: str
    sha256: str  # of the directive file's exact bytes, as applied
    signatures: str  # the .sig file's text, as applied
    source: str  # fleet-relative path it was applied from
    action: str
    effective: datetime
    expires: datetime | None
    supersedes: str | None
    history: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "jurisdiction": self.jurisdiction,
            "sha256": self.sha256,
            "signatures": self.signatures,
            "source": self.source,
            "action": self.action,
            "effective": self.effective.isoformat(),
            "expires": None if self.expires is None else self.expires.isoformat(),
            "supersedes": self.supersedes,
            "history": list(self.history or (self.sha256,)),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppliedDirective:
        """The record read back; ``StateError`` when it is damaged (never a guess)."""
        try:
            expires = data.get("expires")
            supersedes = data.get("supersedes")
            record = cls(
                id=str(data["id"]),
                jurisdiction=str(data["jurisdiction"]),
                sha256=str(data["sha256"]),
                signatures=str(data["signatures"]),
                source=str(data["source"]),
                action=str(data["action"]),
                effective=_aware(data["effective"]),
                expires=None if expires is None else _aware(expires),
                supersedes=None if supersedes is None else str(supersedes),
                history=tuple(str(h) for h in data["history"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(
                f"an applied directive record is damaged: {exc}",
                hint="the state was altered; restore it from a backup",
            ) from exc
        if not record.history or record.history[-1] != record.sha256:
            raise StateError(
                f"the applied directive record of {record.id} is damaged (history)",
                hint="the state was altered; restore it from a backup",
            )
        return record


@dataclass(frozen=True)
class PinnedAuthorities:
    """The authority set the state pins for one jurisdiction (docs/security.md, authority sets
    are a trust root): who may sign its directives, and how many must.

    ``authorities`` are ``(id, base64 raw Ed25519 public key)`` sorted by id; ``cause`` says
    how the set came to be pinned: ``first apply``, ``directive:<rotation id>`` or
    ``trust reset: <reason>``.
    """

    jurisdiction: str
    authorities: tuple[tuple[str, str], ...]
    threshold: int
    pinned_at: datetime
    cause: str

    def same_set(self, authorities: tuple[tuple[str, str], ...], threshold: int) -> bool:
        return self.authorities == authorities and self.threshold == threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction,
            "authorities": [{"id": a, "public_key": k} for a, k in self.authorities],
            "directive_threshold": self.threshold,
            "pinned_at": self.pinned_at.isoformat(),
            "cause": self.cause,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PinnedAuthorities:
        """The pin read back; ``StateError`` when it is damaged (never a guess)."""
        try:
            pin = cls(
                jurisdiction=str(data["jurisdiction"]),
                authorities=tuple(
                    (str(a["id"]), str(a["public_key"])) for a in data["authorities"]
                ),
                threshold=int(data["directive_threshold"]),
                pinned_at=_aware(data["pinned_at"]),
                cause=str(data["cause"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(
                f"a pinned authority set is damaged: {exc}",
                hint="the state was altered; restore it from a backup",
            ) from exc
        if pin.authorities != tuple(sorted(pin.authorities)) or pin.threshold < 1:
            raise StateError(
                f"the pinned authority set of {pin.jurisdiction} is damaged",
                hint="the state was altered; restore it from a backup",
            )
        return pin


def pins_to_text(pins: Mapping[str, PinnedAuthorities]) -> str:
    """The pins as canonical JSON text (how every backend stores them)."""
    import json

    return json.dumps(
        {j: pins[j].to_json() for j in sorted(pins)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def pins_from_json(raw: Any, where: str) -> dict[str, PinnedAuthorities]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StateError(f"the pinned authority sets in {where} are damaged")
    out = {str(j): PinnedAuthorities.from_json(v) for j, v in sorted(raw.items())}
    for j, pin in out.items():
        if pin.jurisdiction != j:
            raise StateError(f"the pinned authority set of {j} in {where} is damaged")
    return out


def _aware(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"instant {value!r} has no time zone")
    return parsed


class StateReader(Protocol):
    """The read side every consumer may rely on (the gateway polls ``serial`` cheaply)."""

    url: str

    def serial(self) -> int: ...

    def lineage(self) -> str:
        """A random id fixed when the store was created (tells two stores apart)."""
        ...

    def applied_fleet(self) -> AppliedFleet | None: ...

    def drains(self) -> Drains:
        """The drained sites (docs/runbooks.md) and the version of that record; cheap, polled."""
        ...

    def api_keys(self) -> ApiKeys:
        """The API key records (hashes, never keys) and their version; cheap, polled."""
        ...

    def pinned_authorities(self) -> dict[str, PinnedAuthorities]:
        """The pinned authority set of every jurisdiction, by id (empty before any pin)."""
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

    def record_applied_fleet(
        self,
        lease: Lease,
        files: Mapping[str, bytes],
        directives: Iterable[AppliedDirective] = (),
        pins: Mapping[str, PinnedAuthorities] | None = None,
    ) -> int:
        """Record the exact fleet files just applied, and (in the same atomic step) the
        directives applied with them, each replacing the record of its id, and ``pins`` (when
        given) as the whole pinned authority sets; returns the new serial."""
        ...

    def applied_fleet_of(self, digest: str) -> AppliedFleet | None:
        """The fleet this state applied with ``digest`` (any time, not only the last), its
        files verified against the digest; None when it never applied that fleet. What
        ``sovereign evidence`` judges an old decision by (docs/evidence.md)."""
        ...

    def applied_directives(self) -> dict[str, AppliedDirective]:
        """Every directive this state has applied, by id (docs/state.md rollback protection)."""
        ...

    def replace_pins(
        self,
        lease: Lease,
        pins: Mapping[str, PinnedAuthorities],
        *,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> int:
        """Record ``pins`` as the whole pinned set, audited as ``audit_kind`` in the same step
        (``trust reset``, and an apply that pins without publishing a new fleet); returns the
        new serial."""
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

    def replace_api_keys(
        self,
        keys: tuple[ApiKey, ...],
        *,
        expected_version: str,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> ApiKeys:
        """Record ``keys`` as the API key records, audited as ``audit_kind``, only if the
        record is still at ``expected_version`` (``StateError`` otherwise). No lease, like the
        drains: a key is created or revoked without waiting behind an apply."""
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
