"""What a gateway client controls: token claims, request bodies and headers.

JWT claims are fuzzed through the verifier in process (every token is validly signed, so the
claims themselves are what is judged: a principal or a TokenError, nothing else); bodies and
headers go to a running gateway over real HTTP with stub upstreams on loopback. The gateway
never answers 5xx for a client's input, every refusal is its one JSON error shape, and every
request it serves went to a site of ``rules.route`` for the token's principal.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.gateway.tokens import TokenError, TokenVerifier, load_token_keys
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from tests.fuzz.conftest import budget, count
from tests.gateway.support import Keys, Running, make_fleet, make_keys, running_gateway

CODES = st.sampled_from(["US", "DE", "FR", "JP", "ZZ", "GB", "us", "", "USA", "U1"])
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
# One instant for the whole run: a strategy must not change between its replays.
NOW = int(time.time())
CLAIM_VALUES = st.one_of(CODES, st.lists(CODES, max_size=4), ANY_JSON)


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    """Each claim valid, missing, or any JSON value (valid most often, so that acceptance is
    exercised too)."""
    now = NOW
    valid: dict[str, Any] = {
        "iss": "https://idp.test",
        "aud": "sovereign",
        "sub": "alice",
        "exp": now + 86_400,
        "nbf": now - 5,
        "iat": now,
        "residency": draw(CODES),
        "nationalities": draw(st.lists(CODES, max_size=3)),
        "groups": draw(st.lists(st.sampled_from(["partners", "", "a" * 300]), max_size=3)),
    }
    out: dict[str, Any] = {}
    for claim, value in valid.items():
        choice = draw(st.integers(0, 11))
        if choice == 1:
            out[claim] = draw(CLAIM_VALUES)
        elif choice == 2 and claim in ("exp", "nbf", "iat"):
            out[claim] = draw(st.integers(now - 10**6, now + 10**6))
        elif choice != 0:
            out[claim] = value
    return out


def encode(private: Ed25519PrivateKey, payload: dict[str, Any]) -> str:
    """An EdDSA JWT of any claims (PyJWT's encoder refuses some malformed ones; a forger's
    would not)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    return f"{head}.{body}.{b64(private.sign(f'{head}.{body}'.encode()))}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("fuzz-idp"))


def test_jwt_claims(keys: Keys) -> None:
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience, keys.issuer)

    @budget()
    @given(c=claims())
    def check(c: dict[str, Any]) -> None:
        token = encode(keys.private, c)
        try:
            verified = verifier.verify_header(f"Bearer {token}")
        except TokenError as exc:
            assert exc.reason and exc.error in ("invalid_token", "invalid_request")
            count("JWT claims", "refused (TokenError -> 401)")
            return
        assert isinstance(verified.principal, Principal)
        assert verified.principal.residency == str(c["residency"]).upper()  # codes are case-blind
        count("JWT claims", "accepted")

    check()


@pytest.fixture(scope="module")
def gateway(keys: Keys) -> Iterator[Running]:
    with running_gateway(keys) as running:
        yield running


HEADER_NAMES = st.sampled_from(
    [
        "content-type",
        "content-length",
        "authorization",
        "x-sovereign-site",
        "host",
        "transfer-encoding",
        "x-forwarded-for",
        "accept",
        "x-residency",
        "x-nationality",
    ]
) | st.from_regex(r"\Ax-[a-z0-9-]{1,12}\Z")
# Printable ASCII without surrounding blanks: what an HTTP client can put on the wire.
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.strip
)
MODELS = st.sampled_from(["fable-5", "olmo-3", "mistral", "nope", ""])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        doc: dict[str, Any] = {
            "model": draw(MODELS),
            "messages": [{"role": "user", "content": draw(st.text(max_size=20))}],
        }
        if draw(st.booleans()):
            doc[draw(st.text(max_size=8))] = draw(ANY_JSON)
        return json.dumps(doc).encode()
    if kind == 1:
        return json.dumps({"model": draw(ANY_JSON), "messages": draw(ANY_JSON)}).encode()
    if kind == 2:
        return json.dumps(draw(ANY_JSON)).encode()
    return draw(st.binary(max_size=200))


DOCUMENTED = {200, 400, 401, 404, 405, 411, 413, 415, 422, 451}


def test_gateway_bodies_and_headers(gateway: Running, keys: Keys) -> None:
    fleet = make_fleet()
    tokens = {r: keys.token(r, ["DE"]) for r in ("US", "DE", "JP")}

    @budget()
    @given(
        residency=st.sampled_from(["US", "DE", "JP", None]),
        body=bodies(),
        headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
        path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
    )
    def check(residency: str | None, body: bytes, headers: dict[str, str], path: str) -> None:
        sent = {
            k: v
            for k, v in headers.items()
            if k not in ("host", "content-length", "transfer-encoding")
        }
        sent.setdefault("content-type", "application/json")
        if residency is not None:
            sent["authorization"] = f"Bearer {tokens[residency]}"
        answer = client.post(f"{gateway.url}{path}", content=body, headers=sent)
        assert answer.status_code in DOCUMENTED, (answer.status_code, answer.text[:300])
        if answer.status_code == 200:
            assert residency is not None
            model = json.loads(body)["model"]
            allowed = rules.route(
                fleet,
                model,
                Principal(residency, frozenset({"DE"}), frozenset()),
                datetime.now(UTC),
            )
            assert answer.headers["x-sovereign-site"] in allowed
            count("gateway bodies and headers (HTTP)", "served inside the route (200)")
        else:
            error = answer.json()["error"]
            assert error["message"] and error["type"]
            count("gateway bodies and headers (HTTP)", f"refused ({answer.status_code})")

    with httpx.Client(trust_env=False, timeout=10) as client:
        check()
