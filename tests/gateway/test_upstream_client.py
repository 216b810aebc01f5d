"""The gateway's upstream client, against a hand-written upstream on loopback (real HTTP):
no cookie carried from one principal's request to the next, compressed answers decoded, and
the hot-path dispatch leaves every other method and path to the router."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.stubs.server import BackgroundServer
from tests.gateway.support import Keys, running_gateway

CHAT = "/v1/chat/completions"


async def _chat(request: Request) -> Response:
    seen = {"cookie": request.headers.get("cookie")}
    payload = json.dumps(seen).encode()
    if (await request.json()).get("gzip"):
        return Response(
            gzip.compress(payload),
            media_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )
    response = Response(payload, media_type="application/json")
    response.set_cookie("session", "whoever-came-first")
    return response


async def _healthz(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    app = Starlette(
        routes=[Route(CHAT, _chat, methods=["POST"]), Route("/healthz", _healthz, methods=["GET"])]
    )
    server = BackgroundServer(app, name="cookie-upstream")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_upstream_cookies_are_never_replayed(
    keys: Keys, upstream: str, client: httpx.Client
) -> None:
    with running_gateway(keys, upstream_overrides={"us-east": upstream}) as gw:
        first = client.post(
            gw.url + CHAT, json={"model": "olmo-3"}, headers=keys.headers("US", ["US"], sub="alice")
        )
        second = client.post(
            gw.url + CHAT, json={"model": "olmo-3"}, headers=keys.headers("US", ["US"], sub="bob")
        )
    assert first.status_code == second.status_code == 200
    assert second.headers["x-sovereign-site"] == "us-east"
    assert second.json() == {"cookie": None}


def test_compressed_answers_are_passed_on_decoded(
    keys: Keys, upstream: str, client: httpx.Client
) -> None:
    with running_gateway(keys, upstream_overrides={"us-east": upstream}) as gw:
        r = client.post(
            gw.url + CHAT,
            json={"model": "olmo-3", "gzip": True},
            headers={**keys.headers("US", ["US"]), "Accept-Encoding": "identity"},
        )
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.content == b'{"cookie": null}'


def test_other_methods_on_model_paths_go_to_the_router(
    keys: Keys, upstream: str, client: httpx.Client
) -> None:
    with running_gateway(keys, upstream_overrides={"us-east": upstream}) as gw:
        r = client.get(gw.url + CHAT, headers=keys.headers("US", ["US"]))
    assert r.status_code == 405
