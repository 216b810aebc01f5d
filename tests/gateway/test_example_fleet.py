"""The committed example fleet through the gateway, every site on a loopback stub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.fleet.loader import load_fleet
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import WorkingFleetSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from tests.gateway.support import Keys

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def example_gw(keys: Keys) -> Iterator[GatewayApp]:
    regions = Path(__file__).resolve().parents[2] / "regions"
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    # fleet_dir=None: never look for (or write) anything under the committed regions/.
    settings = GatewaySettings(stub_all_sites=True, reload_interval_s=0, probe_interval_s=0)
    app = GatewayApp(
        Gateway(WorkingFleetSource(regions, load_fleet), verifier, settings, AccessLog(None))
    )
    app.start()
    yield app
    app.stop()


@pytest.mark.parametrize(
    "residency, nationalities, groups, model, expected",
    [
        ("DE", ["DE"], [], "fable-5", "aws-eu-central-1"),
        ("US", ["US"], [], "fable-5", "aws-us-east-1"),
        ("JP", ["JP"], [], "fable-5", "gcp-asia-northeast1"),  # the US-operated JP site is bound
        ("JP", ["JP"], [], "olmo-3", "aws-ap-northeast-1"),
        ("US", ["DE"], ["trusted-partners"], "fable-5", "aws-us-east-1"),
        ("GB", ["GB"], [], "mistral-large-3", "aws-eu-west-2"),
        ("US", ["DE"], [], "fable-5", None),
        ("IN", ["IN"], [], "fable-5", None),
    ],
)
def test_example_routes(
    residency: str,
    nationalities: list[str],
    groups: list[str],
    model: str,
    expected: str | None,
    keys: Keys,
    example_gw: GatewayApp,
    client: httpx.Client,
) -> None:
    r = client.post(
        example_gw.url + CHAT,
        json={"model": model},
        headers=keys.headers(residency, nationalities, groups),
    )
    if expected is None:
        assert r.status_code == 451
        assert r.json()["explanation"]["route"] == []
    else:
        assert r.status_code == 200, r.text
        assert r.headers["x-sovereign-site"] == expected
        assert r.headers["x-stub-site"] == expected


def test_suspension_reasons_name_the_directive_in_force(
    keys: Keys, example_gw: GatewayApp, client: httpx.Client
) -> None:
    r = client.post(
        example_gw.url + CHAT, json={"model": "fable-5"}, headers=keys.headers("US", ["DE"])
    )
    reasons = r.json()["explanation"]["sites"]["aws-us-east-1"]["reasons"]
    assert [(x["rule"], x["ref"]) for x in reasons] == [("directive", "us-doc-2026-06-26")]
