"""Drains in every state backend (SQLite, s3:// on moto, gs:// on fake-gcs-server).

A drain is recorded with who, when and why, audited in the same step, and only over the
version it was computed from: two on-call engineers racing cannot overwrite each other's drain.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.errors import StateError
from orchestrator.fleet.drain import Drain, Drains
from orchestrator.state import StateStore, open_store, read_drains

AT = datetime(2026, 6, 13, 3, 0, tzinfo=UTC)


ON_SERVERS = [pytest.param(k, marks=pytest.mark.slow) for k in ("s3", "gs")]


# s3 and gs run on moto / fake-gcs-server: slow (make test-fast leaves them out)
@pytest.fixture(params=["sqlite", *ON_SERVERS])
def state_url(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    bucket = f"drains-{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
    elif request.param == "s3":
        import boto3

        url = request.getfixturevalue("state_moto_url")
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/prod"
    else:
        from tests.cloud_servers import gcs_client

        url = request.getfixturevalue("state_gcs_url")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        gcs_client(url).create_bucket(bucket)
        yield f"gs://{bucket}/prod"


def drain(site: str, reason: str = "INC-1") -> Drain:
    return Drain(site, "EU", reason, "oncall@host", AT)


def put(store: StateStore, drains: tuple[Drain, ...], version: str) -> Drains:
    return store.replace_drains(
        drains,
        expected_version=version,
        audit_kind="drain.added",
        audit_payload={"sites": [d.site for d in drains]},
    )


def test_drains_round_trip_with_who_when_why_and_are_audited(
    state_url: str, tmp_path: Path
) -> None:
    store = open_store(state_url, tmp_path)
    empty = store.drains()
    assert empty.entries == ()
    first = put(store, (drain("eu-1"),), empty.version)
    assert first.version != empty.version
    again = open_store(state_url, tmp_path).drains()  # another process's view
    assert again == first
    assert again.entries[0] == drain("eu-1")
    second = put(store, (drain("eu-2", "INC-2"), drain("eu-1")), first.version)
    assert [d.site for d in second.entries] == ["eu-1", "eu-2"]
    assert store.serial() == 0  # drains do not move the serial: saved plans stay valid
    kinds = [e.kind for e in store.audit.entries()]
    assert kinds.count("drain.added") == 2
    assert store.audit.verify().ok


def test_a_stale_version_is_refused_and_nothing_is_recorded(state_url: str, tmp_path: Path) -> None:
    store = open_store(state_url, tmp_path)
    base = store.drains()
    put(store, (drain("eu-1"),), base.version)
    with pytest.raises(StateError, match="changed while this command ran"):
        put(store, (drain("eu-2"),), base.version)
    assert [d.site for d in store.drains().entries] == ["eu-1"]
    assert store.audit.verify().ok


def test_racing_drains_one_wins_the_others_are_told(state_url: str, tmp_path: Path) -> None:
    stores = [open_store(state_url, tmp_path) for _ in range(4)]
    base = stores[0].drains()
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def attempt(n: int, store: StateStore) -> None:
        barrier.wait()
        try:
            put(store, (drain(f"eu-{n}"),), base.version)
            outcomes.append("won")
        except StateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused"] * 3 + ["won"]
    assert len(stores[0].drains().entries) == 1


def test_readers_never_create_a_store(tmp_path: Path) -> None:
    fleet = tmp_path / "regions"
    fleet.mkdir()
    assert read_drains(None, fleet) == Drains((), "")  # no default state: the fleet alone
    assert not (fleet / ".sovereign").exists()
    with pytest.raises(StateError, match="no state"):
        read_drains(str(tmp_path / "missing.db"), fleet)
    assert not (tmp_path / "missing.db").exists()
