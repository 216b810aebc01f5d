"""The gateway honours drains (docs/runbooks.md) within its reload interval, over real HTTP.

A real signed fleet, a real SQLite state, real stub upstreams: draining a site sends its
traffic to the next site of each route and nowhere else, the rest of the fleet keeps serving,
and restoring brings it back, all without a restart.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from orchestrator.fleet.drain import Drain, Drains
from orchestrator.state import StateStore, open_store
from tests.fleet.builder import FleetFactory
from tests.gateway.support import Keys
from tests.gateway.test_applied import CHAT, applied_gateway, deploy, record

LOCAL_EU2 = {
    "eu.yaml": [
        ("provider: aws\n    region: eu-central-1", "provider: local\n    region: local-eu2")
    ]
}


def set_drains(store: StateStore, *sites: str) -> Drains:
    now = datetime.now(UTC)
    drains = tuple(Drain(s, "EU", "INC-7", "oncall@test", now) for s in sites)
    return store.replace_drains(
        drains,
        expected_version=store.drains().version,
        audit_kind="drain.added" if sites else "drain.lifted",
        audit_payload={"sites": list(sites)},
    )


def site_for(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[int, str]:
    r = client.post(url + CHAT, json={"model": "m-open"}, headers=headers)
    return r.status_code, r.headers.get("x-sovereign-site", "")


def until_site(
    client: httpx.Client, url: str, headers: dict[str, str], want: tuple[int, str]
) -> float:
    started = time.monotonic()
    while True:
        got = site_for(client, url, headers)
        if got == want:
            return time.monotonic() - started
        assert time.monotonic() - started < 60, f"still {got}, wanted {want}"  # generous


def test_a_drained_site_stops_receiving_and_the_rest_keeps_serving(
    keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client, tmp_path: Path
) -> None:
    root = signed_fleet_factory(mutate=LOCAL_EU2)
    for site in ("eu-1", "eu-2", "us-1"):
        deploy(root, site, "m-open")
    store = open_store(None, root)
    record(store, root)
    german, american = keys.headers("DE", ["DE"]), keys.headers("US", ["US"])
    with applied_gateway(keys, store, root) as (app, _log):
        assert site_for(client, app.url, german) == (200, "eu-1")
        set_drains(store, "eu-1")
        until_site(client, app.url, german, (200, "eu-2"))  # (no wall-clock bound)
        # From now on, never the drained site; the other jurisdiction is untouched.
        for _ in range(20):
            assert site_for(client, app.url, german) == (200, "eu-2")
            assert site_for(client, app.url, american) == (200, "us-1")
        # Both EU sites drained: the German is not served (never sent outside the EU), and
        # it is an outage, not the law: 503 site_unavailable naming the drained sites.
        set_drains(store, "eu-1", "eu-2")
        until_site(client, app.url, german, (503, ""))
        r = client.post(app.url + CHAT, json={"model": "m-open"}, headers=german)
        error = r.json()["error"]
        assert error["type"] == "site_unavailable" and error["sites"] == ["eu-1", "eu-2"]
        assert r.headers["x-sovereign-table"]
        sites = r.json()["explanation"]["sites"]
        assert sites["eu-1"]["allowed"] and sites["eu-1"]["drained"] is True
        assert sites["eu-2"]["drained"] is True and "drained" not in sites["us-1"]
        assert r.json()["explanation"]["route"] == []
        assert site_for(client, app.url, american) == (200, "us-1")
        # The law's refusal stays a 451 while the drains are in force (a residency no
        # jurisdiction lists: refused by R0 at every site, drained or not).
        r = client.post(app.url + CHAT, json={"model": "m-open"}, headers=keys.headers("JP", []))
        assert r.status_code == 451
        assert r.json()["error"]["type"] == "unavailable_for_legal_reasons"
        # Restore: instant, no apply, no restart.
        set_drains(store)
        until_site(client, app.url, german, (200, "eu-1"))
        assert app.gateway.serving.table.serial == store.serial()
