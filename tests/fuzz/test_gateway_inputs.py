"""What a gateway client controls: token claims, request bodies and headers.

JWT claims are fuzzed through the verifier in process (every token is validly signed, so the
claims themselves are what is judged: a principal or a TokenError, nothing else); bodies and
headers go to a running gateway over real HTTP with stub upstreams on loopback. The gateway
never answers 5xx for a client's input, every refusal is its one JSON error shape, and every
request it serves went to a site of ``rules.route`` for the token's principal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pycountry
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.gateway.tokens import TokenError, TokenVerifier, load_token_keys
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from tests.fuzz.conftest import budget, count
from tests.fuzz.strict_json import JsonError, loads_first_key_wins
from tests.gateway.support import Keys, Running, make_fleet, make_keys, running_gateway

# Codes as people and identity providers write them, and Unicode that Python's str.upper()
# maps onto ASCII codes (long s, dotless i, fullwidth letters, a combining mark): none of those
# may ever count as a country.
UNICODE_LOOKALIKES = ["uſ", "Uſ", "ın", "ıN", "ＵＳ", "ｄｅ", "u\u0308s", "İN", "ǆ", "ﬀ"]
VALID_CODES = ["US", "DE", "FR", "JP", "GB", "us", "de", "In"]
CODES = st.one_of(
    st.sampled_from(VALID_CODES),
    st.sampled_from(VALID_CODES),
    st.sampled_from([*UNICODE_LOOKALIKES, *VALID_CODES, "ZZ", "", "USA", "U1"]),
    st.text(max_size=3),  # any Unicode at all
)
ANY_JSON = st.recursive(
    # finite floats: strict JSON has no NaN or Infinity (bodies() sends those on purpose, as
    # text, in its own case); a drawn inf made the strategy itself fail to encode
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
# One instant for the whole run: a strategy must not change between its replays.
NOW = int(time.time())
CLAIM_VALUES = st.one_of(CODES, st.lists(CODES, max_size=4), ANY_JSON)
GROUPS = st.one_of(
    st.sampled_from(["partners", "ops:eu/1", "a" * 128]),
    st.sampled_from(["", "a" * 300, "-x", "bad group", "x\n", "ü"]),
    st.text(max_size=8),
)

# --- the oracle: what a token's claims must be to be accepted, written independently of the
# gateway (plain character sets and pycountry's own list, no regex or helper of the product)
_ISO = frozenset(c.alpha_2 for c in pycountry.countries)
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_ALNUM = _LETTERS | frozenset("0123456789")
_GROUP_CHARS = _ALNUM | frozenset("._:@/-")


def oracle_country(value: object) -> str | None:
    if not isinstance(value, str) or len(value) != 2 or not set(value) <= _LETTERS:
        return None
    code = "".join(chr(ord(ch) - 32) if "a" <= ch <= "z" else ch for ch in value)
    return code if code in _ISO else None


def oracle_group(value: object) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 128
        and value[0] in _ALNUM
        and set(value) <= _GROUP_CHARS
    )


def oracle_principal(c: dict[str, Any]) -> Principal | None:
    """The principal the claims describe, or None when they must be refused. Only for claims
    whose registered parts (iss, aud, exp, nbf, iat, sub) are the valid ones."""
    residency = oracle_country(c.get("residency"))
    nats = c.get("nationalities", [])
    nats = [] if nats is None else nats
    groups = c.get("groups", [])
    groups = [] if groups is None else groups
    if residency is None or not isinstance(nats, list) or not isinstance(groups, list):
        return None
    if len(nats) > 64 or len(groups) > 64:
        return None
    codes = [oracle_country(n) for n in nats]
    if any(code is None for code in codes) or not all(oracle_group(g) for g in groups):
        return None
    return Principal(residency, frozenset(c for c in codes if c), frozenset(groups))


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    """Each claim valid, missing, or any JSON value (valid most often, so that acceptance is
    exercised too); the principal's claims drawn over Unicode as well."""
    now = NOW
    valid: dict[str, Any] = {
        "iss": "https://idp.test",
        "aud": "sovereign",
        "sub": "alice",
        "exp": now + 86_400,
        "nbf": now - 5,
        "iat": now,
        "residency": draw(CODES),
        "nationalities": draw(st.lists(CODES, max_size=2)),
        "groups": draw(st.lists(GROUPS, max_size=2)),
    }
    out: dict[str, Any] = {}
    for claim, value in valid.items():
        # mostly as drawn above, so that the oracle judges most tokens
        choice = draw(st.integers(0, 29))
        # (0, the value Hypothesis favours, keeps the claim valid)
        if choice == 28:
            out[claim] = draw(CLAIM_VALUES)
        elif choice == 27 and claim in ("exp", "nbf", "iat"):
            out[claim] = draw(st.integers(now - 10**6, now + 10**6))
        elif choice != 29:
            out[claim] = value
    return out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(private: Ed25519PrivateKey, payload: dict[str, Any]) -> str:
    """An EdDSA JWT of any claims (PyJWT's encoder refuses some malformed ones; a forger's
    would not)."""
    head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    return f"{head}.{body}.{b64(private.sign(f'{head}.{body}'.encode()))}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("fuzz-idp"))


def test_jwt_claims(keys: Keys) -> None:
    """Validly signed tokens with any claims: a token is accepted exactly when the oracle
    (independent of the product's code) accepts its claims, with the principal it computes."""
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience, keys.issuer)
    registered = {
        "iss": "https://idp.test",
        "aud": "sovereign",
        "sub": "alice",
        "exp": NOW + 86_400,
        "nbf": NOW - 5,
        "iat": NOW,
    }

    @budget()
    @given(c=claims())
    def check(c: dict[str, Any]) -> None:
        token = encode(keys.private, c)
        # the oracle judges the principal's claims when the registered ones are all valid
        judged = all(c.get(k) == v for k, v in registered.items())
        expected = oracle_principal(c) if judged else None
        try:
            verified = verifier.verify_header(f"Bearer {token}")
        except TokenError as exc:
            assert exc.reason and exc.error in ("invalid_token", "invalid_request")
            assert expected is None, (c, exc.reason)  # the oracle accepts these claims
            count("JWT claims", f"refused (TokenError -> 401): {exc.reason[:40]}")
            return
        assert not judged or expected is not None, c  # the oracle refuses these claims
        principal = verified.principal
        assert isinstance(principal, Principal)
        # never a country the oracle does not see: no Unicode case mapping makes one
        assert oracle_country(principal.residency) == principal.residency, c
        assert all(oracle_country(n) == n for n in principal.nationalities), c
        assert all(oracle_group(g) for g in principal.groups), c
        if expected is not None:
            assert principal == expected, (c, principal)
        count("JWT claims", "accepted")

    check()


ALGS = ["EdDSA", "eddsa", "none", "None", "HS256", "HS512", "RS256", "ES256", "", None, "EdDSA "]


@st.composite
def forged_tokens(draw: st.DrawFn, keys: Keys, other: Ed25519PrivateKey) -> tuple[str, bool]:
    """A token with any ``alg`` header, signed by the right key, another key, HMAC with the
    public key's bytes as the secret (the classic confusion), or not at all; and whether it
    must be accepted (only EdDSA with the right key)."""
    alg = draw(st.sampled_from(ALGS))
    header: dict[str, Any] = {"typ": "JWT"} if alg is None else {"alg": alg, "typ": "JWT"}
    if draw(st.booleans()):
        header["kid"] = draw(st.sampled_from(["", "k1", "../../etc/passwd", "ｋ"]))
    payload = {
        "iss": keys.issuer,
        "aud": keys.audience,
        "sub": "alice",
        "exp": NOW + 86_400,
        "residency": draw(st.sampled_from(["DE", "US", "uſ"])),
    }
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    signing = f"{head}.{body}".encode()
    how = draw(st.sampled_from(["right key", "other key", "hmac with public key", "unsigned"]))
    if how == "right key":
        sig = b64(keys.private.sign(signing))
    elif how == "other key":
        sig = b64(other.sign(signing))
    elif how == "hmac with public key":
        secret = keys.public_pem_path.read_bytes()
        sig = b64(hmac.new(secret, signing, hashlib.sha256).digest())
    else:
        sig = ""
    accept = alg == "EdDSA" and how == "right key" and payload["residency"] != "uſ"
    return f"{head}.{body}.{sig}", accept


def test_jwt_algorithms_and_keys(keys: Keys) -> None:
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience, keys.issuer)
    other = Ed25519PrivateKey.generate()

    @budget()
    @given(forged=forged_tokens(keys, other))
    def check(forged: tuple[str, bool]) -> None:
        token, accept = forged
        try:
            verifier.verify_header(f"Bearer {token}")
        except TokenError:
            assert not accept, token
            count("JWT algorithms and keys", "refused (401)")
            return
        assert accept, token
        count("JWT algorithms and keys", "accepted (EdDSA, the configured key)")

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


class Body(bytes):
    """A request body whose repr stays short (a body nested 100,000 deep is 200 kB)."""

    def __repr__(self) -> str:
        if len(self) <= 200:
            return bytes.__repr__(self)
        return f"Body({bytes(self[:80])!r} ... {len(self)} bytes)"


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Plausible requests, and the bodies a parser differential lives on: a key twice (the
    same model key spelt plainly or escaped, at the top or deeper), nesting up to and past the
    gateway's limit (and 100,000 deep), NaN, other encodings; random JSON and bytes."""
    kind = draw(st.integers(0, 7))
    if kind == 0:
        doc: dict[str, Any] = {
            "model": draw(MODELS),
            "messages": [{"role": "user", "content": draw(st.text(max_size=20))}],
        }
        if draw(st.booleans()):
            doc[draw(st.text(max_size=8))] = draw(ANY_JSON)
        return _dumps(doc).encode()
    if kind == 1:  # the model key twice
        first, second = draw(MODELS), draw(MODELS)
        spelling = draw(st.sampled_from(['"model"', '"mod\\u0065l"', '"\\u006dodel"']))
        middle = draw(st.sampled_from(['"messages": []', '"stream": false', '"x": {"model": 1}']))
        return f'{{"model": {_dumps(first)}, {middle}, {spelling}: {_dumps(second)}}}'.encode()
    if kind == 2:  # another key twice, deeper
        key = draw(st.sampled_from(["role", "content", "stream", "x"]))
        return (
            f'{{"model": {_dumps(draw(MODELS))}, "messages": [{{"{key}": 1, "{key}": 2}}]}}'
        ).encode()
    if kind == 3:  # nesting around the limit, or far past it
        depth = draw(st.one_of(st.integers(1, 80), st.just(100_000)))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = (
            opener * depth + "1" + closer * depth
            if opener == '{"a":'
            else (opener * depth + closer * depth)
        )
        return Body(f'{{"model": {_dumps(draw(MODELS))}, "x": {inner}}}'.encode())
    if kind == 4:  # what strict JSON refuses
        tail = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]))
        text = f'{{"model": {_dumps(draw(MODELS))}, "temperature": {tail}}}'
        encoding = draw(st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]))
        return text.encode(encoding)
    if kind == 5:
        return json.dumps({"model": draw(ANY_JSON), "messages": draw(ANY_JSON)}).encode()
    if kind == 6:
        return json.dumps(draw(ANY_JSON)).encode()
    return draw(st.binary(max_size=200))


DOCUMENTED = {200, 400, 401, 404, 405, 411, 413, 415, 422, 451}
# Headers that decide where a request ends (request smuggling): sent exactly as drawn, over a
# raw socket (an HTTP client would correct or refuse them).
FRAMING = st.lists(
    st.sampled_from(
        [
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", " chunked"),
            ("Transfer-Encoding", "identity"),
            ("Content-Length", "0"),
            ("Content-Length", "5"),
            ("Content-Length", "-1"),
            ("Content-Length", "1, 2"),
            ("Host", "evil.example"),
            ("Host", ""),
        ]
    ),
    max_size=3,
)


def raw_post(url: str, path: str, headers: list[tuple[str, str]], body: bytes) -> int | None:
    """Send one request exactly as given (headers as drawn, the body's own Content-Length only
    when none was drawn) and return the status of the answer, or None when the gateway closed
    the connection without one."""
    host, port = url.removeprefix("http://").split(":")
    names = {n.lower() for n, _ in headers}
    lines = [f"POST {path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host}:{port}")
    lines += [f"{n}: {v}" for n, v in headers]
    if "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    data = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)  # no more bytes: a short body ends here
        except OSError:
            pass  # the gateway already refused and closed; its answer may still be readable
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError, OSError):
            pass  # closed without (the rest of) an answer
    first = data.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) >= 2 and first[1].isdigit() else None


def test_gateway_bodies_and_headers(gateway: Running, keys: Keys) -> None:
    """Over real HTTP. Every answer is a documented status in the gateway's error shape, never a
    5xx; a 200 is judged by an independent parser (tests/fuzz/strict_json.py, which keeps the
    first of a repeated key, as some upstreams do): the body was unambiguous, and the site
    that served is in ``rules.route`` for the model that parser reads. Framing headers
    (Content-Length, Transfer-Encoding, Host) are really sent, raw: the answer is documented
    or the connection is closed, and no request reaches an upstream without being decided."""
    fleet = make_fleet()
    tokens = {r: keys.token(r, ["DE"]) for r in ("US", "DE", "JP")}

    def route_of(model: object, residency: str) -> tuple[str, ...]:
        if not isinstance(model, str):
            return ()
        principal = Principal(residency, frozenset({"DE"}), frozenset())
        return tuple(rules.route(fleet, model, principal, datetime.now(UTC)))

    @budget()
    @given(
        residency=st.sampled_from(["US", "DE", "JP", None]),
        body=bodies(),
        headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
        framing=st.one_of(st.just([]), st.just([]), FRAMING),
        path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
    )
    def check(
        residency: str | None,
        body: bytes,
        headers: dict[str, str],
        framing: list[tuple[str, str]],
        path: str,
    ) -> None:
        sent = {
            k: v
            for k, v in headers.items()
            if k not in ("host", "content-length", "transfer-encoding")
        }
        sent.setdefault("content-type", "application/json")
        if residency is not None:
            sent["authorization"] = f"Bearer {tokens[residency]}"
        before = sum(gateway.hits().values())
        if framing:
            status = raw_post(gateway.url, path, [*sent.items(), *framing], body)
            assert status is None or status in DOCUMENTED, (status, framing)
            assert sum(gateway.hits().values()) - before <= 1  # one request, at most one hop
            count("gateway bodies and headers (HTTP)", f"framing headers sent raw: {status}")
            return
        answer = client.post(f"{gateway.url}{path}", content=body, headers=sent)
        assert answer.status_code in DOCUMENTED, (answer.status_code, answer.text[:300])
        try:
            doc, repeated = loads_first_key_wins(body)
        except JsonError:
            doc, repeated = None, 0
        if answer.status_code == 200:
            assert residency is not None
            assert doc is not None and repeated == 0, body[:200]  # ambiguous bodies: never
            site = answer.headers["x-sovereign-site"]
            assert site in route_of(doc["model"], residency), (site, body[:200])
            count("gateway bodies and headers (HTTP)", "served inside the route (200)")
        else:
            error = answer.json()["error"]
            assert error["message"] and error["type"]
            if repeated and answer.status_code == 400:
                count("gateway bodies and headers (HTTP)", "repeated key refused (400)")
            else:
                count("gateway bodies and headers (HTTP)", f"refused ({answer.status_code})")

    with httpx.Client(trust_env=False, timeout=30) as client:
        check()
