"""``sovereign authz``: the gateway's decision for nginx and Envoy, over real HTTP and gRPC.

The in-process authz is the same ``Enforcer`` as the gateway (table, reloads, drains, health):
every answer is checked against the reference law (``rules.route``), over httpx and over a real
gRPC channel with Envoy's published protos; the CLI is run as a subprocess once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.fleet.drain import Drain, Drains
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.app import GatewaySettings
from orchestrator.gateway.authz import Authz
from orchestrator.gateway.authz_server import AuthzServer
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp, bind
from orchestrator.gateway.sources import StaticSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from tests.gateway.support import Keys, make_fleet, make_keys, wait_for

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running_authz(
    keys: Keys, fleet: Fleet | None = None, grpc_port: int | None = None, lean: bool = True
) -> Iterator[tuple[Authz, StaticSource, str]]:
    """authz in-process: its own HTTP server (``lean``, what ``sovereign authz`` runs) or its
    ASGI app under uvicorn."""
    source = StaticSource(fleet if fleet is not None else make_fleet())
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience, keys.issuer)
    log: list[str] = []
    authz = Authz(
        source,
        verifier,
        GatewaySettings(reload_interval_s=0.05, probe_interval_s=0, stub_all_sites=True),
        AccessLog(log.append),
        grpc_port=grpc_port,
    )
    app: GatewayApp | AuthzServer
    app = AuthzServer(authz, bind("127.0.0.1", 0)) if lean else GatewayApp(authz)
    url = app.start()
    try:
        yield authz, source, url
    finally:
        app.stop()


@pytest.fixture(scope="module")
def module_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("authz-keys"))


@pytest.fixture(scope="module")
def authz_url(module_keys: Keys) -> Iterator[tuple[Authz, StaticSource, str]]:
    with running_authz(module_keys, grpc_port=0) as running:
        yield running


def ask(url: str, headers: dict[str, str], method: str = "POST", path: str = "/check") -> Any:
    with httpx.Client(timeout=10) as client:
        return client.request(method, url + path, headers=headers)


def test_allowed_refused_unknown_and_unauthenticated_over_http(
    module_keys: Keys, authz_url: tuple[Authz, StaticSource, str]
) -> None:
    authz, _, url = authz_url
    german = module_keys.headers("DE", ["DE"])
    r = ask(url, {**german, "X-Sovereign-Model": "fable-5"})
    assert r.status_code == 200 and r.content == b""
    assert r.headers["x-sovereign-route"] == "eu-central,eu-west"
    assert r.headers["x-sovereign-site"] == "eu-central"
    upstreams = authz.serving.upstreams
    assert r.headers["x-sovereign-upstream"] == upstreams["eu-central"]
    assert r.headers["x-sovereign-upstreams"] == f"{upstreams['eu-central']},{upstreams['eu-west']}"
    assert r.headers["x-sovereign-cluster"] == "sovereign-site-eu-central"
    # any method and path (nginx sends its auth_request URI, Envoy its prefix + the path)
    for method, path in (("GET", "/"), ("DELETE", "/authz/v1/chat/completions"), ("PUT", "/x")):
        r = ask(url, {**german, "x-gateway-model-name": "fable-5"}, method, path)
        assert r.status_code == 200 and r.headers["x-sovereign-site"] == "eu-central", path
    # a German in the US: the US directive refuses, 451 with the explanation
    r = ask(url, {**module_keys.headers("US", ["DE"]), "X-Sovereign-Model": "fable-5"})
    assert r.status_code == 451
    body = r.json()
    assert body["error"]["type"] == "unavailable_for_legal_reasons"
    assert body["explanation"]["route"] == []
    reasons = body["explanation"]["sites"]["us-east"]["reasons"]
    assert [x["ref"] for x in reasons if x["rule"] == "directive"] == ["us-doc"]
    r = ask(url, {**german, "X-Sovereign-Model": "gpt-9"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = ask(url, german)
    assert r.status_code == 400 and "X-Sovereign-Model" in r.json()["error"]["message"]
    r = ask(url, {"X-Sovereign-Model": "fable-5"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = ask(url, {"Authorization": "Bearer nope", "X-Sovereign-Model": "fable-5"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    # management paths stay what they are
    health = ask(url, {}, "GET", "/healthz").json()
    assert health["table"] == authz.serving.table.version


def test_nginx_mode_carries_the_real_answer_in_headers(
    module_keys: Keys, authz_url: tuple[Authz, StaticSource, str]
) -> None:
    _, _, url = authz_url
    nginx = {"X-Sovereign-Proxy": "nginx", "X-Sovereign-Model": "fable-5"}
    direct = ask(url, {**module_keys.headers("US", ["DE"]), "X-Sovereign-Model": "fable-5"})
    r = ask(url, {**module_keys.headers("US", ["DE"]), **nginx})
    assert r.status_code == 403 and r.headers["x-sovereign-status"] == "451"
    assert json.loads(r.headers["x-sovereign-body"]) == direct.json()
    assert r.headers["x-sovereign-body"].encode() == direct.content  # byte for byte
    r = ask(url, nginx)
    assert r.status_code == 403 and r.headers["x-sovereign-status"] == "401"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = ask(url, {**module_keys.headers("DE", ["DE"]), **nginx})
    assert r.status_code == 200 and "x-sovereign-status" not in r.headers


def check(port: int, headers: dict[str, str]) -> Any:
    request = external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(
                http=attribute_context_pb2.AttributeContext.HttpRequest(
                    method="POST", path="/v1/chat/completions", headers=headers
                )
            )
        )
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        return stub.Check(request, timeout=10)


def test_grpc_check_answers_allowed_refused_drained_and_unauthenticated(
    keys: Keys, tmp_path: Path
) -> None:
    with running_authz(keys, grpc_port=0) as (authz, source, _):
        port = authz.grpc_port
        assert port
        german = {
            "authorization": keys.headers("DE", ["DE"])["Authorization"],
            "x-sovereign-model": "fable-5",
        }
        ok = check(port, german)
        assert ok.status.code == 0 and ok.HasField("ok_response")
        added = {h.header.key: h.header.value for h in ok.ok_response.headers}
        assert added["x-sovereign-route"] == "eu-central,eu-west"
        assert added["x-sovereign-cluster"] == "sovereign-site-eu-central"
        assert list(ok.ok_response.headers_to_remove) == ["authorization"]
        refused = check(
            port, {**german, "authorization": keys.headers("US", ["DE"])["Authorization"]}
        )
        assert refused.status.code == 7 and refused.denied_response.status.code == 451
        assert json.loads(refused.denied_response.body)["explanation"]["route"] == []
        anonymous = check(port, {"x-sovereign-model": "fable-5"})
        assert anonymous.status.code == 16 and anonymous.denied_response.status.code == 401
        www = {h.header.key: h.header.value for h in anonymous.denied_response.headers}
        assert www["www-authenticate"].startswith("Bearer")
        # Drain both EU sites: an outage, not the law (503 naming them), within the reload.
        now = datetime.now(UTC)
        source.set_drains(
            Drains(
                tuple(
                    Drain(s, "EU", "INC-1", "oncall@test", now) for s in ("eu-central", "eu-west")
                ),
                "1",
            )
        )
        wait_for(lambda: check(port, german).denied_response.status.code == 503)
        drained = check(port, german)
        assert drained.status.code == 14
        error = json.loads(drained.denied_response.body)["error"]
        assert error["type"] == "site_unavailable" and error["sites"] == ["eu-central", "eu-west"]
        # the gateway-model header Envoy AI Gateway sets is read as well
        gw = check(
            port, {"authorization": german["authorization"], "x-gateway-model-name": "olmo-3"}
        )
        assert gw.denied_response.status.code == 503


PEOPLE = st.tuples(
    st.sampled_from(["US", "DE", "FR", "JP", "BR"]),
    st.lists(st.sampled_from(["US", "DE", "JP", "CN"]), max_size=2, unique=True),
    st.sampled_from(["fable-5", "olmo-3", "mistral"]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(person=PEOPLE)
def test_every_answer_is_the_law(
    module_keys: Keys,
    authz_url: tuple[Authz, StaticSource, str],
    person: tuple[str, list[str], str],
) -> None:
    authz, _, url = authz_url
    residency, nats, model = person
    fleet = authz.serving.table.fleet
    legal = rules.route(fleet, model, Principal.of(residency, nats, []), datetime.now(UTC))
    r = ask(url, {**module_keys.headers(residency, nats), "X-Sovereign-Model": model})
    if legal:
        assert r.status_code == 200
        assert tuple(r.headers["x-sovereign-route"].split(",")) == legal
        assert r.headers["x-sovereign-site"] in legal
    else:
        assert r.status_code == 451


@pytest.mark.slow  # authz processes
@pytest.mark.parametrize("workers", [1, 2])
def test_the_cli_serves_http_and_grpc_and_stops_cleanly(
    keys: Keys, tmp_path: Path, workers: int
) -> None:
    fleet = tmp_path / "fleet"
    subprocess.run(["cp", "-r", str(REPO / "regions"), str(fleet)], check=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "authz",
            "--token-key",
            str(keys.public_pem_path),
            "--token-issuer",
            keys.issuer,
            "--fleet",
            str(fleet),
            "--serve-working-fleet",
            "--stub-upstreams",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--workers",
            str(workers),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        started = json.loads(line)
        assert started["url"].startswith("http://127.0.0.1:") and started["workers"] == workers
        german = keys.headers("DE", ["DE"])
        for _ in range(4):  # a new connection each: SO_REUSEPORT spreads them over the workers
            r = ask(started["url"], {**german, "X-Sovereign-Model": "fable-5"})
            assert r.status_code == 200
            assert r.headers["x-sovereign-route"] == "aws-eu-central-1,gcp-europe-west4"
        grpc_port = int(started["grpc"].rpartition(":")[2])
        answer = check(
            grpc_port, {"authorization": german["Authorization"], "x-sovereign-model": "fable-5"}
        )
        assert answer.status.code == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_the_asgi_app_and_the_lean_server_answer_alike(module_keys: Keys) -> None:
    """authz's own HTTP server and its ASGI app (both over ``http_answer``) give the same
    status, headers and bytes; pipelined requests and management paths included."""
    people = [("DE", ["DE"]), ("US", ["DE"]), ("US", ["US"]), ("JP", [])]
    with (
        running_authz(module_keys, lean=False) as (_, _, asgi),
        running_authz(module_keys) as (_, _, lean),
    ):
        for who in people:
            for model in ("fable-5", "olmo-3", "gpt-9"):
                headers = {**module_keys.headers(*who), "X-Sovereign-Model": model}
                for proxy in ({}, {"X-Sovereign-Proxy": "nginx"}):
                    a, b = ask(asgi, {**headers, **proxy}), ask(lean, {**headers, **proxy})
                    assert (a.status_code, a.content) == (b.status_code, b.content)
                    names = {k for k in a.headers if k.startswith("x-sovereign")}
                    assert names == {k for k in b.headers if k.startswith("x-sovereign")}
                    # the same answer; the upstream URLs are each instance's own stubs
                    keep = names - {"x-sovereign-upstream", "x-sovereign-upstreams"}
                    assert {k: a.headers[k] for k in keep} == {k: b.headers[k] for k in keep}
        assert ask(lean, {}, "GET", "/metrics").text.startswith("#")
        assert ask(lean, {}, "POST", "/admin/reload").json()["table"]
        # three requests in one write, answered in order on one connection
        token = module_keys.headers("DE", ["DE"])["Authorization"]
        one = f"GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
        one += "X-Sovereign-Model: fable-5\r\n\r\n"
        two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        three = (
            "GET /b HTTP/1.1\r\nHost: x\r\nX-Sovereign-Model: fable-5\r\nConnection: close\r\n\r\n"
        )
        host, port = lean.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall((one + two + three).encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", data) == [b"200", b"200", b"401"]
        # a malformed request is a 400, never a crash
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"NOT HTTP\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 400")
