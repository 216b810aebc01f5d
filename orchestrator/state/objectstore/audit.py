"""The audit chain in a bucket: one object per entry, created only if absent, plus a CAS'd head.

An append is two writes (entry, then head). If a run dies between them the entry exists beyond
the head. ``verify`` accepts exactly that (one entry past the head that chains onto it, the
whole chain verified as if the head had moved; reported as ``pending``: docs/state.md, "The
audit log"), and the next append rolls the head forward over it, after checking that it chains
onto the head. Anything else past the head is reported (fail closed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from orchestrator.errors import AuditError, StateError
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
from orchestrator.state.blobs import (
    CAS_ATTEMPTS,
    Blobs,
    PreconditionFailed,
    dump_json,
    read_json,
)

AUDIT_DIR = "audit/"
AUDIT_HEAD = "audit/head.json"


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
        data = read_json(blob, AUDIT_HEAD)
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
        body = dump_json({"seq": entry.seq, "hash": entry.hash})
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
        body = dump_json({"seq": found.seq, "hash": found.hash})
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
        pending = _interrupted_append(stored, head)
        if pending is not None:
            # One entry past the head that chains onto it: an append killed between its two
            # writes. Verified as if the head had moved (the next append moves it), reported.
            report = verify_chain(stored, AuditHead(pending.seq, pending.hash))
            if report.ok:
                return replace(report, pending=1)
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
                f"{report.problem.message} (entry {last.seq} is past the recorded head and "
                "does not chain onto it: it was written outside the log)"
            )
            return AuditReport(
                False,
                report.entries,
                report.head,
                AuditProblem(report.problem.seq, report.problem.kind, report.problem.what, message),
            )
        return report


def _interrupted_append(stored: list[StoredEntry], head: AuditHead | None) -> StoredEntry | None:
    """The entry an append killed between its two writes left behind, if that is what the log
    shows: exactly one entry past the recorded head (or, head missing, only the genesis entry
    a new store wrote), whose predecessor is the head's entry. An append writes the entry
    (create-if-absent) and then moves the head; nobody can tell that state from one where the
    head was moved as well, except by the head, so the entry is accepted as pending and the
    next append rolls the head over it (``_roll_forward``). It is no weaker than before: the
    head guards against entries deleted from the end, and anyone who may write the bucket
    could have moved the head along with an entry they added."""
    if not stored:
        return None
    last = stored[-1]
    base_seq, base_hash = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
    if last.seq != base_seq + 1 or last.prev_hash != base_hash:
        return None
    if base_seq and (len(stored) < 2 or stored[-2].seq != base_seq or stored[-2].hash != base_hash):
        return None
    return last


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


def write_genesis(blobs: Blobs, lineage: str, backend: str) -> None:
    """Start the log of a new store (idempotent: a concurrent opener's genesis wins)."""
    entry, text = make_entry(
        1, STATE_CREATED, {"lineage": lineage, "backend": backend}, GENESIS_HASH
    )
    try:
        blobs.put(audit_name(1), entry_body(entry, text), if_absent=True)
    except PreconditionFailed:
        return  # another opener wrote it; it moves the head
    try:
        blobs.put(AUDIT_HEAD, dump_json({"seq": 1, "hash": entry.hash}), if_absent=True)
    except PreconditionFailed:
        pass
