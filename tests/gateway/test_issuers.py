"""OIDC issuers (``--issuers``) against a real loopback JWKS server that rotates its keys.

The identity provider here is a small HTTP server on 127.0.0.1 serving a discovery document
and a JWKS with ``Cache-Control: max-age``; tokens are signed with its current private keys.
The gateway runs for real (stub upstreams on loopback) and learns the keys only from the JWKS.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.fleet.loader import load_fleet
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.authn import Authenticator, KeyBook
from orchestrator.gateway.issuers import Issuers, load_issuers
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import StaticSource
from tests.cli.support import run_cli
from tests.fleet.builder import FleetFactory, tenant_yaml
from tests.gateway.support import wait_for

CHAT = "/v1/chat/completions"
ISS = "https://idp.example/realms/acme"


@dataclass
class Idp:
    """A loopback OIDC provider: discovery + JWKS, keys added and removed at will."""

    max_age: int = 1
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    fetches: int = 0
    down: bool = False
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "ES256"})
        return {"keys": out}

    def token(self, kid: str, *, exp_in: int = 300, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISS, "aud": "sovereign-gw", "sub": "alice@acme", "exp": now + exp_in}
        body.update(claims)
        return jwt.encode(body, self.keys[kid], algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[Idp]:
    state = Idp()
    state.add("k1")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if state.down:
                self.send_response(503)
                self.end_headers()
                return
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": ISS, "jwks_uri": f"{state.url}/jwks"}
            elif self.path == "/jwks":
                state.fetches += 1
                body = state.jwks()
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", f"public, max-age={state.max_age}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.server.shutdown()
        state.server.server_close()
        thread.join(timeout=10)


def issuers_file(tmp_path: Path, idp: Idp, extra: str = "") -> Path:
    path = tmp_path / "issuers.yaml"
    path.write_text(
        "issuers:\n"
        f"  - issuer: {ISS}\n"
        f"    discovery: {idp.url}/.well-known/openid-configuration\n"
        "    audience: sovereign-gw\n"
        "    claims:\n"
        "      residency: address.country\n"
        "      nationalities: citizenship\n"
        "      groups: roles\n"
        "    min_cache_seconds: 0.5\n"
        "    refresh_seconds: 0.2\n" + extra
    )
    return path


@pytest.fixture
def gateway(
    tmp_path: Path, idp: Idp, signed_fleet_factory: FleetFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[GatewayApp, list[str]]]:
    extra = getattr(request, "param", "")
    root = signed_fleet_factory({"tenants/acme.yaml": tenant_yaml("acme", "DE", ("DE",))})
    issuers = Issuers(load_issuers(issuers_file(tmp_path, idp, extra)))
    log: list[str] = []
    settings = GatewaySettings(stub_all_sites=True, reload_interval_s=0.05, probe_interval_s=0)
    authn = Authenticator(None, KeyBook(), issuers)
    app = GatewayApp(
        Gateway(StaticSource(load_fleet(root)), authn, settings, AccessLog(log.append))
    )
    app.start()
    try:
        yield app, log
    finally:
        app.stop()


def _post(app: GatewayApp, token: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.post(
            app.url + CHAT,
            json={"model": "m-open", "messages": []},
            headers={"Authorization": f"Bearer {token}"},
        )


def _de(idp: Idp, kid: str, **claims: Any) -> str:
    return idp.token(kid, address={"country": "DE"}, citizenship=["DE"], **claims)


def test_mapped_nested_claims_and_key_rotation_without_restart(
    idp: Idp, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, log = gateway
    r = _post(app, _de(idp, "k1"))
    assert r.status_code == 200 and r.headers["x-sovereign-site"] == "eu-1"
    line = next(json.loads(x) for x in log if '"status":200' in x)
    assert line["auth"] == "issuer" and line["caller"].startswith(ISS + "#")
    assert "alice" not in line["caller"]
    # Nationality as a single string (as some IdPs put it) is a list of one.
    assert (
        _post(app, idp.token("k1", address={"country": "US"}, citizenship="DE")).status_code == 200
    )
    # The IdP rotates: k2 added and k1 removed. A k2 token is accepted without a restart
    # (unknown kid: one refresh, at most once per refresh_seconds).
    idp.add("k2")
    del idp.keys["k1"]
    wait_for(lambda: _post(app, _de(idp, "k2", jti="a")).status_code == 200, timeout=20)
    # A token of the removed key is refused (after the cache: here it was just refreshed).
    old = jwt.encode(
        {"iss": ISS, "aud": "sovereign-gw", "exp": int(time.time()) + 300,
         "address": {"country": "DE"}},
        ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"},
    )  # fmt: skip
    r = _post(app, old)
    assert r.status_code == 401 and "k1" in r.json()["error"]["message"]


def test_removed_key_is_refused_after_the_cache_even_for_a_remembered_token(
    idp: Idp, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, _ = gateway
    idp.add("k2")
    token = _de(idp, "k1")
    assert _post(app, token).status_code == 200  # verified, remembered
    del idp.keys["k1"]
    # Once the cached key set expires (max-age=1) the set is fetched again; k1 is gone.
    wait_for(lambda: _post(app, token).status_code == 401, timeout=20)
    assert _post(app, _de(idp, "k2")).status_code == 200


def test_jwks_down_past_the_cache_is_refused_with_a_metric_and_a_log_line(
    idp: Idp, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, log = gateway
    token = _de(idp, "k1")
    assert _post(app, token).status_code == 200
    idp.down = True
    wait_for(lambda: _post(app, token).status_code == 401, timeout=20)
    r = _post(app, _de(idp, "k1", jti="fresh"))
    assert r.status_code == 401 and "unavailable" in r.json()["error"]["message"]
    events = [json.loads(x) for x in log if "jwks.unavailable" in x]
    assert events and events[0]["issuer"] == ISS and "503" in events[0]["error"]
    with httpx.Client(trust_env=False) as client:
        metrics = client.get(app.url + "/metrics").text
    assert f'sovereign_gateway_jwks_failures_total{{issuer="{ISS}"}}' in metrics
    idp.down = False  # back: accepted again without a restart
    wait_for(lambda: _post(app, token).status_code == 200, timeout=20)


@pytest.mark.parametrize("gateway", ["    tenant: acme\n"], indirect=True)
def test_a_tenant_bound_issuer_accepts_only_claims_inside_the_attestation(
    idp: Idp, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, _ = gateway
    assert _post(app, _de(idp, "k1")).status_code == 200
    assert _post(app, idp.token("k1", address={"country": "DE"})).status_code == 200  # unknown
    outside = [
        idp.token("k1", address={"country": "DE"}, citizenship=["DE", "US"]),
        idp.token("k1", address={"country": "US"}, citizenship=["DE"]),
        idp.token("k1", address={"country": "DE"}, citizenship=["DE"], roles=["admins"]),
    ]
    for token in outside:
        r = _post(app, token)
        assert r.status_code == 401 and "outside" in r.json()["error"]["message"]


def test_tokens_that_are_not_the_issuers_are_refused(
    idp: Idp, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, _ = gateway
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(
        {"iss": ISS, "aud": "sovereign-gw", "exp": int(time.time()) + 60,
         "address": {"country": "DE"}},
        other, algorithm="ES256", headers={"kid": "k1"},
    )  # fmt: skip
    assert _post(app, forged).status_code == 401
    assert _post(app, _de(idp, "k1", aud="someone-else")).status_code == 401
    assert _post(app, _de(idp, "k1", exp_in=-10)).status_code == 401
    assert _post(app, idp.token("k1", citizenship=["DE"])).status_code == 401  # no residency
    none = jwt.encode({"iss": ISS, "aud": "sovereign-gw"}, None, algorithm="none")
    assert _post(app, none).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  - issuer: x\n    jwks_uri: http://idp.example/jwks\n    audience: a\n", "https"),
        ("  - issuer: x\n    audience: a\n", "exactly one of jwks_uri and discovery"),
        (
            "  - issuer: x\n    jwks_uri: https://idp/jwks\n    audience: a\n    colour: red\n",
            "unknown key 'colour'",
        ),
        (
            "  - issuer: x\n    jwks_uri: https://idp/jwks\n    audience: a\n"
            "    claims: {residency: 'a..b'}\n",
            "not a claim path",
        ),
    ],
)
def test_a_bad_issuers_file_is_refused_at_load_with_file_and_line(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text("issuers:\n" + body)
    with pytest.raises(UsageError) as info:
        load_issuers(path)
    assert message in info.value.message and f"{path}:" in info.value.message


def test_the_gateway_command_refuses_plain_http_keys_before_starting(
    tmp_path: Path, signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    path = tmp_path / "issuers.yaml"
    path.write_text(
        "issuers:\n  - issuer: https://idp\n    jwks_uri: http://10.0.0.5/jwks\n    audience: a\n"
    )
    code, out, _ = run_cli(
        capsys, "gateway", "--fleet", str(root), "--issuers", str(path), "--json"
    )
    error = json.loads(out)["error"]
    assert code == 1 and f"{path}:3" in error["message"] and "https://" in error["message"]


_ISSUER_LINES = [
    "issuers:",
    "  - issuer: https://idp",
    "    jwks_uri: https://idp/jwks",
    "    audience: a",
    "    claims:",
    "      residency: address.country",
    "    refresh_seconds: 1",
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_ISSUER_LINES) - 1),
            st.sampled_from(["", "null", "[]", "{}", "- x", "-1", "http://x/j", ": :", "*a"]),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_a_damaged_issuers_file_is_a_usage_error_or_a_whole_config(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, str]]
) -> None:
    lines = list(_ISSUER_LINES)
    for index, value in edits:
        key = lines[index].split(":", 1)[0]
        lines[index] = f"{key}: {value}" if ":" in lines[index] else value
    path = tmp_path_factory.mktemp("issuers") / "issuers.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        configs = load_issuers(path)
    except UsageError as exc:
        assert str(path) in exc.message
        return
    for config in configs:  # whatever loads is a whole config fetching over https only
        assert config.issuer and config.audience
        assert (config.jwks_uri or config.discovery or "").startswith("https://")
