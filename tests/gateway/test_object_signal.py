"""The change signal of S3/GCS state (moto, fake-gcs-server): the state object's version, read on
a thread of its own, fires after a commit; a failing read fires too; no thread outlives it; and a
gateway over S3 state enforces a directive on the signal, long before its reload interval."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Hashable, Iterator
from pathlib import Path

import pytest

from orchestrator.errors import StateError
from orchestrator.fleet.loader import load_fleet_files
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.changes import PolledVersion
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import AppliedFleetSource, change_signal
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.state import StateStore, open_store
from orchestrator.state.objectstore import ObjectStateStore
from orchestrator.state.s3 import S3Blobs
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory
from tests.gateway.support import Keys, wait_for
from tests.gateway.test_applied import deploy, record
from tests.gateway.test_change_signal import _first_451

THREAD = "sovereign-state-signal"


@pytest.fixture(scope="module")
def cloud_urls() -> Iterator[dict[str, str]]:
    import orchestrator.adaptors.gcp as gcp_adaptor
    from tests.cloud_servers import cloud_credentials, fake_gcs_server, moto_server

    gcp_adaptor.storage_module()  # imported with its ImportWarning silenced, before the helpers
    with cloud_credentials(), moto_server() as s3, fake_gcs_server() as gs:
        yield {"s3": s3, "gs": gs}


def _bucket(kind: str, cloud_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the backend's local server; the env points the SDKs at it."""
    bucket = f"signal-{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        import boto3

        monkeypatch.setenv("AWS_ENDPOINT_URL", cloud_urls["s3"])
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        return f"s3://{bucket}/sovereign"
    from tests.cloud_servers import gcs_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", cloud_urls["gs"])
    gcs_client(cloud_urls["gs"]).create_bucket(bucket)
    return f"gs://{bucket}/sovereign"


@pytest.fixture(params=["s3", "gs"])
def object_url(
    request: pytest.FixtureRequest, cloud_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> str:
    return _bucket(str(request.param), cloud_urls, monkeypatch)


@pytest.fixture
def s3_url(cloud_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    return _bucket("s3", cloud_urls, monkeypatch)


def _signal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


def test_the_state_version_moves_on_a_commit_and_the_signal_fires(
    object_url: str, signed_fleet_factory: FleetFactory
) -> None:
    root = signed_fleet_factory(name="fleet")
    store = open_store(object_url, root)
    assert isinstance(store, ObjectStateStore)
    before = store.state_version()
    assert before is not None
    reads: list[Hashable] = []

    def read() -> Hashable:
        version = store.state_version()
        reads.append(version)
        return version

    signal = PolledVersion(read, 0.02)
    try:
        wait_for(lambda: len(reads) >= 2, timeout=20)  # the baseline is taken
        assert signal.changed()  # the first read fires (a commit may precede the thread)
        assert not signal.changed()  # the flag is consumed; nothing was committed since
        record(store, root)
        assert store.state_version() != before
        wait_for(signal.changed, timeout=20)
    finally:
        signal.close()
    assert not _signal_threads()


def test_a_failing_read_fires_and_close_joins_the_thread(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cloud_servers import free_port

    bucket = s3_url.split("://", 1)[1].split("/", 1)[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    unreachable = S3Blobs(bucket, "sovereign")
    with pytest.raises(StateError, match="cannot reach S3"):
        unreachable.version("state.json")
    signal = PolledVersion(lambda: unreachable.version("state.json"), 0.02)
    try:
        wait_for(signal.changed, timeout=20)
    finally:
        signal.close()
    assert not _signal_threads()


def test_the_applied_source_offers_the_object_signal(
    object_url: str, signed_fleet_factory: FleetFactory
) -> None:
    root = signed_fleet_factory(name="fleet")
    store = open_store(object_url, root)
    loaded = AppliedFleetSource(store, lambda files: load_fleet_files(files, "applied"))
    signal = change_signal(loaded)
    assert isinstance(signal, PolledVersion)
    signal.close()
    off = AppliedFleetSource(
        store, lambda files: load_fleet_files(files, "applied"), object_signal_interval_s=0
    )
    assert change_signal(off) is None
    assert not _signal_threads()


def _gateway(keys: Keys, store: StateStore, root: Path) -> GatewayApp:
    source = AppliedFleetSource(
        store, lambda files: load_fleet_files(files, "applied"), object_signal_interval_s=0.02
    )
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    # A 30 s reload interval: only the object signal can make the reload happen in time.
    settings = GatewaySettings(
        fleet_dir=root, reload_interval_s=30.0, signal_interval_s=0.01, probe_interval_s=0
    )
    return GatewayApp(Gateway(source, verifier, settings, AccessLog(None)))


def test_a_suspend_on_s3_state_is_enforced_on_the_signal(
    s3_url: str, keys: Keys, signed_fleet_factory: FleetFactory
) -> None:
    before = signed_fleet_factory({DIRECTIVE_FILE: None}, name="before")
    after = signed_fleet_factory(name="after")
    deploy(before, "us-1", "m-us")
    store = open_store(s3_url, before)
    record(store, before)
    headers = keys.headers("US", ["DE"])
    with _gateway(keys, store, before) as app:
        record(store, after)
        _first_451(app.url, headers, limit_s=20.0)
    assert not _signal_threads()  # the gateway stopped its poller
