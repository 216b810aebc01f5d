"""Development tokens: a local stand-in for the identity provider, for trials and tests.

The gateway trusts only tokens signed by a key it was given (``--token-key``). In production
that is the identity provider's public key and the IdP signs the tokens. To try the gateway
without one, ``sovereign token keygen`` makes an Ed25519 key pair and ``sovereign token mint``
signs a token with the private half, carrying exactly the claims the gateway reads
(``residency``, ``nationalities``, ``groups``, plus ``exp``, ``nbf``, ``iat``, ``aud``, ``iss``,
``sub``). Nothing here is used by the gateway itself.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization

from orchestrator.errors import UsageError
from orchestrator.fleet.keyfiles import generate_ed25519, load_ed25519
from orchestrator.gateway.tokens import DEFAULT_AUDIENCE

__all__ = ["DEV_ISSUER", "DevKeyPair", "generate_dev_key", "mint_token", "parse_ttl"]

DEV_ISSUER = "sovereign-dev"
_TTL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_S = 30 * 86400
MAKE_HINT = "make one with `sovereign token keygen --out dev-idp.pem`"


@dataclass(frozen=True, slots=True)
class DevKeyPair:
    private_pem: bytes
    public_pem: bytes


def generate_dev_key() -> DevKeyPair:
    """A fresh Ed25519 key pair: PKCS#8 private PEM and SubjectPublicKeyInfo public PEM."""
    key, private_pem = generate_ed25519()
    return DevKeyPair(
        private_pem,
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def parse_ttl(value: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` -> seconds (1 s to 30 days)."""
    m = _TTL.match(value)
    if m is None:
        raise UsageError(
            f"--ttl {value!r} is not a duration",
            hint="e.g. --ttl 90s, --ttl 15m, --ttl 1h, --ttl 2d",
        )
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not 0 < seconds <= MAX_TTL_S:
        raise UsageError(
            f"--ttl {value!r} is out of range",
            hint="a development token lives between 1 second and 30 days",
        )
    return seconds


def mint_token(
    private_pem: bytes,
    *,
    residency: str,
    nationalities: Sequence[str] = (),
    groups: Sequence[str] = (),
    ttl_s: int = 3600,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str = DEV_ISSUER,
    subject: str | None = None,
    source: str = "the key",
    now: float | None = None,
) -> str:
    """A signed (EdDSA) JWT with the gateway's claims."""
    key = load_ed25519(
        private_pem,
        source=source,
        make_hint="make one with `sovereign token keygen --out dev-idp.pem`",
    )
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject or f"dev-{uuid.uuid4().hex[:12]}",
        "iat": issued,
        "nbf": issued - 5,
        "exp": issued + ttl_s,
        "residency": residency,
        "nationalities": sorted(set(nationalities)),
        "groups": sorted(set(groups)),
    }
    return jwt.encode(claims, key, algorithm="EdDSA")
