"""Principals come only from verified tokens: every bad token is a 401 with a reason."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.gateway.support import Keys, Running

CHAT = "/v1/chat/completions"
BODY = {"model": "olmo-3", "messages": [{"role": "user", "content": "hi"}]}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none_token(keys: Keys) -> str:
    claims = {
        "iss": keys.issuer,
        "aud": keys.audience,
        "exp": int(time.time()) + 300,
        "residency": "US",
        "nationalities": ["US"],
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _hs256_with_public_key(keys: Keys) -> str:
    # The classic confusion attack: the public key's bytes used as an HMAC secret.
    claims = {
        "iss": keys.issuer,
        "aud": keys.audience,
        "exp": int(time.time()) + 300,
        "residency": "US",
        "nationalities": ["US"],
    }
    header = _b64({"alg": "HS256", "typ": "JWT"})
    payload = _b64(claims)
    import hashlib
    import hmac

    secret = keys.public_pem_path.read_bytes()
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


BAD_TOKENS: dict[str, Callable[[Keys], str]] = {
    "forged (wrong key)": lambda k: k.token("US", ["US"], key=Ed25519PrivateKey.generate()),
    "expired": lambda k: k.token("US", ["US"], exp_in=-30),
    "not yet valid": lambda k: k.token("US", ["US"], nbf=int(time.time()) + 600),
    "wrong audience": lambda k: k.token("US", ["US"], aud="someone-else"),
    "wrong issuer": lambda k: k.token("US", ["US"], iss="https://evil.test"),
    "no exp": lambda k: k.token("US", ["US"], exp_in=None),
    "alg none": _alg_none_token,
    "HS256 with the public key": _hs256_with_public_key,
    "no residency": lambda k: k.token(None, ["US"]),
    "residency not a country": lambda k: k.token("XX", ["US"]),
    "nationalities not a list": lambda k: k.token("US", raw={"nationalities": "US"}),
    "garbage": lambda k: "not.a.token",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused(
    case: str, keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    token = BAD_TOKENS[case](keys)
    before = shared_gw.hits()
    r = client.post(shared_gw.url + CHAT, json=BODY, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert r.json()["error"]["message"]
    assert shared_gw.hits() == before  # nothing reached any upstream


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
def test_missing_or_malformed_authorization(
    header: str | None, shared_gw: Running, client: httpx.Client
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = client.post(shared_gw.url + CHAT, json=BODY, headers=headers)
    assert r.status_code == 401
    assert 'error="invalid_request"' in r.headers["www-authenticate"]
    assert client.get(shared_gw.url + "/v1/models", headers=headers).status_code == 401


def test_valid_token_is_served(keys: Keys, shared_gw: Running, client: httpx.Client) -> None:
    r = client.post(shared_gw.url + CHAT, json=BODY, headers=keys.headers("US", ["US"]))
    assert r.status_code == 200
    assert r.headers["x-sovereign-site"] == "us-east"


def test_headers_and_query_cannot_set_principal(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    # A German national located in the US is suspended from fable-5 at every US site.
    token = keys.headers("US", ["DE"])
    spoof = {
        "X-Residency": "DE",
        "X-Nationality": "US",
        "X-Nationalities": "US",
        "X-Groups": "trusted-partners",
        "X-Sovereign-Principal": '{"residency":"DE"}',
        "X-Forwarded-For": "10.0.0.1",
        "X-Sovereign-Site": "eu-central",
    }
    url = shared_gw.url + CHAT + "?residency=DE&nationalities=US&site=eu-central"
    r = client.post(
        url, json={"model": "fable-5", **{"residency": "DE"}}, headers={**token, **spoof}
    )
    assert r.status_code == 451
    assert r.json()["explanation"]["principal"] == {
        "residency": "US",
        "nationalities": ["DE"],
        "groups": [],
    }
    # And the other way: a US national located in the US stays on US sites whatever we claim.
    r = client.post(url, json={"model": "fable-5"}, headers={**keys.headers("US", ["US"]), **spoof})
    assert r.status_code == 200
    assert r.headers["x-sovereign-site"] == "us-east"


def test_gateway_does_not_forward_the_token(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    r = client.post(
        shared_gw.url + CHAT, json=BODY, headers={**keys.headers("US", ["US"]), "X-Residency": "US"}
    )
    assert r.status_code == 200
    seen = shared_gw.stubs["us-east"].behaviour.last_headers
    assert seen["content-type"] == "application/json"
    assert "authorization" not in seen and "x-residency" not in seen


def test_token_must_be_for_this_verifier_algorithms(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    es_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        {"aud": keys.audience, "iss": keys.issuer, "residency": "US", "exp": int(time.time()) + 60},
        es_key,
        algorithm="ES256",
    )
    r = client.post(shared_gw.url + CHAT, json=BODY, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert "ES256" in r.json()["error"]["message"]


def test_hostile_alg_cannot_break_the_challenge_header(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    header = _b64({"alg": 'x"\r\nSet-Cookie: a=b', "typ": "JWT"})
    token = header + "." + _b64({}) + "."
    r = client.post(shared_gw.url + CHAT, json=BODY, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    assert r.headers["www-authenticate"].count('"') == 6
