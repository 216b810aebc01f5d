"""Leases on the state lock: who holds it, until when, and when a holder may be taken over.

One run at a time may change the state (docs/state.md: two applies never run at once). A lease
expires unless its holder's heartbeat renews it, and a holder on this host whose process is
gone is stale at once: either way the next run takes the lock over (and the audit log says so)
instead of leaving a SIGKILLed apply's lock in place forever. The decision rules are here, apart
from any backend, so that SQLite and object storage agree on them.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.errors import LeaseLostError, StateError, StateLockedError
from orchestrator.fleet.instants import format_utc

DEFAULT_LEASE_SECONDS = 60.0


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Lease:
    """A held lock. ``expires_at`` moves forward while the heartbeat renews it."""

    holder_id: str
    pid: int
    host: str
    user: str
    operation: str
    acquired_at: datetime
    expires_at: datetime
    # Set by the heartbeat when it finds the lock no longer ours: writes must stop.
    lost: bool = field(default=False, compare=False)
    # The fencing token: how many times the lock was taken (or broken) before this lease,
    # plus one. A store refuses a write from a lease older than the newest epoch it has seen,
    # so a holder that stalled past its expiry cannot land a late write after a takeover.
    epoch: int = 0
    # What is wrong with the stored lock record (a field that does not parse), or None. A
    # damaged lock is never taken over by a run (``takeover_reason`` refuses it): it is shown by
    # ``state lock-info`` and removed with ``state unlock --force HOLDER_ID``.
    damaged: str | None = field(default=None, compare=False)

    def describe(self) -> str:
        if self.damaged is not None:
            return f"a damaged lock record (holder id {self.holder_id!r}: {self.damaged})"
        return (
            f"{self.user}@{self.host} pid {self.pid} (operation {self.operation!r}, "
            f"since {format_utc(self.acquired_at, 'microseconds')})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "holder_id": self.holder_id,
            "pid": self.pid,
            "host": self.host,
            "user": self.user,
            "operation": self.operation,
            "acquired_at": format_utc(self.acquired_at, "microseconds"),
            "expires_at": format_utc(self.expires_at, "microseconds"),
            "epoch": self.epoch,
        }

    @classmethod
    def from_json(cls, data: Any, *, epoch: int | None = None) -> Lease:
        """The lease a stored lock record describes. A record with a field that does not
        parse (``expires_at: garbage``, a pid that is not a number) is not an exception: it is
        a lease marked ``damaged``, naming the field, that no run takes over (see
        ``takeover_reason``) and ``state unlock --force`` can remove."""
        fields = data if isinstance(data, dict) else {}
        holder_id = str(fields.get("holder_id", ""))
        try:
            if not isinstance(data, dict):
                raise ValueError(f"the record is not an object: {str(data)[:80]!r}")
            return cls(
                holder_id=holder_id,
                pid=_field(data, "pid", int),
                host=_field(data, "host", str),
                user=_field(data, "user", str),
                operation=_field(data, "operation", str),
                acquired_at=_field(data, "acquired_at", _time_field),
                expires_at=_field(data, "expires_at", _time_field),
                epoch=epoch if epoch is not None else _field(data, "epoch", int, 0),
            )
        except ValueError as exc:
            return cls(
                holder_id=holder_id,
                pid=0,
                host="?",
                user="?",
                operation="?",
                acquired_at=_DAMAGED_AT,
                expires_at=_DAMAGED_AT,
                epoch=epoch if epoch is not None else 0,
                damaged=str(exc),
            )


_DAMAGED_AT = datetime.min.replace(tzinfo=UTC)
_MISSING = object()


def _time_field(value: object) -> datetime:
    parsed = parse_time(str(value))  # ValueError for text that is no instant
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


def _field(data: dict[str, Any], name: str, kind: Any, default: Any = _MISSING) -> Any:
    """``data[name]`` converted by ``kind``; ValueError naming the field otherwise."""
    if name not in data:
        if default is not _MISSING:
            return default
        raise ValueError(f"{name} is missing")
    try:
        return kind(data[name])
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{name} {str(data[name])[:80]!r} does not parse") from None


def damaged_lock_error(holder: Lease) -> StateError:
    """A run found a lock record it cannot read: it neither waits for it nor takes it over."""
    return StateError(
        f"the state lock record is damaged ({holder.damaged}); no run takes over a lock it "
        "cannot read",
        hint="check `sovereign state lock-info`; if no run holds the state, break it with "
        f"`sovereign state unlock --force {holder.holder_id or '(empty)'} --reason ...`",
    )


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def who() -> str:
    """``user@host`` of this process: how the audit log names a person acting by hand."""
    return f"{current_user()}@{socket.gethostname()}"


def new_lease(operation: str, seconds: float, now: datetime | None = None, epoch: int = 0) -> Lease:
    t = now or datetime.now(UTC)
    return Lease(
        epoch=epoch,
        holder_id=uuid.uuid4().hex,
        pid=os.getpid(),
        host=socket.gethostname(),
        user=current_user(),
        operation=operation,
        acquired_at=t,
        expires_at=t + timedelta(seconds=seconds),
    )


def process_alive(pid: int) -> bool:
    """Whether ``pid`` names a live process on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just is not ours
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"]


def takeover_reason(holder: Lease, now: datetime | None = None) -> str | None:
    """Why ``holder``'s lock may be taken over, or None while it is validly held."""
    if holder.damaged is not None:
        raise damaged_lock_error(holder)
    t = now or datetime.now(UTC)
    if holder.expires_at <= t:
        return f"lease expired at {format_utc(holder.expires_at, 'microseconds')}"
    if holder.host == socket.gethostname() and not process_alive(holder.pid):
        return f"holder process {holder.pid} on {holder.host} is gone"
    return None


def locked_error(holder: Lease) -> StateLockedError:
    return StateLockedError(
        f"the state is locked by {holder.describe()}",
        hint=(
            "wait for that run to finish and retry; if it died, its lock is taken over "
            "automatically once its lease expires at "
            f"{format_utc(holder.expires_at, 'microseconds')} (at once if it ran on this host)"
        ),
    )


def fenced_error(lease: Lease, fence: int) -> LeaseLostError:
    """A write from a lease older than the newest lock epoch the state has seen."""
    lease.lost = True
    return lost_error(
        lease, f"a newer holder (lock epoch {fence}, this run's {lease.epoch}) fenced it off"
    )


def unlock_mismatch(holder: Lease | None, holder_id: str) -> StateError:
    """``state unlock --force ID`` named a lock that is not the one held now."""
    if holder is None:
        return StateError(
            f"the state is not locked (no holder {holder_id})",
            hint="nothing to unlock; `sovereign state lock-info` shows the holder",
        )
    return StateError(
        f"the state is locked by {holder.holder_id} ({holder.describe()}), not {holder_id}",
        hint="copy the holder id from `sovereign state lock-info`; the lock may have changed hands",
    )


def lost_error(lease: Lease, why: str) -> LeaseLostError:
    return LeaseLostError(
        f"this run no longer holds the state lock it took for {lease.operation!r}: {why}",
        hint="another run took the lock over; nothing more was written. Re-run the command.",
    )


class Heartbeat:
    """Renews a lease every ``interval`` seconds in a daemon thread until stopped.

    ``renew`` returns False when the lock is no longer ours; the lease is then marked lost so
    that every later write refuses.
    """

    def __init__(self, lease: Lease, renew: Callable[[Lease], bool], interval: float) -> None:
        self._lease = lease
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sovereign-lease-{lease.holder_id[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                still_ours = self._renew(self._lease)
            except Exception:  # noqa: BLE001 - a failed renewal is retried; expiry is the bound
                continue
            if not still_ours:
                self._lease.lost = True
                return


@contextmanager
def hold_lease(
    acquire: Callable[[], Lease],
    renew: Callable[[Lease], bool],
    release: Callable[[Lease], None],
    lease_seconds: float,
) -> Iterator[Lease]:
    """Acquire, keep renewed by a heartbeat while the body runs, then release.

    On an error in the body the lease is still released (best effort): the original error
    matters more, and an unreleased lease goes stale on its own.
    """
    lease = acquire()
    heartbeat = Heartbeat(lease, renew, interval=max(lease_seconds / 3, 0.05))
    heartbeat.start()
    try:
        yield lease
    except BaseException:
        heartbeat.stop()
        try:
            release(lease)
        except StateError:
            pass
        raise
    heartbeat.stop()
    release(lease)
