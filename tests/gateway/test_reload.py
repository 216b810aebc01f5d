"""Hot reload: tables swap atomically under load; a bad reload keeps the last verified table."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx

from orchestrator.errors import FleetError, Problem, StateError
from orchestrator.fleet.drain import NO_DRAINS, Drains
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.routing import ServingTable
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from tests.gateway.support import Keys, Running, make_fleet, wait_for

CHAT = "/v1/chat/completions"


def test_swap_under_concurrent_load_drops_nothing(keys: Keys, gw: Running) -> None:
    # Table A prefers us-east for US residents, table B us-west: every response must come from
    # the site its own table (X-Sovereign-Table) prefers, and none may fail.
    fleet_a, fleet_b = make_fleet(), make_fleet(us_failover=("us-west", "us-east"))
    version_a = ServingTable.compile(fleet_a).version
    version_b = ServingTable.compile(fleet_b).version
    assert version_a != version_b
    expected_site = {version_a: "us-east", version_b: "us-west"}
    headers = keys.headers("US", ["US"])
    total, concurrency = 1000, 20
    seen: Counter[tuple[int, str, str]] = Counter()
    swaps = 0

    async def load() -> None:
        nonlocal swaps
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(trust_env=False, timeout=10, limits=limits) as client:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(total):
                queue.put_nowait(i)

            async def worker() -> None:
                while not queue.empty():
                    queue.get_nowait()
                    r = await client.post(gw.url + CHAT, json={"model": "olmo-3"}, headers=headers)
                    seen[
                        (
                            r.status_code,
                            r.headers.get("x-sovereign-table", ""),
                            r.headers.get("x-sovereign-site", ""),
                        )
                    ] += 1

            async def swapper() -> None:
                nonlocal swaps
                while not queue.empty():
                    gw.source.set(fleet_b if swaps % 2 == 0 else fleet_a)
                    swaps += 1
                    await asyncio.sleep(0.05)

            await asyncio.gather(swapper(), *(worker() for _ in range(concurrency)))

    asyncio.run(load())
    assert sum(seen.values()) == total
    assert all(status == 200 for status, _, _ in seen), seen
    for (_, table, site), _count in seen.items():
        assert expected_site[table] == site
    assert {table for _, table, _ in seen} == {version_a, version_b}
    assert swaps >= 4
    reloaded = [line for line in gw.log if '"event":"table.reloaded"' in line]
    assert len(reloaded) >= 3


def test_failed_reload_keeps_the_last_verified_table(
    keys: Keys, gw: Running, client: httpx.Client
) -> None:
    version = gw.gateway.serving.table.version
    gw.source.fail_next(
        FleetError([Problem("directives/x.yaml", 3, "signature", "no valid signature of US")])
    )
    wait_for(lambda: gw.gateway.reload_error is not None)
    health = client.get(gw.url + "/healthz").json()
    assert health["status"] == "degraded"
    assert "fleet is invalid" in health["reload_error"]
    assert health["table"] == version
    r = client.post(gw.url + CHAT, json={"model": "olmo-3"}, headers=keys.headers("US", ["US"]))
    assert r.status_code == 200 and r.headers["x-sovereign-table"] == version
    assert any('"event":"table.reload_failed"' in line for line in gw.log)
    assert (
        'sovereign_gateway_reloads_total{result="failed"}' in client.get(gw.url + "/metrics").text
    )
    # A good fleet afterwards is picked up and clears the error.
    gw.source.set(make_fleet(us_failover=("us-west", "us-east")))
    wait_for(lambda: gw.gateway.reload_error is None)
    assert client.get(gw.url + "/healthz").json()["table"] != version


def test_reload_waits_for_the_interval(keys: Keys, gw: Running) -> None:
    before = gw.gateway.serving
    gw.source.set(make_fleet(us_failover=("us-west", "us-east")))
    # reload_interval_s is 0.05 in these tests: the swap lands on its own, without a request
    # (the bound is generous: a loaded machine may be late; no wall-clock bound is asserted)
    wait_for(lambda: gw.gateway.serving is not before, timeout=60)


class FlakySource:
    """Marker moves once; the first load after that fails with ``error``, later loads work."""

    label = "flaky source"

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error
        self.generation = 0
        self.loads = 0

    def marker(self) -> int:
        return self.generation

    def load(self) -> tuple[Fleet, int | None]:
        self.loads += 1
        fleet = make_fleet(us_failover=("us-west", "us-east")) if self.generation else make_fleet()
        if self.generation and self.error is not None:
            error, self.error = self.error, None
            raise error
        return fleet, self.generation

    def drains(self) -> Drains:
        return NO_DRAINS


def _gateway_on(source: FlakySource, keys: Keys) -> GatewayApp:
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    settings = GatewaySettings(reload_interval_s=0.05, probe_interval_s=0)
    return GatewayApp(Gateway(source, verifier, settings, AccessLog(None)))


def test_transient_source_errors_are_retried_next_tick(keys: Keys) -> None:
    source = FlakySource(StateError("database is locked"))
    with _gateway_on(source, keys) as app:
        first = app.gateway.serving.table.version
        source.generation = 1
        wait_for(lambda: app.gateway.serving.table.version != first, timeout=3)
        assert app.gateway.reload_error is None


def test_invalid_input_is_not_reverified_every_tick(keys: Keys) -> None:
    source = FlakySource(FleetError([Problem("x.yaml", 1, "", "bad")]))
    with _gateway_on(source, keys) as app:
        first = app.gateway.serving.table.version
        source.generation = 1
        wait_for(lambda: app.gateway.reload_error is not None)
        loads = source.loads
        time.sleep(0.5)  # ten reload intervals: the same broken input is not loaded again
        assert source.loads == loads
        assert app.gateway.serving.table.version == first
