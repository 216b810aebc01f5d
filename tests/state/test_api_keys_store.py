"""API key records in every state backend (SQLite, s3:// on moto, gs:// on fake-gcs-server).

The state keeps the key's SHA-256, never the key; creating and revoking are audited in the
same step, and only over the version they were computed from (docs/identity.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.errors import StateError
from orchestrator.state import StateStore, open_store
from orchestrator.state.apikeys import ApiKey, ApiKeys, key_digest, new_key
from tests.state.test_drains_store import state_url  # noqa: F401 - the backend fixture

AT = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def record(key: str, key_id: str, tenant: str = "acme") -> ApiKey:
    return ApiKey(key_id, key_digest(key).hex(), tenant, "backend", "ops@host", AT)


def put(store: StateStore, keys: tuple[ApiKey, ...], version: str, kind: str) -> ApiKeys:
    return store.replace_api_keys(
        keys,
        expected_version=version,
        audit_kind=kind,
        audit_payload={"ids": [k.id for k in keys]},
    )


def test_key_records_round_trip_hashed_audited_and_versioned(
    state_url: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    store = open_store(state_url, tmp_path)
    empty = store.api_keys()
    assert empty.entries == ()
    key_id, key = new_key()
    assert key.startswith("sk-sov-") and len(key) == 7 + 43  # 256 bits, base64url
    first = put(store, (record(key, key_id),), empty.version, "key.created")
    again = open_store(state_url, tmp_path).api_keys()  # another process's view
    assert again == first and again.get(key_id) == record(key, key_id)
    revoked = first.entries[0].revoked("ops@host", AT)
    second = put(store, (revoked,), first.version, "key.revoked")
    assert second.get(key_id) is not None and second.get(key_id).status(AT) == "revoked"  # type: ignore[union-attr]
    with pytest.raises(StateError, match="changed while this command ran"):
        put(store, (record(key, key_id),), first.version, "key.created")  # stale: refused
    assert store.api_keys().get(key_id).revoked_at == AT  # type: ignore[union-attr]
    assert store.serial() == 0  # keys do not move the serial: saved plans stay valid
    kinds = [e.kind for e in store.audit.entries()]
    assert kinds.count("key.created") == 1 and kinds.count("key.revoked") == 1
    assert store.audit.verify().ok
    dumped = json.dumps([e.payload for e in store.audit.entries()])
    assert key not in dumped and key.removeprefix("sk-sov-") not in dumped


def test_damaged_key_records_are_a_state_error() -> None:
    from orchestrator.state.apikeys import api_keys_from_text

    with pytest.raises(StateError, match="damaged"):
        api_keys_from_text('[{"id": "key_1", "sha256": "x"}]', "1")
    with pytest.raises(ValueError, match="unique"):
        ApiKeys(
            (record("sk-sov-a", "key_0000000000000001"), record("sk-sov-a", "key_0000000000000002"))
        )
