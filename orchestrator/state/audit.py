"""The append-only, hash-chained audit log: entry values, hashing, verification, redaction.

Every directive loaded, plan made, change applied and interlock overridden is recorded here
(docs/state.md). Each entry commits to its predecessor::

    hash = sha256(canonical_json({seq, ts, kind, payload, prev_hash}))

with canonical JSON = sorted keys, no spaces, UTF-8, no NaN; the first entry's ``prev_hash`` is
64 zeros. The store also records the head (seq, hash) of the chain beside it, updated in the same
write as each append, so that deleting the *last* entry is detected too (a chain alone cannot
tell a truncated log from a short one).

The storage-independent parts live here: backends (``state.sqlite``, ``state.objectstore``)
persist entries and call :func:`make_entry` and :func:`verify_chain`. Payloads pass through
:func:`redact` before they are hashed, so secrets never enter the log in the first place.

Over 400 lines on purpose: entry values, canonical hashing, verification and redaction are one
format: they change together or the chain no longer verifies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from orchestrator.errors import AuditError
from orchestrator.fleet.instants import utc_now_text

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"

# The kind of the first entry of every store: a store with an empty log was truncated.
STATE_CREATED = "state.created"


class AuditProblemKind(StrEnum):
    """What :func:`verify_chain` found wrong with the first bad entry."""

    EDITED = "edited"  # an entry's content no longer matches its own hash
    DELETED = "deleted"  # a gap in seq: entries are missing from the middle
    REORDERED = "reordered"  # an intact entry sits at a position it was not written at
    CHAIN_BROKEN = "chain broken"  # an entry does not point at its predecessor's hash
    HEAD_TRUNCATED = "head truncated"  # the recorded head disagrees with the last entry


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: str  # UTC ISO 8601, e.g. 2026-06-12T00:00:00.000000Z
    kind: str
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "payload": dict(self.payload),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The last entry as the store recorded it beside the chain."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry exactly as stored: the payload as its stored text, so that any byte counts.

    Verification works on this form rather than on parsed :class:`AuditEntry` values because
    two different texts can parse to the same value (``\\u00e9`` vs ``\\u00E9``): a byte-level
    edit must not slip through a parse-and-reserialise round trip.
    """

    seq: int
    ts: str
    kind: str
    payload_text: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditProblem:
    seq: int | None
    kind: str | None
    what: AuditProblemKind
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "what": str(self.what), "message": self.message}


@dataclass(frozen=True, slots=True)
class AuditReport:
    ok: bool
    entries: int  # how many entries were checked
    head: str | None  # hash of the last entry, None for an empty log
    problem: AuditProblem | None
    # entries past the recorded head left by an append killed between its two writes (object
    # storage; accepted, and the next append records them): 0 or 1
    pending: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "problem": self.problem.to_json() if self.problem else None,
        }
        if self.pending:
            out["pending"] = self.pending
        return out


class AuditLog(Protocol):
    """What callers use; backends differ only in where entries and the head are kept."""

    def append(self, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        """Record one entry in its own write; raise ``AuditError`` if it cannot (fail closed)."""
        ...

    def entries(self) -> list[AuditEntry]: ...

    def verify(self) -> AuditReport: ...


# --- canonical form and hashing -------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, NaN refused: the one serialisation that is hashed."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise AuditError(
            f"audit payload is not plain JSON: {exc}",
            hint="pass only str, int, float, bool, None, lists and string-keyed dicts",
        ) from exc


def entry_hash(seq: int, ts: str, kind: str, payload_text: str, prev_hash: str) -> str:
    """sha256 over the canonical JSON of {seq, ts, kind, payload, prev_hash}.

    ``payload_text`` must already be canonical; it is spliced in verbatim so that the hash
    covers exactly the stored bytes.
    """
    head = canonical_json({"kind": kind})[:-1]  # '{"kind":"..."' without the closing brace
    text = (
        f'{head},"payload":{payload_text},"prev_hash":{canonical_json(prev_hash)},'
        f'"seq":{seq},"ts":{canonical_json(ts)}}}'
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_entry(
    seq: int, kind: str, payload: Mapping[str, Any], prev_hash: str, ts: str | None = None
) -> tuple[AuditEntry, str]:
    """Build the next entry (payload redacted) and return it with its canonical payload text."""
    if not kind or not isinstance(kind, str):
        raise AuditError("audit entry kind must be a non-empty string")
    if not isinstance(payload, Mapping):
        raise AuditError(f"audit payload must be a mapping, got {type(payload).__name__}")
    clean = redact(payload)
    text = canonical_json(clean)
    when = ts or utc_now_text("microseconds")
    digest = entry_hash(seq, when, kind, text, prev_hash)
    return AuditEntry(seq, when, kind, json.loads(text), prev_hash, digest), text


def parse_entry(stored: StoredEntry) -> AuditEntry:
    try:
        payload = json.loads(stored.payload_text)
    except ValueError:
        payload = {"unparseable": stored.payload_text}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    return AuditEntry(stored.seq, stored.ts, stored.kind, payload, stored.prev_hash, stored.hash)


# --- verification ---------------------------------------------------------------------------


def hashes_as(e: StoredEntry, seq: int) -> bool:
    """Whether ``e`` is intact as entry ``seq``: canonical payload, and its hash matches."""
    try:
        canonical = canonical_json(json.loads(e.payload_text))
    except (ValueError, AuditError):
        return False
    if canonical != e.payload_text:
        return False
    return entry_hash(seq, e.ts, e.kind, e.payload_text, e.prev_hash) == e.hash


def _problem(
    seq: int | None, kind: str | None, what: AuditProblemKind, message: str
) -> AuditProblem:
    return AuditProblem(seq, kind, what, f"{what}: {message}")


def _find_problem(entries: Sequence[StoredEntry], head: AuditHead | None) -> AuditProblem | None:
    prev_hash = GENESIS_HASH
    hashes = {e.hash for e in entries}
    for index, e in enumerate(entries):
        expected = index + 1
        if e.seq > expected:
            missing = f"{expected}" if e.seq == expected + 1 else f"{expected}..{e.seq - 1}"
            return _problem(
                expected,
                None,
                AuditProblemKind.DELETED,
                f"entry {missing} is missing (seq jumps from {expected - 1} to {e.seq})",
            )
        if e.seq < expected:
            where = (
                "is numbered before the first entry (1)"
                if index == 0
                else f"appears again after entry {expected - 1}"
            )
            return _problem(e.seq, e.kind, AuditProblemKind.REORDERED, f"entry {e.seq} {where}")
        if not hashes_as(e, e.seq):
            # An intact entry moved to another seq still hashes correctly under its old seq.
            for other in range(1, len(entries) + 2):
                if other != e.seq and hashes_as(e, other):
                    return _problem(
                        e.seq,
                        e.kind,
                        AuditProblemKind.REORDERED,
                        f"entry {e.seq} ({e.kind}) was written as entry {other}",
                    )
            return _problem(
                e.seq,
                e.kind,
                AuditProblemKind.EDITED,
                f"entry {e.seq} ({e.kind}) does not match its hash: its content was changed",
            )
        if e.prev_hash != prev_hash:
            if e.prev_hash in hashes:
                return _problem(
                    e.seq,
                    e.kind,
                    AuditProblemKind.REORDERED,
                    f"entry {e.seq} ({e.kind}) follows a different entry than the one before it",
                )
            return _problem(
                e.seq,
                e.kind,
                AuditProblemKind.CHAIN_BROKEN,
                f"entry {e.seq} ({e.kind}) does not point at the hash of entry {e.seq - 1}",
            )
        prev_hash = e.hash
    last = entries[-1] if entries else None
    if head is None:
        if last is not None:
            return _problem(
                None,
                None,
                AuditProblemKind.HEAD_TRUNCATED,
                f"the recorded head of the log is missing, but the log has {len(entries)} entries",
            )
        return None
    if last is None or last.seq < head.seq:
        have = last.seq if last else 0
        return _problem(
            have + 1,
            None,
            AuditProblemKind.HEAD_TRUNCATED,
            f"the log ends at entry {have} but the store recorded entry {head.seq} as its head: "
            f"entries {have + 1}..{head.seq} were deleted",
        )
    if last.seq > head.seq:
        return _problem(
            head.seq + 1,
            entries[head.seq].kind,
            AuditProblemKind.CHAIN_BROKEN,
            f"entries after the recorded head {head.seq} were added outside the log",
        )
    if last.hash != head.hash:
        return _problem(
            last.seq,
            last.kind,
            AuditProblemKind.HEAD_TRUNCATED,
            f"entry {last.seq} ({last.kind}) is not the entry the store recorded as its head",
        )
    return None


def verify_chain(
    entries: Iterable[StoredEntry], head: AuditHead | None, *, require_genesis: bool = True
) -> AuditReport:
    """Check the chain and the recorded head; report the first problem, never raise.

    ``require_genesis``: every store starts its log with a ``state.created`` entry, so an empty
    log under an existing store means the log was emptied (fail closed).
    """
    listed = sorted(entries, key=lambda e: e.seq)
    problem = _find_problem(listed, head)
    if problem is None and require_genesis and not listed:
        problem = _problem(
            1,
            None,
            AuditProblemKind.HEAD_TRUNCATED,
            f"the log is empty, but every store starts it with a {STATE_CREATED} entry",
        )
    if problem is None and require_genesis and listed[0].kind != STATE_CREATED:
        problem = _problem(
            1,
            listed[0].kind,
            AuditProblemKind.EDITED,
            f"entry 1 is {listed[0].kind!r}, but every log starts with {STATE_CREATED}",
        )
    head_hash = listed[-1].hash if listed else None
    return AuditReport(problem is None, len(listed), head_hash, problem)


# --- redaction ------------------------------------------------------------------------------

# Key names that hold secrets. Matched on the words of the key (split at _ - . and camelCase),
# so that ``api_key``/``apiKey``/``X-Api-Key`` match but a route's ``key: DE`` does not.
_SECRET_WORDS = frozenset(
    {
        "token",
        "tokens",
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "private",
        "authorization",
        "auth",
        "credential",
        "credentials",
        "cookie",
        "apikey",
        "pem",
        "jwt",
        "bearer",
        "privkey",
    }
)
# A "key" word is secret when qualified by one of these (``access_key``, ``signing_key``...).
_KEY_QUALIFIERS = frozenset(
    {
        "api",
        "access",
        "secret",
        "signing",
        "private",
        "session",
        "master",
        "encryption",
        "ssh",
        "client",
        "sign",
    }
)
_WORD_SPLIT = re.compile(r"[_\-.\s/:]+|(?<=[a-z0-9])(?=[A-Z])")
# Values that are secrets whatever key they sit under.
_SECRET_VALUE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|^\s*(?:Bearer|Basic)\s+\S"
    r"|^eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*$"  # a JWT
    r"|\bAKIA[0-9A-Z]{16}\b"  # an AWS access key id
    r"|\bASIA[0-9A-Z]{16}\b",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True when a key name looks like it holds a secret (token, password, private key...)."""
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    if any(w in _SECRET_WORDS for w in words):
        return True
    for i, w in enumerate(words):
        if w in ("key", "keys") and (i > 0 and words[i - 1] in _KEY_QUALIFIERS):
            return True
    return False


def looks_secret_value(value: str) -> bool:
    return bool(_SECRET_VALUE.search(value))


def redact(value: Any) -> Any:
    """A copy of ``value`` with secrets replaced by ``"[redacted]"``.

    A value is replaced when its key looks secret (:func:`is_secret_key`) or when the value
    itself looks like key material or a bearer token; nested dicts and lists are walked.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise AuditError(f"audit payload keys must be strings, got {k!r}")
            if is_secret_key(k) and v is not None:
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and looks_secret_value(value):
        return REDACTED
    return value
