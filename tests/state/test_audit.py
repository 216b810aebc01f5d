"""The audit chain: appends verify; edits, deletions, reordering and truncation are named."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import AuditError
from orchestrator.state.audit import (
    GENESIS_HASH,
    REDACTED,
    STATE_CREATED,
    AuditHead,
    AuditProblemKind,
    StoredEntry,
    canonical_json,
    entry_hash,
    is_secret_key,
    make_entry,
    redact,
    verify_chain,
)
from orchestrator.state.sqlite import SqliteStateStore


@contextmanager
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def fill(store: SqliteStateStore, n: int = 5) -> None:
    for i in range(n):
        store.audit.append("change.applied", {"address": f"site/{i}", "n": i})


def test_entries_chain_from_the_genesis_hash(store: SqliteStateStore) -> None:
    fill(store, 3)
    entries = store.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].kind == STATE_CREATED
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.prev_hash == before.hash
    report = store.audit.verify()
    assert report.ok and report.entries == 4 and report.head == entries[-1].hash


def test_the_hash_is_sha256_of_the_canonical_json_of_the_entry(store: SqliteStateStore) -> None:
    import hashlib

    entry = store.audit.append("plan.created", {"b": [1, 2], "a": "é"})
    body = {
        "seq": entry.seq,
        "ts": entry.ts,
        "kind": entry.kind,
        "payload": dict(entry.payload),
        "prev_hash": entry.prev_hash,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entry.hash == hashlib.sha256(text.encode()).hexdigest()
    assert entry.ts.endswith("Z")


def test_an_edited_payload_is_named(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    with raw(db_path) as conn:
        conn.execute("""UPDATE audit SET payload = '{"address":"site/9","n":2}' WHERE seq = 4""")
    report = store.audit.verify()
    assert not report.ok and report.problem is not None
    assert report.problem.seq == 4
    assert report.problem.what is AuditProblemKind.EDITED
    assert report.problem.kind == "change.applied"


def test_an_entry_edited_to_another_type_is_named(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    with raw(db_path) as conn:
        conn.execute("UPDATE audit SET payload = X'7b7d' WHERE seq = 2")  # b"{}" as a blob
        conn.execute("UPDATE audit SET ts = 5 WHERE seq = 5")
    problem = store.audit.verify().problem
    assert problem is not None
    assert (problem.seq, problem.what) == (2, AuditProblemKind.EDITED)


def test_a_deleted_middle_entry_is_named(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    with raw(db_path) as conn:
        conn.execute("DELETE FROM audit WHERE seq = 3")
    problem = store.audit.verify().problem
    assert problem is not None
    assert (problem.seq, problem.what) == (3, AuditProblemKind.DELETED)
    assert "missing" in problem.message


def test_a_deleted_last_entry_is_named(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    with raw(db_path) as conn:
        conn.execute("DELETE FROM audit WHERE seq = 6")
    problem = store.audit.verify().problem
    assert problem is not None
    assert (problem.seq, problem.what) == (6, AuditProblemKind.HEAD_TRUNCATED)


def test_a_deleted_head_record_is_detected(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    with raw(db_path) as conn:
        conn.execute("DELETE FROM audit WHERE seq = 6")
        conn.execute("DELETE FROM meta WHERE key LIKE 'audit_head%'")
    problem = store.audit.verify().problem
    assert problem is not None and problem.what is AuditProblemKind.HEAD_TRUNCATED


def test_an_emptied_log_is_detected(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    with raw(db_path) as conn:
        conn.execute("DELETE FROM audit")
        conn.execute("DELETE FROM meta WHERE key LIKE 'audit_head%'")
    report = store.audit.verify()
    assert not report.ok and report.entries == 0
    assert report.problem is not None and report.problem.what is AuditProblemKind.HEAD_TRUNCATED


def test_two_swapped_entries_are_named_as_reordered(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    with raw(db_path) as conn:
        conn.execute("UPDATE audit SET seq = -1 WHERE seq = 3")
        conn.execute("UPDATE audit SET seq = 3 WHERE seq = 4")
        conn.execute("UPDATE audit SET seq = 4 WHERE seq = -1")
    problem = store.audit.verify().problem
    assert problem is not None
    assert (problem.seq, problem.what) == (3, AuditProblemKind.REORDERED)
    assert "written as entry 4" in problem.message


def test_a_rehashed_entry_breaks_the_chain(store: SqliteStateStore, db_path: Path) -> None:
    fill(store)
    forged = canonical_json({"address": "forged", "n": 1})
    with raw(db_path) as conn:
        ts, prev = conn.execute("SELECT ts, prev_hash FROM audit WHERE seq = 3").fetchone()
        digest = entry_hash(3, ts, "change.applied", forged, prev)
        conn.execute("UPDATE audit SET payload = ?, hash = ? WHERE seq = 3", (forged, digest))
    problem = store.audit.verify().problem
    assert problem is not None
    assert (problem.seq, problem.what) == (4, AuditProblemKind.CHAIN_BROKEN)


def test_a_failing_append_raises_audit_error(db_path: Path) -> None:
    store = SqliteStateStore(db_path)
    store.close()
    with pytest.raises(AuditError, match="cannot append"):
        store.audit.append("apply.started", {})


def test_payloads_that_are_not_json_are_refused(store: SqliteStateStore) -> None:
    with pytest.raises(AuditError):
        store.audit.append("plan.created", {"when": object()})
    with pytest.raises(AuditError):
        store.audit.append("", {})
    with pytest.raises(AuditError, match="mapping"):
        store.audit.append("plan.created", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert store.audit.verify().entries == 1


# --- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "id_token",
        "accessToken",
        "client_secret",
        "password",
        "db-password",
        "private_key",
        "privateKey",
        "Authorization",
        "api_key",
        "X-Api-Key",
        "aws_access_key",
        "signing_key",
        "credentials",
        "session_token",
        "passphrase",
    ],
)
def test_secret_looking_keys_are_redacted(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "s3cr3t", "nested": [{key: {"deep": 1}}]}) == {
        key: REDACTED,
        "nested": [{key: REDACTED}],
    }


@pytest.mark.parametrize("key", ["key", "model", "address", "site", "reason", "keys", "monkey"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: "DE"}) == {key: "DE"}


@pytest.mark.parametrize(
    "value",
    [
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----",
        "Bearer abc.def",
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
        "AKIAIOSFODNN7EXAMPLE",
    ],
)
def test_secret_looking_values_are_redacted_under_any_key(value: str) -> None:
    assert redact({"note": value, "list": [value]}) == {"note": REDACTED, "list": [REDACTED]}


def test_secrets_never_reach_the_stored_log(store: SqliteStateStore, db_path: Path) -> None:
    store.audit.append("interlock.overridden", {"reason": "drill", "token": "tok-123"})
    with raw(db_path) as conn:
        text = " ".join(row[0] for row in conn.execute("SELECT payload FROM audit"))
    assert "tok-123" not in text and REDACTED in text


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
payloads = st.dictionaries(
    st.sampled_from(["model", "site", "n", "reason", "é"]), json_values, max_size=4
)
kinds = st.sampled_from(["plan.created", "change.applied", "directive.added", "apply.finished"])


def build_chain(items: list[tuple[str, dict[str, object]]]) -> list[StoredEntry]:
    chain: list[StoredEntry] = []
    prev = GENESIS_HASH
    for seq, (kind, payload) in enumerate([(STATE_CREATED, {}), *items], start=1):
        entry, text = make_entry(seq, kind, payload, prev, ts=f"2026-06-12T00:00:{seq % 60:02d}Z")
        chain.append(StoredEntry(seq, entry.ts, kind, text, prev, entry.hash))
        prev = entry.hash
    return chain


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(kinds, payloads), max_size=12))
def test_any_sequence_of_appends_verifies(items: list[tuple[str, dict[str, object]]]) -> None:
    chain = build_chain(items)
    report = verify_chain(chain, AuditHead(chain[-1].seq, chain[-1].hash))
    assert report.ok, report.problem
    assert report.entries == len(items) + 1


FIELDS = ("seq", "ts", "kind", "payload_text", "prev_hash", "hash")


def tamper_byte(text: str, index: int, replacement: str) -> str:
    i = index % len(text) if text else 0
    if not text:
        return replacement
    if text[i] == replacement:
        replacement = "#" if replacement != "#" else "@"
    return text[:i] + replacement + text[i + 1 :]


@pytest.mark.slow  # 150 random chains
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(kinds, payloads), min_size=1, max_size=6),
    st.data(),
)
def test_any_single_field_or_byte_tamper_is_detected(
    items: list[tuple[str, dict[str, object]]], data: st.DataObject
) -> None:
    chain = build_chain(items)
    head = AuditHead(chain[-1].seq, chain[-1].hash)
    victim = data.draw(st.integers(0, len(chain) - 1), label="victim")
    field = data.draw(st.sampled_from(FIELDS), label="field")
    e = chain[victim]
    values = {f: getattr(e, f) for f in FIELDS}
    if field == "seq":
        values["seq"] = e.seq + data.draw(st.sampled_from([-1, 1, 7]), label="shift")
        if any(other.seq == values["seq"] for other in chain if other is not e):
            return  # a primary key forbids two entries with one seq; swaps are tested apart
    else:
        index = data.draw(st.integers(0, 200), label="index")
        char = data.draw(st.characters(codec="utf-8", exclude_categories=["Cs"]), label="char")
        values[field] = tamper_byte(str(values[field]), index, char)
    tampered = StoredEntry(**values)
    chain[victim] = tampered
    report = verify_chain(chain, head)
    assert not report.ok
    assert report.problem is not None
    # the tampered entry itself is named, by the seq it was written at or now has
    assert report.problem.seq in (victim + 1, tampered.seq)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(kinds, payloads), min_size=2, max_size=6), st.data())
def test_dropping_any_entry_is_detected(
    items: list[tuple[str, dict[str, object]]], data: st.DataObject
) -> None:
    chain = build_chain(items)
    head = AuditHead(chain[-1].seq, chain[-1].hash)
    victim = data.draw(st.integers(0, len(chain) - 1))
    dropped = chain[:victim] + chain[victim + 1 :]
    report = verify_chain(dropped, head)
    assert not report.ok and report.problem is not None
    assert report.problem.seq == victim + 1
