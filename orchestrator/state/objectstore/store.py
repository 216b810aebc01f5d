"""``ObjectStateStore``: the ``StateStore`` over a ``Blobs`` bucket prefix (S3 or GCS).

Each recorded step is a single CAS on ``state.json``, so it is all or nothing. The lease is
checked just before that CAS and must have a sixth of its lifetime left; a taker must wait for
it to expire, so a writer that lost its lease cannot land a write after the takeover.

Over 400 lines on purpose: the whole ``StateStore`` over one bucket (reads, the lock, each recorded
step), whose parts share one CAS-and-lease argument; the audit log is apart already
(``objectstore/audit.py``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.errors import AuditError, StateError
from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.drain import Drain, Drains
from orchestrator.fleet.instants import format_utc
from orchestrator.state.apikeys import (
    ApiKey,
    ApiKeys,
    api_keys_from_text,
    api_keys_moved_error,
)
from orchestrator.state.base import (
    AppliedDirective,
    AppliedFleet,
    PinnedAuthorities,
    pins_from_json,
    pins_to_text,
)
from orchestrator.state.blobs import (
    CAS_ATTEMPTS,
    Blobs,
    PreconditionFailed,
    dump_json,
    read_json,
)
from orchestrator.state.lease import (
    Lease,
    fenced_error,
    hold_lease,
    locked_error,
    lost_error,
    new_lease,
    takeover_reason,
    unlock_mismatch,
)
from orchestrator.state.objectstore.audit import AUDIT_DIR, ObjectAuditLog, write_genesis
from orchestrator.state.records import (
    applied_directive_from_text,
    check_change,
    check_fleet_files,
    drains_from_text,
    drains_moved_error,
    unreadable_store,
    verified_applied_fleet,
)

STATE = "state.json"
LOCK = "lock.json"
DRAINS = "drains.json"
API_KEYS = "api_keys.json"
FLEET_DIR = "fleet/"


class ObjectStateStore:
    """The state store over a :class:`Blobs` bucket prefix (S3 or GCS)."""

    def __init__(
        self,
        blobs: Blobs,
        *,
        create: bool = True,
        lease_seconds: float = 60.0,
        backend: str = "object",
    ) -> None:
        self._blobs = blobs
        self.url = blobs.url
        self.lease_seconds = lease_seconds
        self.audit = ObjectAuditLog(blobs)
        self._lock_versions: dict[str, str] = {}  # holder id -> version of lock.json we wrote
        self._init(create, backend)

    def _init(self, create: bool, backend: str) -> None:
        existing = self._blobs.get(STATE)
        if existing is None:
            if not create:
                raise StateError(
                    f"no state at {self.url}",
                    hint="nothing was applied with this state yet; check --state",
                )
            leftovers = [
                n for n in self._blobs.list("") if n != STATE and not n.startswith("probe/")
            ]
            if leftovers and self._blobs.get(STATE) is None:
                # The store's records are there but its state object is not: never re-created
                # behind anyone's back (docs/state.md, the state as an anchor).
                raise unreadable_store(
                    self.url, f"{STATE} is missing but {leftovers[0]} and others are there"
                )
        if existing is None and self._blobs.get(STATE) is None:
            # (Not created meanwhile by a run that started at the same time.)
            self._check_conditional_writes()
            doc = {
                "schema": 1,
                "lineage": str(uuid.uuid4()),
                "serial": 0,
                "resources": {},
                "applied_fleet": None,
            }
            try:
                self._blobs.put(STATE, dump_json(doc), if_absent=True)
            except PreconditionFailed:
                pass  # another run created it first: use theirs
        state, _ = self._state()
        if (
            create
            and self.audit._head()[0] is None
            and state["serial"] == 0
            and not self._blobs.list(AUDIT_DIR)
        ):
            # A new store (or one whose creator died before this): start its log. A store that
            # has moved on (serial > 0) with no log was emptied, and is left for verify to flag.
            write_genesis(self._blobs, state["lineage"], backend)

    def _check_conditional_writes(self) -> None:
        """Refuse a server that ignores conditional writes (some S3-compatible ones do):
        without them the lock would let two applies run at once."""
        probe = f"probe/{uuid.uuid4().hex}"
        self._blobs.put(probe, b"1", if_absent=True)
        try:
            self._blobs.put(probe, b"2", if_absent=True)
        except PreconditionFailed:
            return
        finally:
            self._blobs.delete(probe)
        raise StateError(
            f"the server behind {self.url} ignores conditional writes (If-None-Match)",
            hint="object-storage state needs S3 conditional writes or GCS generation "
            "preconditions; use another server or the SQLite state",
        )

    def close(self) -> None:
        """Nothing to release: every call is a self-contained request."""

    # --- reads ------------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], str]:
        blob = self._blobs.get(STATE)
        if blob is None:
            raise StateError(f"the state object {STATE} disappeared from {self.url}")
        doc = read_json(blob, STATE)
        for key, kind in (("lineage", str), ("serial", int), ("resources", dict)):
            if not isinstance(doc.get(key), kind):
                raise StateError(f"{STATE} at {self.url} has no valid {key!r}: it is damaged")
        return doc, blob.version

    def serial(self) -> int:
        return int(self._state()[0]["serial"])

    def lineage(self) -> str:
        return str(self._state()[0]["lineage"])

    def applied_fleet(self) -> AppliedFleet | None:
        doc, _ = self._state()
        applied = doc.get("applied_fleet")
        if not applied:
            return None
        digest = str(applied["digest"])
        found = self._applied_blob(int(applied["serial"]), digest)
        if found is None:
            raise StateError(f"the applied fleet {digest[:12]} is missing from {self.url}")
        return found

    def applied_fleet_of(self, digest: str) -> AppliedFleet | None:
        """The fleet applied with this digest, verified; None when this state never applied
        it. Every applied fleet stays in ``fleet/<digest>.json`` (content-addressed); the
        serial of an older one is not kept there, so it reads as 0."""
        if not digest or not all(c in "0123456789abcdef" for c in digest):
            return None
        doc, _ = self._state()
        applied = doc.get("applied_fleet") or {}
        serial = int(applied["serial"]) if applied.get("digest") == digest else 0
        return self._applied_blob(serial, digest)

    def _applied_blob(self, serial: int, digest: str) -> AppliedFleet | None:
        blob = self._blobs.get(f"{FLEET_DIR}{digest}.json")
        if blob is None:
            return None
        raw = read_json(blob, "applied fleet")
        files = {path: base64.b64decode(data) for path, data in raw.get("files", {}).items()}
        return verified_applied_fleet(serial, files, digest)

    def applied_directives(self) -> dict[str, AppliedDirective]:
        doc, _ = self._state()
        raw = doc.get("applied_directives") or {}
        if not isinstance(raw, dict):
            raise StateError(f"{STATE} at {self.url} has damaged 'applied_directives'")
        return {str(i): applied_directive_from_text(r) for i, r in sorted(raw.items())}

    def recorded_resources(self) -> list[dict[str, Any]]:
        doc, _ = self._state()
        resources: dict[str, dict[str, Any]] = doc["resources"]
        return [{"address": address, **resources[address]} for address in sorted(resources)]

    # --- the lock ---------------------------------------------------------------------------

    def _lock_blob(self) -> tuple[Lease | None, str | None]:
        holder, version, _ = self._lock_doc()
        return holder, version

    def _lock_doc(self) -> tuple[Lease | None, str | None, int]:
        """The holder, the object's version and the lock epoch (the fencing counter)."""
        blob = self._blobs.get(LOCK)
        if blob is None:
            return None, None, 0
        doc = read_json(blob, LOCK)
        holder = doc.get("holder")
        lease = Lease.from_json(holder) if holder else None
        epoch = int(doc.get("epoch", lease.epoch if lease is not None else 0))
        return lease, blob.version, epoch

    def _fence(self, epoch: int) -> None:
        """Raise the fence in ``state.json`` to ``epoch``: from now on every commit of an
        older lease is refused, even one that passed its lease check just before."""
        for _ in range(CAS_ATTEMPTS):
            doc, version = self._state()
            if int(doc.get("fence", 0)) >= epoch:
                return
            doc["fence"] = epoch
            try:
                self._blobs.put(STATE, dump_json(doc), if_version=version)
                return
            except PreconditionFailed:
                continue
        raise StateError(f"cannot fence {STATE} at {self.url}: it keeps changing underneath")

    def _acquire(self, operation: str) -> Lease:
        if not isinstance(operation, str) or not operation:
            raise StateError("lock: operation must be a non-empty string")
        for _ in range(CAS_ATTEMPTS):
            holder, version, epoch = self._lock_doc()
            now = datetime.now(UTC)
            reason = None
            if holder is not None:
                reason = takeover_reason(holder, now)
                if reason is None:
                    raise locked_error(holder)
            lease = new_lease(operation, self.lease_seconds, now, epoch + 1)
            try:
                new_version = self._blobs.put(
                    LOCK,
                    dump_json({"holder": lease.to_json(), "epoch": lease.epoch}),
                    if_version=version,
                    if_absent=version is None,
                )
            except PreconditionFailed:
                mine, current = self._lock_blob()
                if mine is None or mine.holder_id != lease.holder_id or current is None:
                    continue  # someone else moved first: look again
                new_version = current  # our own write, retried after its reply was lost
            # Read back: on a server whose conditional writes are not atomic, a racing writer
            # may have overwritten ours; only the lease actually stored counts.
            stored, stored_version = self._lock_blob()
            if stored is None or stored.holder_id != lease.holder_id:
                continue
            self._lock_versions[lease.holder_id] = stored_version or new_version
            try:
                self._fence(lease.epoch)
            except StateError:
                self._release(lease)
                raise
            if holder is not None:
                try:
                    self.audit.append(
                        "lock.broken",
                        {
                            "holder": holder.to_json(),
                            "reason": reason,
                            "by": lease.to_json(),
                        },
                    )
                except AuditError:
                    self._release(lease)
                    raise
            return lease
        raise StateError(f"cannot take the lock at {self.url}: too much contention")

    def _renew(self, lease: Lease) -> bool:
        expires = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
        version = self._lock_versions.get(lease.holder_id)
        if version is None:
            return False
        renewed = replace(lease, expires_at=expires, lost=False)
        try:
            self._lock_versions[lease.holder_id] = self._blobs.put(
                LOCK,
                dump_json({"holder": renewed.to_json(), "epoch": lease.epoch}),
                if_version=version,
            )
        except PreconditionFailed:
            holder, current = self._lock_blob()
            if holder is None or holder.holder_id != lease.holder_id or current is None:
                return False
            self._lock_versions[lease.holder_id] = current  # our own write's reply was lost
            return True
        lease.expires_at = expires
        return True

    def _release(self, lease: Lease) -> None:
        version = self._lock_versions.pop(lease.holder_id, None)
        if version is None:
            return
        try:
            self._blobs.put(
                LOCK, dump_json({"holder": None, "epoch": lease.epoch}), if_version=version
            )
        except PreconditionFailed:
            pass  # taken over meanwhile: it is not ours to release

    def lock(self, operation: str) -> AbstractContextManager[Lease]:
        return hold_lease(
            lambda: self._acquire(operation), self._renew, self._release, self.lease_seconds
        )

    def state_version(self) -> str | None:
        """The version (ETag / generation) of ``state.json``, read without its data: every
        recorded step rewrites it, so a gateway asks this often to learn of an apply."""
        return self._blobs.version(STATE)

    def _check_lease(self, lease: Lease) -> None:
        if lease.lost:
            raise lost_error(lease, "its heartbeat found the lock taken over")
        holder, _ = self._lock_blob()
        if holder is None or holder.holder_id != lease.holder_id or holder.damaged:
            lease.lost = True
            why = f"now held by {holder.describe()}" if holder else "the lock was released"
            raise lost_error(lease, why)
        margin = timedelta(seconds=self.lease_seconds / 6)
        if holder.expires_at - margin <= datetime.now(UTC):
            raise lost_error(
                lease, f"its lease expires at {format_utc(holder.expires_at, 'microseconds')}"
            )

    # --- recorded steps ---------------------------------------------------------------------

    def _commit(self, lease: Lease, change: Any) -> int:
        for _ in range(CAS_ATTEMPTS):
            self._check_lease(lease)
            doc, version = self._state()
            fence = int(doc.get("fence", 0))
            if fence > lease.epoch:
                raise fenced_error(lease, fence)
            doc["serial"] = int(doc["serial"]) + 1
            change(doc)
            try:
                self._blobs.put(STATE, dump_json(doc), if_version=version)
            except PreconditionFailed:
                if self._state()[0] == doc:
                    return int(doc["serial"])  # our own write, retried after a lost reply
                time.sleep(0.01)
                continue
            return int(doc["serial"])
        raise StateError(f"cannot write {STATE} at {self.url}: it keeps changing underneath")

    def record_change(
        self, lease: Lease, address: str, op: str, outcome: str, resource: dict[str, Any] | None
    ) -> int:
        check_change(address, op, outcome, resource)
        now = format_utc(datetime.now(UTC), "microseconds")

        def change(doc: dict[str, Any]) -> None:
            if resource is None:
                doc["resources"].pop(address, None)
            else:
                doc["resources"][address] = {
                    "resource": resource,
                    "op": op,
                    "outcome": outcome,
                    "serial": doc["serial"],
                    "updated_at": now,
                }

        return self._commit(lease, change)

    def record_applied_fleet(
        self,
        lease: Lease,
        files: Mapping[str, bytes],
        directives: Iterable[AppliedDirective] = (),
        pins: Mapping[str, PinnedAuthorities] | None = None,
    ) -> int:
        clean = check_fleet_files(files)
        records = {d.id: d.to_json() for d in directives}
        pinned = None if pins is None else json.loads(pins_to_text(pins))
        digest = fleet_digest(clean)
        self._check_lease(lease)
        # Content-addressed, so writing it before the state CAS can never clobber anything.
        self._blobs.put(
            f"{FLEET_DIR}{digest}.json",
            dump_json(
                {"files": {p: base64.b64encode(d).decode("ascii") for p, d in clean.items()}}
            ),
        )
        now = format_utc(datetime.now(UTC), "microseconds")

        def change(doc: dict[str, Any]) -> None:
            doc["applied_fleet"] = {"serial": doc["serial"], "digest": digest, "applied_at": now}
            if records:
                doc.setdefault("applied_directives", {}).update(records)
            if pinned is not None:
                doc["pinned_authorities"] = pinned

        return self._commit(lease, change)

    # --- pinned authority sets (docs/security.md, authority sets are a trust root) ----------

    def pinned_authorities(self) -> dict[str, PinnedAuthorities]:
        doc, _ = self._state()
        return pins_from_json(doc.get("pinned_authorities"), f"{STATE} at {self.url}")

    def replace_pins(
        self,
        lease: Lease,
        pins: Mapping[str, PinnedAuthorities],
        *,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> int:
        pinned = json.loads(pins_to_text(pins))
        # Audit first (nothing happens without a record), then the one CAS of state.json.
        self.audit.append(audit_kind, audit_payload)

        def change(doc: dict[str, Any]) -> None:
            doc["pinned_authorities"] = pinned

        return self._commit(lease, change)

    def current_lock(self) -> Lease | None:
        return self._lock_blob()[0]

    def break_lock(self, holder_id: str, *, by: str, reason: str) -> Lease:
        """Remove the lock held by ``holder_id`` (``state unlock --force``): audited first, then
        the lock object is freed by CAS and the fence raised past its epoch, so that holder can
        never write again."""
        holder, version, epoch = self._lock_doc()
        if holder is None or holder.holder_id != holder_id:
            raise unlock_mismatch(holder, holder_id)
        self.audit.append(
            "lock.force_unlocked",
            {"holder": holder.to_json(), "by": by, "reason": reason, "epoch": epoch + 1},
        )
        try:
            self._blobs.put(
                LOCK, dump_json({"holder": None, "epoch": epoch + 1}), if_version=version
            )
        except PreconditionFailed:
            raise StateError(
                f"the lock at {self.url} changed hands while it was being broken",
                hint="run `sovereign state lock-info` again",
            ) from None
        self._fence(epoch + 1)
        return holder

    # --- drains (docs/runbooks.md): one CAS'd object, written without the lease -------------

    def drains(self) -> Drains:
        blob = self._blobs.get(DRAINS)
        if blob is None:
            return Drains((), "")
        raw = read_json(blob, DRAINS).get("drains")
        return drains_from_text(json.dumps(raw), blob.version)

    def replace_drains(
        self,
        drains: tuple[Drain, ...],
        *,
        expected_version: str,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> Drains:
        new = Drains(drains)
        if self.drains().version != expected_version:
            raise drains_moved_error(self.url)
        # Audit first (nothing happens without a record); a lost race is recorded as aborted.
        entry = self.audit.append(audit_kind, audit_payload)
        try:
            version = self._blobs.put(
                DRAINS,
                dump_json({"drains": new.to_json()}),
                if_version=expected_version or None,
                if_absent=not expected_version,
            )
        except PreconditionFailed:
            self.audit.append(
                f"{audit_kind}.aborted", {"entry": entry.seq, "why": "the drains changed"}
            )
            raise drains_moved_error(self.url) from None
        return Drains(new.entries, version)

    # --- API keys (docs/identity.md): one CAS'd object, written without the lease -----------

    def api_keys(self) -> ApiKeys:
        blob = self._blobs.get(API_KEYS)
        if blob is None:
            return ApiKeys((), "")
        raw = read_json(blob, API_KEYS).get("api_keys")
        return api_keys_from_text(json.dumps(raw), blob.version)

    def replace_api_keys(
        self,
        keys: tuple[ApiKey, ...],
        *,
        expected_version: str,
        audit_kind: str,
        audit_payload: Mapping[str, Any],
    ) -> ApiKeys:
        new = ApiKeys(keys)
        if self.api_keys().version != expected_version:
            raise api_keys_moved_error(self.url)
        # Audit first (nothing happens without a record); a lost race is recorded as aborted.
        entry = self.audit.append(audit_kind, audit_payload)
        try:
            version = self._blobs.put(
                API_KEYS,
                dump_json({"api_keys": new.to_json()}),
                if_version=expected_version or None,
                if_absent=not expected_version,
            )
        except PreconditionFailed:
            self.audit.append(
                f"{audit_kind}.aborted", {"entry": entry.seq, "why": "the API keys changed"}
            )
            raise api_keys_moved_error(self.url) from None
        return ApiKeys(new.entries, version)
