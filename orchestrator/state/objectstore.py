"""State in object storage (``s3://``, ``gs://``): the store interface over conditional writes.

SPEC 4 asks that object-storage state be "locked with conditional writes so that two applies
never run at once". Buckets offer no transactions, only compare-and-swap on one object: create
if absent (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``) and replace if unchanged (S3
``If-Match: ETAG``, GCS ``ifGenerationMatch=N``). Everything here is built from that, through
the small :class:`Blobs` protocol that ``state.s3`` and ``state.gcs`` implement. Objects under
the prefix::

    state.json             lineage, serial, managed resources, applied fleet digest (CAS'd)
    fleet/<digest>.json    the applied fleet files, content-addressed (written before state)
    lock.json              {"holder": lease | null}: taken and renewed by CAS, never deleted
    audit/<seq:012>.json   one entry each, created only if absent: {ts, kind, payload, ...}
    audit/head.json        {"seq", "hash"} of the last entry (CAS'd after the entry)

Each recorded step is a single CAS on ``state.json``, so it is all or nothing. The lease is
checked just before that CAS and must have a sixth of its lifetime left; a taker must wait for
it to expire, so a writer that lost its lease cannot land a write after the takeover.

An audit append is two writes (entry, then head). If a run dies between them the entry exists
beyond the head: ``verify`` reports it (fail closed) and the next append rolls the head forward
over it, after checking that it chains onto the head.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.errors import AuditError, StateError
from orchestrator.fleet.digest import fleet_digest
from orchestrator.state.audit import (
    GENESIS_HASH,
    STATE_CREATED,
    AuditEntry,
    AuditHead,
    AuditProblem,
    AuditProblemKind,
    AuditReport,
    StoredEntry,
    canonical_json,
    hashes_as,
    make_entry,
    parse_entry,
    verify_chain,
)
from orchestrator.state.base import AppliedFleet
from orchestrator.state.lease import (
    Lease,
    hold_lease,
    iso_utc,
    locked_error,
    lost_error,
    new_lease,
    takeover_reason,
)
from orchestrator.state.records import check_change, check_fleet_files, verified_applied_fleet

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore
    from orchestrator.state.url import StateLocation

STATE = "state.json"
LOCK = "lock.json"
AUDIT_DIR = "audit/"
AUDIT_HEAD = "audit/head.json"
FLEET_DIR = "fleet/"
CAS_ATTEMPTS = 20


class PreconditionFailed(StateError):
    """A conditional write lost: the object changed (or appeared) since it was read."""


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    version: str  # S3 ETag, GCS generation


class Blobs(Protocol):
    """The four calls a bucket must offer; names are relative to the store's prefix."""

    url: str

    def get(self, name: str) -> Blob | None:
        """The object and its version, or None when absent."""
        ...

    def put(
        self, name: str, data: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        """Write; with ``if_version``/``if_absent`` only if that still holds, else raise
        ``PreconditionFailed``. Returns the new version."""
        ...

    def delete(self, name: str) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the store prefix) that start with ``prefix``."""
        ...


def _json(blob: Blob, name: str) -> dict[str, Any]:
    try:
        value = json.loads(blob.data)
    except ValueError as exc:
        raise StateError(f"{name} in the state store is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise StateError(f"{name} in the state store is not a JSON object")
    return value


def _dump(value: Mapping[str, Any]) -> bytes:
    return canonical_json(value).encode("utf-8")


def audit_name(seq: int) -> str:
    return f"{AUDIT_DIR}{seq:012d}.json"


class ObjectAuditLog:
    """The audit chain as one object per entry plus a CAS'd head object."""

    def __init__(self, blobs: Blobs) -> None:
        self._blobs = blobs

    def _head(self) -> tuple[AuditHead | None, str | None]:
        blob = self._blobs.get(AUDIT_HEAD)
        if blob is None:
            return None, None
        data = _json(blob, AUDIT_HEAD)
        if not isinstance(data.get("seq"), int) or not isinstance(data.get("hash"), str):
            raise StateError(
                f"{AUDIT_HEAD} at {self._blobs.url} is damaged: {data!r:.200}",
                hint="run `sovereign audit verify`; restore the head from a backup",
            )
        return AuditHead(data["seq"], data["hash"]), blob.version

    def _read_entry(self, seq: int) -> StoredEntry | None:
        blob = self._blobs.get(audit_name(seq))
        return None if blob is None else stored_entry(seq, blob.data)

    def append(self, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        try:
            return self._append(kind, payload)
        except AuditError:
            raise
        except StateError as exc:
            raise AuditError(
                f"cannot append to the audit log ({kind}): {exc.message}",
                hint="the operation stops here: nothing is done without an audit record",
            ) from exc

    def _append(self, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        for _ in range(CAS_ATTEMPTS):
            head, head_version = self._head()
            seq = head.seq + 1 if head else 1
            prev = head.hash if head else GENESIS_HASH
            entry, text = make_entry(seq, kind, payload, prev)
            try:
                self._blobs.put(audit_name(seq), entry_body(entry, text), if_absent=True)
            except PreconditionFailed:
                found = self._read_entry(seq)
                if found is not None and found.hash == entry.hash:
                    break  # our own write, retried by the SDK after its reply was lost
                # Another append got this seq first, or one died before moving the head.
                self._roll_forward(head, head_version, seq)
                continue
            self._move_head(entry, head_version)
            return entry
        else:
            raise AuditError(f"cannot append to the audit log ({kind}): too much contention")
        self._move_head(entry, head_version)
        return entry

    def _move_head(self, entry: AuditEntry, head_version: str | None) -> None:
        body = _dump({"seq": entry.seq, "hash": entry.hash})
        version = head_version
        for _ in range(CAS_ATTEMPTS):
            try:
                self._blobs.put(AUDIT_HEAD, body, if_version=version, if_absent=version is None)
                return
            except PreconditionFailed:
                head, version = self._head()
                if head is not None and head.seq >= entry.seq:
                    return  # someone rolled the head over our entry already
        raise AuditError("cannot move the audit head: too much contention")

    def _roll_forward(self, head: AuditHead | None, head_version: str | None, seq: int) -> None:
        found = self._read_entry(seq)
        if found is None:
            return
        prev = head.hash if head else GENESIS_HASH
        if found.prev_hash != prev or not hashes_as(found, seq):
            raise AuditError(
                f"audit entry {seq} exists but does not chain onto the head (entry {seq - 1}): "
                "the log was altered",
                hint="run `sovereign audit verify` to see what is wrong",
            )
        body = _dump({"seq": found.seq, "hash": found.hash})
        try:
            self._blobs.put(
                AUDIT_HEAD, body, if_version=head_version, if_absent=head_version is None
            )
        except PreconditionFailed:
            pass  # someone else moved it; the caller re-reads

    def _stored(self) -> tuple[list[StoredEntry], AuditHead | None]:
        head, _ = self._head()
        entries: list[StoredEntry] = []
        for name in sorted(self._blobs.list(AUDIT_DIR)):
            if name == AUDIT_HEAD:
                continue
            stem = name[len(AUDIT_DIR) :].removesuffix(".json")
            if not stem.isdigit() or not name.endswith(".json"):
                raise StateError(f"unexpected object {name!r} in the audit log")
            blob = self._blobs.get(name)
            if blob is not None:
                entries.append(stored_entry(int(stem), blob.data))
        return entries, head

    def entries(self) -> list[AuditEntry]:
        stored, _ = self._stored()
        return [parse_entry(e) for e in stored]

    def verify(self) -> AuditReport:
        stored, head = self._stored()
        report = verify_chain(stored, head)
        if report.ok or report.problem is None:
            return report
        last = stored[-1] if stored else None
        if (
            report.problem.what is AuditProblemKind.CHAIN_BROKEN
            and head is not None
            and last is not None
            and last.seq == head.seq + 1
        ):
            message = (
                f"{report.problem.message} (entry {last.seq} is past the recorded head: "
                "an append was interrupted, or the entry was written outside the log)"
            )
            return AuditReport(
                False,
                report.entries,
                report.head,
                AuditProblem(report.problem.seq, report.problem.kind, report.problem.what, message),
            )
        return report


def entry_body(entry: AuditEntry, payload_text: str) -> bytes:
    """The stored object: canonical JSON, with the payload spliced in exactly as hashed."""
    head = canonical_json({"hash": entry.hash, "kind": entry.kind})[:-1]
    return (
        f'{head},"payload":{payload_text},"prev_hash":{canonical_json(entry.prev_hash)},'
        f'"ts":{canonical_json(entry.ts)}}}'
    ).encode()


_NOT_CANONICAL = "\x00not canonical\x00"


def stored_entry(seq: int, data: bytes) -> StoredEntry:
    """Read an entry object; a body that is not exactly canonical JSON fails verification."""
    try:
        text = data.decode("utf-8")
        body = json.loads(text)
        fields = (
            str(body["ts"]),
            str(body["kind"]),
            body["payload"],
            str(body["prev_hash"]),
            str(body["hash"]),
        )
    except (ValueError, KeyError, TypeError):
        return StoredEntry(seq, "", "(unreadable)", _NOT_CANONICAL, "", "")
    ts, kind, payload, prev_hash, digest = fields
    try:
        payload_text = canonical_json(payload)
        canonical = canonical_json(body) == text
    except AuditError:  # NaN and friends parse, but were never written by us
        payload_text, canonical = _NOT_CANONICAL, False
    if not canonical or set(body) != {"ts", "kind", "payload", "prev_hash", "hash"}:
        payload_text = _NOT_CANONICAL
    return StoredEntry(seq, ts, kind, payload_text, prev_hash, digest)


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
            self._check_conditional_writes()
            doc = {
                "schema": 1,
                "lineage": str(uuid.uuid4()),
                "serial": 0,
                "resources": {},
                "applied_fleet": None,
            }
            try:
                self._blobs.put(STATE, _dump(doc), if_absent=True)
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
            self._genesis(state["lineage"], backend)

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

    def _genesis(self, lineage: str, backend: str) -> None:
        entry, text = make_entry(
            1, STATE_CREATED, {"lineage": lineage, "backend": backend}, GENESIS_HASH
        )
        try:
            self._blobs.put(audit_name(1), entry_body(entry, text), if_absent=True)
        except PreconditionFailed:
            return  # another opener wrote it; it moves the head
        try:
            self._blobs.put(AUDIT_HEAD, _dump({"seq": 1, "hash": entry.hash}), if_absent=True)
        except PreconditionFailed:
            pass

    def close(self) -> None:
        """Nothing to release: every call is a self-contained request."""

    # --- reads ------------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], str]:
        blob = self._blobs.get(STATE)
        if blob is None:
            raise StateError(f"the state object {STATE} disappeared from {self.url}")
        doc = _json(blob, STATE)
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
        blob = self._blobs.get(f"{FLEET_DIR}{digest}.json")
        if blob is None:
            raise StateError(f"the applied fleet {digest[:12]} is missing from {self.url}")
        raw = _json(blob, "applied fleet")
        files = {path: base64.b64decode(data) for path, data in raw.get("files", {}).items()}
        return verified_applied_fleet(int(applied["serial"]), files, digest)

    def recorded_resources(self) -> list[dict[str, Any]]:
        doc, _ = self._state()
        resources: dict[str, dict[str, Any]] = doc["resources"]
        return [{"address": address, **resources[address]} for address in sorted(resources)]

    # --- the lock ---------------------------------------------------------------------------

    def _lock_blob(self) -> tuple[Lease | None, str | None]:
        blob = self._blobs.get(LOCK)
        if blob is None:
            return None, None
        holder = _json(blob, LOCK).get("holder")
        return (Lease.from_json(holder) if holder else None), blob.version

    def _acquire(self, operation: str) -> Lease:
        if not isinstance(operation, str) or not operation:
            raise StateError("lock: operation must be a non-empty string")
        for _ in range(CAS_ATTEMPTS):
            holder, version = self._lock_blob()
            now = datetime.now(UTC)
            reason = None
            if holder is not None:
                reason = takeover_reason(holder, now)
                if reason is None:
                    raise locked_error(holder)
            lease = new_lease(operation, self.lease_seconds, now)
            try:
                new_version = self._blobs.put(
                    LOCK,
                    _dump({"holder": lease.to_json()}),
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
            if holder is not None:
                try:
                    self.audit.append(
                        "lock.broken",
                        {"holder": holder.to_json(), "reason": reason, "by": lease.to_json()},
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
                LOCK, _dump({"holder": renewed.to_json()}), if_version=version
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
            self._blobs.put(LOCK, _dump({"holder": None}), if_version=version)
        except PreconditionFailed:
            pass  # taken over meanwhile: it is not ours to release

    def lock(self, operation: str) -> AbstractContextManager[Lease]:
        return hold_lease(
            lambda: self._acquire(operation), self._renew, self._release, self.lease_seconds
        )

    def _check_lease(self, lease: Lease) -> None:
        if lease.lost:
            raise lost_error(lease, "its heartbeat found the lock taken over")
        holder, _ = self._lock_blob()
        if holder is None or holder.holder_id != lease.holder_id:
            lease.lost = True
            why = f"now held by {holder.describe()}" if holder else "the lock was released"
            raise lost_error(lease, why)
        margin = timedelta(seconds=self.lease_seconds / 6)
        if holder.expires_at - margin <= datetime.now(UTC):
            raise lost_error(lease, f"its lease expires at {iso_utc(holder.expires_at)}")

    # --- recorded steps ---------------------------------------------------------------------

    def _commit(self, lease: Lease, change: Any) -> int:
        for _ in range(CAS_ATTEMPTS):
            self._check_lease(lease)
            doc, version = self._state()
            doc["serial"] = int(doc["serial"]) + 1
            change(doc)
            try:
                self._blobs.put(STATE, _dump(doc), if_version=version)
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
        now = iso_utc(datetime.now(UTC))

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

    def record_applied_fleet(self, lease: Lease, files: Mapping[str, bytes]) -> int:
        clean = check_fleet_files(files)
        digest = fleet_digest(clean)
        self._check_lease(lease)
        # Content-addressed, so writing it before the state CAS can never clobber anything.
        self._blobs.put(
            f"{FLEET_DIR}{digest}.json",
            _dump({"files": {p: base64.b64encode(d).decode("ascii") for p, d in clean.items()}}),
        )
        now = iso_utc(datetime.now(UTC))

        def change(doc: dict[str, Any]) -> None:
            doc["applied_fleet"] = {"serial": doc["serial"], "digest": digest, "applied_at": now}

        return self._commit(lease, change)

    def current_lock(self) -> Lease | None:
        return self._lock_blob()[0]


def open_object_store(where: StateLocation, *, create: bool, lease_seconds: float) -> StateStore:
    """Open an ``s3://`` or ``gs://`` store; the SDK is imported only here, on demand."""
    blobs: Blobs
    if where.scheme == "s3":
        from orchestrator.state.s3 import S3Blobs

        blobs = S3Blobs(where.bucket, where.prefix)
    else:
        from orchestrator.state.gcs import GcsBlobs

        blobs = GcsBlobs(where.bucket, where.prefix)
    return ObjectStateStore(blobs, create=create, lease_seconds=lease_seconds, backend=where.scheme)
