"""/healthz, /metrics and the access log: useful to operators, and free of secrets."""

from __future__ import annotations

import json

import httpx

from tests.gateway.support import Keys, running_gateway

CHAT = "/v1/chat/completions"
PROMPT = "my secret prompt about project zebra"


def test_metrics_and_access_log_hold_no_token_or_prompt(keys: Keys, client: httpx.Client) -> None:
    with running_gateway(keys) as gw:
        good = keys.token("US", ["US"], sub="alice@example.com")
        refused = keys.token("US", ["DE"], sub="bob@example.com")
        forged = keys.token("US", ["US"], exp_in=-10)
        body = {"model": "fable-5", "messages": [{"role": "user", "content": PROMPT}]}
        for token, status in ((good, 200), (refused, 451), (forged, 401)):
            r = client.post(gw.url + CHAT, json=body, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == status
        gw.stubs["us-east"].stop()
        assert (
            client.post(
                gw.url + CHAT, json=body, headers={"Authorization": f"Bearer {good}"}
            ).status_code
            == 200
        )
        metrics = client.get(gw.url + "/metrics").text
        log = "\n".join(gw.log)
    assert (
        'sovereign_gateway_requests_total{model="fable-5",outcome="ok",site="us-east"} 1.0'
        in metrics
    )
    assert (
        'sovereign_gateway_requests_total{model="fable-5",outcome="refused",site=""} 1.0' in metrics
    )
    assert 'sovereign_gateway_refusals_total{model="fable-5"} 1.0' in metrics
    assert 'sovereign_gateway_failovers_total{model="fable-5",site="us-east"} 1.0' in metrics
    assert "sovereign_gateway_decision_seconds_bucket" in metrics
    assert 'sovereign_gateway_upstream_seconds_count{site="us-west"}' in metrics
    for secret in (good, refused, forged, PROMPT, "zebra", "alice@example.com", "bob@example"):
        assert secret not in metrics
        assert secret not in log
    records = [json.loads(line) for line in gw.log]
    requests = [r for r in records if r.get("path") == CHAT]
    assert [r["status"] for r in requests] == [200, 451, 401, 200]
    first = requests[0]
    assert {
        "ts",
        "method",
        "path",
        "model",
        "status",
        "site",
        "table",
        "latency_ms",
        "residency",
    } <= set(first)
    assert first["site"] == "us-east" and first["residency"] == "US"
    assert first["auth"] == "token"
    issuer, _, sub_hash = first["caller"].partition("#")  # never the token or ``sub`` itself
    assert issuer == keys.issuer and len(sub_hash) == 16
    assert requests[3]["site"] == "us-west" and requests[3]["failed_over"] == ["us-east"]


def test_unknown_model_names_do_not_grow_metric_labels(keys: Keys, client: httpx.Client) -> None:
    with running_gateway(keys) as gw:
        h = keys.headers("US", ["US"])
        for i in range(5):
            client.post(gw.url + CHAT, json={"model": f"invented-{i}"}, headers=h)
        metrics = client.get(gw.url + "/metrics").text
    assert "invented" not in metrics
    assert 'model="unknown",outcome="unknown_model"' in metrics


def test_healthz_reports_table_and_sites(keys: Keys, client: httpx.Client) -> None:
    with running_gateway(keys) as gw:
        health = client.get(gw.url + "/healthz").json()
        assert health["status"] == "ok"
        assert health["table"] == gw.gateway.serving.table.version
        assert health["sites_down"] == []
        assert set(health["sites_up"]) == {
            "us-east",
            "us-west",
            "eu-central",
            "eu-west",
            "jp-us",
            "jp-kk",
        }
        assert all(info["upstream"] for info in health["sites"].values())
