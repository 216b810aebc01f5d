"""Token verification and claim parsing, without HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.gateway.tokens import (
    TokenError,
    TokenVerifier,
    load_token_keys,
    principal_from_claims,
)
from orchestrator.policy.principal import Principal


def _pub_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _claims(**extra: Any) -> dict[str, Any]:
    return {
        "aud": "sovereign",
        "exp": int(time.time()) + 60,
        "residency": "de",
        "nationalities": ["DE", "fr"],
        "groups": ["staff"],
        "sub": "bob",
        **extra,
    }


@pytest.mark.parametrize("kind", ["ed25519", "p256", "p384", "rsa"])
def test_each_key_type_verifies_its_algorithm_only(kind: str, tmp_path: Path) -> None:
    key: Any
    key, alg = {
        "ed25519": (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
        "p256": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        "p384": (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        "rsa": (rsa.generate_private_key(65537, 2048), "RS256"),
    }[kind]
    path = tmp_path / "k.pem"
    path.write_bytes(_pub_pem(key))
    verifier = TokenVerifier(load_token_keys([path]))
    verified = verifier.verify(jwt.encode(_claims(), key, algorithm=alg))
    assert verified.principal == Principal.of("DE", ["DE", "FR"], ["staff"])
    assert verified.subject_hash is not None and "bob" not in verified.subject_hash
    if kind == "rsa":  # same key, another algorithm of its family: refused (pinned)
        with pytest.raises(TokenError):
            verifier.verify(jwt.encode(_claims(), key, algorithm="RS512"))


def test_jwks_file_with_kid(tmp_path: Path) -> None:
    k1, k2 = ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(k1.public_key())), "kid": "one"},
            {
                **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k2.public_key())),
                "kid": "two",
                "alg": "ES256",
            },
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = TokenVerifier(load_token_keys([path]))
    t1 = jwt.encode(_claims(), k1, algorithm="EdDSA", headers={"kid": "one"})
    t2 = jwt.encode(_claims(), k2, algorithm="ES256", headers={"kid": "two"})
    assert verifier.verify(t1).principal.residency == "DE"
    assert verifier.verify(t2).principal.residency == "DE"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", "private key"),
        (b"hello", "not a PEM public key"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric"),
        (b'{"keys": []}', "non-empty"),
    ],
)
def test_unusable_key_files(content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        load_token_keys([path])


def test_weak_rsa_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "weak.pem"
    path.write_bytes(_pub_pem(rsa.generate_private_key(65537, 1024)))
    with pytest.raises(UsageError, match="too weak"):
        load_token_keys([path])
    with pytest.raises(UsageError, match="cannot read"):
        load_token_keys([tmp_path / "absent.pem"])
    with pytest.raises(UsageError):
        load_token_keys([])


def test_cached_token_still_expires(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(_pub_pem(key))
    verifier = TokenVerifier(load_token_keys([path]))
    token = jwt.encode(_claims(exp=int(time.time()) + 1), key, algorithm="EdDSA")
    verifier.verify(token)
    assert token.encode() in verifier._cache
    time.sleep(1.2)
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(token)


def test_issuer_required_when_configured(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(_pub_pem(key))
    verifier = TokenVerifier(load_token_keys([path]), issuer="https://idp")
    with pytest.raises(TokenError, match="iss"):
        verifier.verify(jwt.encode(_claims(), key, algorithm="EdDSA"))
    ok = jwt.encode(_claims(iss="https://idp"), key, algorithm="EdDSA")
    assert verifier.verify(ok).principal.residency == "DE"


claim_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.one_of(st.text(max_size=4), st.integers(), st.none()), max_size=4),
    st.sampled_from(["US", "de", "XX", "ZZ", "GB"]),
    st.lists(st.sampled_from(["US", "de", "XX", "trusted-partners", ""]), max_size=4),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a loaded CI machine
@given(
    st.dictionaries(st.sampled_from(["residency", "nationalities", "groups", "x"]), claim_values)
)
def test_claims_parse_or_refuse_never_crash(claims: dict[str, Any]) -> None:
    try:
        principal = principal_from_claims(claims)
    except TokenError:
        return
    # Accepted: residency is a real country code and every list was well formed.
    assert isinstance(claims["residency"], str)
    assert principal.residency == claims["residency"].upper()
    assert principal.nationalities == {n.upper() for n in claims.get("nationalities") or []}
    assert principal.groups == set(claims.get("groups") or [])


def test_header_bytes_hit_the_cache_and_never_outlive_exp(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(_pub_pem(key))
    now = [time.time()]  # the verifier's clock for remembered tokens, injected: no sleeping
    verifier = TokenVerifier(load_token_keys([path]), cache_size=2, clock=lambda: now[0])
    token = jwt.encode(_claims(exp=int(now[0]) + 600), key, algorithm="EdDSA")
    raw = f"Bearer {token}".encode()
    assert verifier.verify_header(raw).principal.residency == "DE"
    assert token.encode() in verifier._cache  # keyed by the token's exact bytes
    # Other spellings of the same header verify to the same principal (and share the entry).
    assert verifier.verify_header(f"bearer   {token} ").principal.residency == "DE"
    assert len(verifier._cache) == 1
    # Bounded: two more tokens push the first one out.
    for residency in ("FR", "IT"):
        other = jwt.encode(_claims(residency=residency), key, algorithm="EdDSA")
        verifier.verify_header(f"Bearer {other}".encode())
    assert token.encode() not in verifier._cache and len(verifier._cache) == 2
    verifier.verify_header(raw)
    now[0] += 601  # past exp
    with pytest.raises(TokenError, match="expired"):
        verifier.verify_header(raw)
    assert token.encode() not in verifier._cache  # dropped when found expired
    with pytest.raises(TokenError, match="malformed"):
        verifier.verify_header("Bearer ey\u00e9.x.y")
