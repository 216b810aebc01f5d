"""Routing over real HTTP: the route decides, health only reorders, 451 explains."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx

from orchestrator.fleet.model import Audience
from orchestrator.policy.explain import explain
from orchestrator.policy.principal import Principal
from tests.gateway.support import (
    Keys,
    Running,
    make_fleet,
    running_gateway,
    soon,
    suspend,
    wait_for,
)

CHAT = "/v1/chat/completions"


def chat(
    client: httpx.Client, gw: Running, headers: dict[str, str], model: str, **body: object
) -> httpx.Response:
    return client.post(
        gw.url + CHAT, json={"model": model, "messages": [], **body}, headers=headers
    )


def test_served_by_first_site_of_route(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    r = chat(client, shared_gw, keys.headers("DE", ["DE"]), "fable-5")
    assert r.status_code == 200
    assert r.headers["x-sovereign-site"] == "eu-central"
    assert r.headers["x-stub-site"] == "eu-central"
    assert r.headers["x-sovereign-table"] == shared_gw.gateway.serving.table.version
    assert r.json()["choices"][0]["message"]["content"] == "served by eu-central (fable-5)"


def test_every_endpoint_is_routed(keys: Keys, shared_gw: Running, client: httpx.Client) -> None:
    h = keys.headers("JP", ["JP"])
    c = client.post(
        shared_gw.url + "/v1/completions", json={"model": "olmo-3", "prompt": "x"}, headers=h
    )
    e = client.post(
        shared_gw.url + "/v1/embeddings", json={"model": "olmo-3", "input": "x"}, headers=h
    )
    assert c.status_code == 200 and c.headers["x-sovereign-site"] == "jp-us"
    assert e.status_code == 200 and e.json()["site"] == "jp-us"


def test_451_carries_the_explanation(keys: Keys, shared_gw: Running, client: httpx.Client) -> None:
    before = shared_gw.hits()
    r = chat(client, shared_gw, keys.headers("US", ["DE"]), "fable-5")
    assert r.status_code == 451
    body = r.json()
    assert body["error"]["type"] == "unavailable_for_legal_reasons"
    explanation = body["explanation"]
    assert explanation["route"] == []
    assert explanation["home"] == "US"
    for sid in ("us-east", "us-west"):
        assert explanation["sites"][sid] == {
            "allowed": False,
            "reasons": [
                {
                    "rule": "directive",
                    "ref": "us-doc",
                    "message": "suspended by US for this principal: ref us-doc",
                }
            ],
        }
    # Exactly what `sovereign explain` says for the same query.
    fleet = shared_gw.gateway.serving.table.fleet
    expected = explain(fleet, "fable-5", Principal.of("US", ["DE"]), datetime.now(UTC))
    assert explanation == json.loads(json.dumps(expected.to_json()))
    assert shared_gw.hits() == before


def test_451_for_residency_outside_every_jurisdiction(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    r = chat(client, shared_gw, keys.headers("BR", ["BR"]), "olmo-3")
    assert r.status_code == 451
    reasons = r.json()["explanation"]["sites"]["us-east"]["reasons"]
    assert reasons[0]["rule"] == "no_jurisdiction"


def test_unknown_model_and_bad_body(keys: Keys, shared_gw: Running, client: httpx.Client) -> None:
    h = keys.headers("US", ["US"])
    assert chat(client, shared_gw, h, "no-such-model").status_code == 404
    r = client.post(shared_gw.url + CHAT, content=b"{not json", headers=h)
    assert r.status_code == 400
    r = client.post(shared_gw.url + CHAT, json={"model": 5}, headers=h)
    assert r.status_code == 400


def test_models_listed_per_principal(keys: Keys, shared_gw: Running, client: httpx.Client) -> None:
    def models(*principal: object) -> list[str]:
        r = client.get(shared_gw.url + "/v1/models", headers=keys.headers(*principal))
        assert r.status_code == 200
        return [m["id"] for m in r.json()["data"]]

    assert models("US", ["US"]) == ["fable-5", "olmo-3"]
    assert models("US", ["DE"]) == ["olmo-3"]
    assert models("DE", ["DE"]) == ["fable-5", "mistral", "olmo-3"]
    assert models("US") == ["olmo-3"]  # unknown nationality: the suspension matches (fail closed)
    assert models("BR", ["BR"]) == []


def test_failover_stays_inside_the_route(keys: Keys, gw: Running, client: httpx.Client) -> None:
    jp_national = keys.headers("JP", ["JP"])
    assert chat(client, gw, jp_national, "olmo-3").headers["x-sovereign-site"] == "jp-us"
    gw.stubs["jp-us"].stop()  # killed mid-run
    before = gw.hits()
    r = chat(client, gw, jp_national, "olmo-3")
    assert r.status_code == 200
    assert r.headers["x-sovereign-site"] == "jp-kk"
    after = gw.hits()
    changed = {s for s in after if after[s] != before[s]}
    assert changed == {"jp-kk"}
    # fable-5 for a JP national may only be served at jp-kk (jp-us is bound by the US
    # suspension). With jp-kk dead too, the answer is an error, not a site outside the route.
    gw.stubs["jp-kk"].behaviour.fail_status = 500
    healthy_elsewhere = gw.hits()
    r = chat(client, gw, jp_national, "fable-5")
    assert r.status_code == 502
    assert [t["site"] for t in r.json()["error"]["sites_tried"]] == ["jp-kk"]
    assert gw.hits() == healthy_elsewhere
    r = chat(client, gw, jp_national, "olmo-3")
    assert r.status_code == 502
    assert sorted(t["site"] for t in r.json()["error"]["sites_tried"]) == ["jp-kk", "jp-us"]
    assert gw.hits() == healthy_elsewhere


def test_all_sites_unreachable_is_503(keys: Keys, gw: Running, client: httpx.Client) -> None:
    gw.stubs["us-east"].stop()
    gw.stubs["us-west"].stop()
    r = chat(client, gw, keys.headers("US", ["US"]), "fable-5")
    assert r.status_code == 503
    tried = r.json()["error"]["sites_tried"]
    assert [t["site"] for t in tried] == ["us-east", "us-west"]
    assert all(t["error"] == "ConnectError" for t in tried)


def test_health_reorders_within_the_route(keys: Keys, client: httpx.Client) -> None:
    with running_gateway(keys, base_backoff_s=1.0) as gw:
        _check_health_reorders(keys, gw, client)


def _check_health_reorders(keys: Keys, gw: Running, client: httpx.Client) -> None:
    h = keys.headers("US", ["US"])
    east = gw.stubs["us-east"]
    east.behaviour.fail_status = 503
    r = chat(client, gw, h, "olmo-3")
    assert r.headers["x-sovereign-site"] == "us-west"
    assert not gw.gateway.health.is_up("us-east")
    east.behaviour.fail_status = None
    # While us-east is backing off it is tried last: us-west serves without a try at us-east.
    r = chat(client, gw, h, "olmo-3")
    assert r.headers["x-sovereign-site"] == "us-west"
    assert east.total_hits == 0
    wait_for(lambda: gw.gateway.health.is_up("us-east"), timeout=3)  # the 1 s backoff ends
    assert chat(client, gw, h, "olmo-3").headers["x-sovereign-site"] == "us-east"
    assert gw.gateway.health.is_up("us-east")


def test_active_probe_marks_sites(keys: Keys, client: httpx.Client) -> None:
    with running_gateway(keys, probe_interval_s=0.05) as gw:
        gw.stubs["eu-west"].behaviour.fail_status = 503
        wait_for(lambda: not gw.gateway.health.is_up("eu-west"))
        health = client.get(gw.url + "/healthz").json()
        assert health["sites_down"] == ["eu-west"]
        assert health["status"] == "degraded"
        # A probe failure never widens a route: a DE principal still goes to eu-central only
        # if allowed; eu-west is tried last, not skipped.
        gw.stubs["eu-central"].behaviour.fail_status = 503
        r = chat(client, gw, keys.headers("DE", ["DE"]), "mistral")
        assert r.status_code == 502
        assert [t["site"] for t in r.json()["error"]["sites_tried"]] == ["eu-central", "eu-west"]
        gw.stubs["eu-west"].behaviour.fail_status = None
        gw.stubs["eu-central"].behaviour.fail_status = None
        wait_for(lambda: client.get(gw.url + "/healthz").json()["sites_down"] == [])


def test_stream_passes_through_unbuffered(keys: Keys, gw: Running, client: httpx.Client) -> None:
    stub = gw.stubs["us-east"]
    stub.behaviour.stream_chunks = 4
    stub.behaviour.chunk_delay_s = 0.25
    started = time.monotonic()
    arrivals: list[float] = []
    lines: list[str] = []
    with client.stream(
        "POST",
        gw.url + CHAT,
        json={"model": "olmo-3", "stream": True},
        headers=keys.headers("US", ["US"]),
    ) as r:
        assert r.status_code == 200
        assert r.headers["x-sovereign-site"] == "us-east"
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line:
                arrivals.append(time.monotonic() - started)
                lines.append(line)
    assert lines[-1] == "data: [DONE]"
    text = "".join(json.loads(x[6:])["choices"][0]["delta"].get("content", "") for x in lines[:-1])
    assert text == "served by us-east (olmo-3)"
    # The stub needs >= 0.75 s for the whole stream; the first chunk must not wait for it.
    assert arrivals[-1] >= 0.7
    assert arrivals[0] < arrivals[-1] - 0.5


def test_stream_fails_over_before_the_first_byte(
    keys: Keys, gw: Running, client: httpx.Client
) -> None:
    gw.stubs["us-east"].behaviour.fail_status = 500
    with client.stream(
        "POST",
        gw.url + CHAT,
        json={"model": "olmo-3", "stream": True},
        headers=keys.headers("US", ["US"]),
    ) as r:
        body = r.read().decode()
    assert r.headers["x-sovereign-site"] == "us-west"
    assert "chatcmpl-us-west" in body and body.endswith("data: [DONE]\n\n")


def test_directive_epoch_needs_no_reload(keys: Keys, client: httpx.Client) -> None:
    # A suspension of olmo-3 for everyone at US-governed sites, effective in a moment.
    effective = soon(2.0)
    later = suspend("us-later", {"olmo-3"}, Audience(), effective=effective)
    with running_gateway(keys, make_fleet((later,)), reload_interval_s=0) as gw:
        h = keys.headers("US", ["US"])
        r = chat(client, gw, h, "olmo-3")
        assert datetime.now(UTC) < effective, "the machine is too slow for this test's margin"
        assert r.status_code == 200
        version = gw.gateway.serving.table.version
        time.sleep(max(0.0, (effective - datetime.now(UTC)).total_seconds()) + 0.05)
        r = chat(client, gw, h, "olmo-3")
        assert r.status_code == 451
        assert r.json()["explanation"]["sites"]["us-east"]["reasons"][0]["ref"] == "us-later"
        assert gw.gateway.serving.table.version == version  # the same table, a later epoch


def test_oversized_body_is_refused_before_routing(keys: Keys, client: httpx.Client) -> None:
    with running_gateway(keys, max_body_bytes=1000) as gw:
        h = keys.headers("US", ["US"])
        big = {"model": "olmo-3", "messages": [{"role": "user", "content": "x" * 2000}]}
        r = client.post(gw.url + CHAT, json=big, headers=h)
        assert r.status_code == 413
        assert gw.hits() == dict.fromkeys(gw.stubs, 0)
        assert chat(client, gw, h, "olmo-3").status_code == 200


def test_timeouts_fail_over_and_a_hanging_site_starves_nothing(keys: Keys) -> None:
    with running_gateway(keys, upstream_timeout_s=0.5, max_connections_per_upstream=4) as gw:
        gw.stubs["us-east"].behaviour.delay_s = 2.0  # hangs past the timeout
        h = keys.headers("US", ["US"])

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
                return list(
                    await asyncio.gather(
                        *(
                            c.post(gw.url + CHAT, json={"model": "olmo-3"}, headers=h)
                            for _ in range(12)
                        )
                    )
                )

        responses = asyncio.run(burst())
        # More requests than us-east's pool holds: they queue there, time out, and us-west,
        # with a pool of its own, still serves every one of them.
        assert [r.status_code for r in responses] == [200] * 12
        assert {r.headers["x-sovereign-site"] for r in responses} == {"us-west"}
        assert gw.stubs["us-east"].total_hits == 0
        assert not gw.gateway.health.is_up("us-east")
        assert any('"failed_over":["us-east"]' in line for line in gw.log)
