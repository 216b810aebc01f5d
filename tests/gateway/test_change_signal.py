"""Change signals: an apply reaches the gateway long before the reload interval, and a missed
signal still leaves the interval poll in force (never longer than the old 0.5 s)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx

from orchestrator.fleet.loader import load_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.changes import SqliteDataVersion
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import AppliedFleetSource, StaticSource, change_signal
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.state import open_store
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory
from tests.gateway.support import Keys, make_fleet, wait_for
from tests.gateway.test_applied import deploy, record

CHAT = "/v1/chat/completions"


def test_data_version_fires_on_a_commit_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("CREATE TABLE t (x)")
    signal = SqliteDataVersion(path)
    try:
        assert not signal.changed()
        writer.execute("INSERT INTO t VALUES (1)")
        assert signal.changed()
        assert not signal.changed()  # once per change
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t VALUES (2)")
        assert not signal.changed()  # not before the commit
        writer.execute("COMMIT")
        assert signal.changed()
    finally:
        signal.close()
        writer.close()


def test_applied_sqlite_source_offers_a_signal(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    source = AppliedFleetSource(store, lambda files: load_fleet_files(files, "x"))
    signal = change_signal(source)
    assert isinstance(signal, SqliteDataVersion)
    signal.close()


def _applied_gateway(
    keys: Keys, root: Path, reload_interval_s: float, signal_interval_s: float
) -> GatewayApp:
    store = open_store(None, root, create=False)
    source = AppliedFleetSource(store, lambda files: load_fleet_files(files, "applied"))
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    settings = GatewaySettings(
        fleet_dir=root,
        reload_interval_s=reload_interval_s,
        signal_interval_s=signal_interval_s,
        probe_interval_s=0,
    )
    return GatewayApp(Gateway(source, verifier, settings, AccessLog(None)))


def _first_451(url: str, headers: dict[str, str], limit_s: float) -> float:
    applied = time.monotonic()
    with httpx.Client(trust_env=False, timeout=10) as client:
        while time.monotonic() - applied < limit_s:
            r = client.post(url + CHAT, json={"model": "m-us"}, headers=headers)
            if r.status_code == 451:
                return time.monotonic() - applied
            assert r.status_code == 200
            time.sleep(0.005)
    raise AssertionError(f"the directive was not enforced within {limit_s} s")


def test_an_apply_is_enforced_on_the_signal_not_the_interval(
    keys: Keys, signed_fleet_factory: FleetFactory
) -> None:
    before = signed_fleet_factory({DIRECTIVE_FILE: None}, name="before")
    after = signed_fleet_factory(name="after")
    deploy(before, "us-1", "m-us")
    store = open_store(None, before)
    record(store, before)
    headers = keys.headers("US", ["DE"])
    # A 60 s interval: only the data_version signal can make this reload happen in time.
    with _applied_gateway(keys, before, 60.0, 0.01) as app:
        record(store, after)
        _first_451(app.url, headers, limit_s=20.0)


def test_without_a_signal_the_interval_still_reloads(
    keys: Keys, signed_fleet_factory: FleetFactory
) -> None:
    before = signed_fleet_factory({DIRECTIVE_FILE: None}, name="before")
    after = signed_fleet_factory(name="after")
    deploy(before, "us-1", "m-us")
    store = open_store(None, before)
    record(store, before)
    headers = keys.headers("US", ["DE"])
    # Signal off (as for object stores): the serial read every 0.2 s picks the apply up.
    with _applied_gateway(keys, before, 0.2, 0) as app:
        record(store, after)
        _first_451(app.url, headers, limit_s=20.0)


class DeafSource(StaticSource):
    """A source whose change signal never fires (a missed or broken signal)."""

    def change_signal(self) -> _Never:
        return _Never()


class _Never:
    def changed(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_missed_signal_costs_at_most_the_reload_interval(keys: Keys) -> None:
    source = DeafSource(make_fleet())
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    settings = GatewaySettings(reload_interval_s=0.3, signal_interval_s=0.01, probe_interval_s=0)
    with GatewayApp(Gateway(source, verifier, settings, AccessLog(None))) as app:
        before = app.gateway.serving
        source.set(make_fleet(us_failover=("us-west", "us-east")))
        wait_for(lambda: app.gateway.serving is not before, timeout=10)
        assert app.gateway.serving.table.version != before.table.version


class CountingDeafSource(DeafSource):
    """No change signal (like an object-store state); counts its loads."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet)
        self.loads = 0

    def load(self) -> tuple[Fleet, int | None]:
        self.loads += 1
        return super().load()


def test_a_push_reloads_at_once_and_floods_coalesce(keys: Keys) -> None:
    source = CountingDeafSource(make_fleet())
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    # A 60 s interval and no signal: only the push can make this reload happen in time.
    settings = GatewaySettings(reload_interval_s=60, probe_interval_s=0)
    with GatewayApp(Gateway(source, verifier, settings, AccessLog(None))) as app:
        before = app.gateway.serving.table.version
        source.set(make_fleet(us_failover=("us-west", "us-east")))
        with httpx.Client(trust_env=False, timeout=10) as client:
            answer = client.post(app.url + "/admin/reload").json()
            assert answer["table"] == app.gateway.serving.table.version != before
            assert answer["reload_error"] is None
            # The push cannot choose a table: unchanged input, unchanged table.
            assert client.post(app.url + "/admin/reload").json()["table"] == answer["table"]
            assert client.get(app.url + "/admin/reload").status_code == 405
        loads = source.loads

        async def flood() -> None:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                source.set(make_fleet())
                await asyncio.gather(*(client.post(app.url + "/admin/reload") for _ in range(30)))

        asyncio.run(flood())
        assert app.gateway.serving.table.version == before
        assert 1 <= source.loads - loads <= 3  # thirty pushes, a reload or two
