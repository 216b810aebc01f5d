"""Who is asking: principals come from signed tokens, and from nothing else.

The law turns on where a person is and what nationalities they hold, so those attributes must
come from an identity provider that signed them, never from a header or a query parameter the
caller types. ``TokenVerifier`` checks a ``Bearer`` JWT against configured *public* keys:

- each key pins the algorithms its type allows (Ed25519 -> EdDSA, P-256 -> ES256, P-384 ->
  ES384, P-521 -> ES512, RSA >= 2048 bits -> RS256); ``none`` and every HS* algorithm are refused
  before any key is tried, so a public key can never be abused as an HMAC secret;
- ``exp`` is required, ``nbf`` checked when present, ``aud`` always, ``iss`` when configured;
- the claims ``residency`` (ISO 3166-1 alpha-2, required), ``nationalities`` and ``groups``
  (lists, default empty) are validated; anything malformed refuses the token (fail closed).

Clients reuse a token for many requests and a signature check costs more than the rest of the
routing decision, so verified tokens are remembered (bounded LRU, keyed by the exact token
bytes as they arrive in the header, so a hit costs no decoding). Only the signature and claim
checks are reused: ``exp`` and ``nbf`` are compared with the clock again on every use, and an
entry found expired is dropped, so a remembered token is never accepted past its own life.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from orchestrator.errors import UsageError
from orchestrator.fleet.countries import country_code
from orchestrator.gateway.callers import AuthError, Caller
from orchestrator.policy.principal import Principal

__all__ = [
    "GROUP_EXPECTED",
    "TokenError",
    "TokenKey",
    "TokenVerifier",
    "VerifiedToken",
    "algorithm_for",
    "asymmetric_header",
    "caller_label",
    "is_group_name",
    "load_token_keys",
    "principal_from_claims",
    "subject_hash",
]

DEFAULT_AUDIENCE = "sovereign"
_MIN_RSA_BITS = 2048
_MAX_TOKEN_CHARS = 8192
_MAX_LIST_ITEMS = 64
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}\Z")
GROUP_EXPECTED = (
    "a group name is 1-128 ASCII letters, digits and . _ : @ / - (starting with a letter or "
    "digit), e.g. trusted-partners"
)


def is_group_name(value: object) -> bool:
    """Whether ``value`` is a group name a token may carry (what ``token mint --group`` and the
    gateway's claim check accept alike)."""
    return isinstance(value, str) and _GROUP_RE.match(value) is not None


_CURVE_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class TokenError(AuthError):
    """A request's token is missing or not acceptable; ``error`` is the RFC 6750 code."""


@dataclass(frozen=True)
class TokenKey:
    """One public verification key and the single algorithm its type allows."""

    key: PublicKey
    algorithm: str
    kid: str | None
    source: str


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    principal: Principal
    subject_hash: str | None  # sha256 of ``sub`` (truncated): loggable, not reversible
    caller: Caller  # built once with the verification, so a cache hit builds nothing


_MAX_LABEL_ISSUER = 200


def asymmetric_header(token: str) -> tuple[str, dict[str, Any]]:
    """The token's algorithm and header, read before any key is chosen; TokenError for a
    malformed header, ``none`` or an HMAC algorithm (a public key used as an HMAC secret would
    let anyone who has it sign): every verifier here takes asymmetric signatures only."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed token") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
        raise TokenError(f"algorithm {alg!r} is not accepted")
    return alg, header


def subject_hash(claims: Mapping[str, Any]) -> str | None:
    """A non-reversible reference to the token's ``sub`` for logs (never the subject itself)."""
    sub = claims.get("sub")
    return hashlib.sha256(sub.encode()).hexdigest()[:16] if isinstance(sub, str) else None


def caller_label(issuer: object, subject_hash: str | None) -> str:
    """``ISSUER#SUBJECT_HASH`` for logs: the issuer as the token says it (printable, bounded),
    ``token`` when it names none; ``-`` when it has no ``sub``."""
    iss = issuer if isinstance(issuer, str) and issuer else "token"
    iss = "".join(c for c in iss[:_MAX_LABEL_ISSUER] if c.isprintable() and not c.isspace())
    return f"{iss or 'token'}#{subject_hash or '-'}"


def algorithm_for(key: object, source: str) -> str:
    """The one algorithm a public key's type allows (a weak or unknown key: UsageError)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _CURVE_ALGS.get(key.curve.name)
        if alg is None:
            raise UsageError(
                f"{source}: unsupported EC curve {key.curve.name}",
                hint="use P-256 (ES256), P-384 or P-521, or an Ed25519 key",
            )
        return alg
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise UsageError(
                f"{source}: RSA key of {key.key_size} bits is too weak",
                hint=f"use an RSA key of at least {_MIN_RSA_BITS} bits",
            )
        return "RS256"
    raise UsageError(
        f"{source}: unsupported key type {type(key).__name__}",
        hint="token keys are Ed25519, EC (P-256/384/521) or RSA public keys",
    )


def _keys_from_jwks(text: str, source: str) -> list[TokenKey]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source}: not valid JSON ({exc.msg})",
            hint="a token key file is a PEM public key or a JWKS JSON file",
        ) from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{source}: a JWKS file needs a non-empty 'keys' list")
    keys: list[TokenKey] = []
    for i, entry in enumerate(entries):
        where = f"{source} keys[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: not an object")
        if entry.get("kty") == "oct":
            raise UsageError(
                f"{where}: symmetric (oct) keys are not accepted",
                hint="tokens must be signed with an asymmetric key",
            )
        if "d" in entry:
            raise UsageError(
                f"{where}: this is a private key",
                hint="configure only the public half of the signing key",
            )
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError as exc:
            raise UsageError(f"{where}: {exc}") from None
        key = jwk.key
        alg = algorithm_for(key, where)
        declared = entry.get("alg")
        if declared is not None and declared != alg:
            raise UsageError(f"{where}: alg {declared!r} does not fit a key that allows {alg}")
        keys.append(TokenKey(key, alg, jwk.key_id, where))
    return keys


def load_token_keys(paths: Iterable[Path]) -> tuple[TokenKey, ...]:
    """Read every ``--token-key`` file: a PEM public key, or a JWKS JSON document."""
    keys: list[TokenKey] = []
    for path in paths:
        source = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"cannot read token key {source}: {exc.strerror}",
                hint="--token-key takes a PEM public key or JWKS file",
            ) from None
        stripped = data.lstrip()
        if stripped.startswith(b"{"):
            keys.extend(_keys_from_jwks(data.decode("utf-8", "replace"), source))
            continue
        if b"PRIVATE KEY" in data:
            raise UsageError(
                f"{source} holds a private key",
                hint="configure only the public half of the signing key",
            )
        try:
            key = load_pem_public_key(data)
        except ValueError:
            raise UsageError(
                f"{source}: not a PEM public key or JWKS file",
                hint="export the public key, e.g. `openssl pkey -pubout`",
            ) from None
        keys.append(TokenKey(key, algorithm_for(key, source), None, source))  # type: ignore[arg-type]
    if not keys:
        raise UsageError(
            "no token keys configured",
            hint="pass --token-key FILE (a PEM public key or a JWKS file)",
        )
    return tuple(keys)


def _country(value: object, claim: str) -> str:
    code = country_code(value) if isinstance(value, str) else None
    if code is None:
        raise TokenError(f"claim {claim} must be an ISO 3166-1 alpha-2 country code")
    return code


def _string_list(claims: Mapping[str, Any], claim: str) -> list[Any]:
    value = claims.get(claim, [])
    if value is None:
        value = []
    if not isinstance(value, list) or len(value) > _MAX_LIST_ITEMS:
        raise TokenError(f"claim {claim} must be a list (at most {_MAX_LIST_ITEMS} entries)")
    return value


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal a verified token describes; malformed claims refuse the token."""
    if "residency" not in claims:
        raise TokenError("token lacks the residency claim")
    residency = _country(claims["residency"], "residency")
    nationalities = [_country(n, "nationalities") for n in _string_list(claims, "nationalities")]
    groups = _string_list(claims, "groups")
    for g in groups:
        if not is_group_name(g):
            raise TokenError("claim groups must hold group names")
    return Principal.of(residency, nationalities, groups)


class TokenVerifier:
    """Verifies bearer tokens against pinned public keys and returns the principal."""

    def __init__(
        self,
        keys: Sequence[TokenKey],
        audience: str = DEFAULT_AUDIENCE,
        issuer: str | None = None,
        leeway_s: float = 0.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: what a remembered token's ``exp``/``nbf`` are compared with (Unix
        seconds; tests inject one instead of sleeping)."""
        if not keys:
            raise UsageError("no token keys configured", hint="pass --token-key FILE")
        self.keys = tuple(keys)
        self.audience = audience
        self.issuer = issuer
        self.leeway_s = leeway_s
        self._algorithms = frozenset(k.algorithm for k in self.keys)
        # token bytes -> (verified, exp, nbf); only tokens that fully verified are kept
        self._cache: OrderedDict[bytes, tuple[VerifiedToken, float, float]] = OrderedDict()
        self.cache_size = cache_size
        self._clock = clock

    def verify_header(self, authorization: str | bytes | None) -> VerifiedToken:
        """Verify an ``Authorization`` header value (bytes as received, or text)."""
        if not authorization:
            raise TokenError("missing bearer token", "invalid_request")
        raw = authorization if isinstance(authorization, bytes) else authorization.encode()
        if raw[:7] == b"Bearer " and raw[7:8] not in (b"", b" "):
            cached = self._cached(raw[7:])  # the common exact form: no parsing on a hit
            if cached is not None:
                return cached
        scheme, _, token = raw.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("authorization must be 'Bearer <token>'", "invalid_request")
        return self.verify(token.strip())

    def is_cached(self, token: bytes) -> bool:
        """Whether this exact token was verified before (still remembered)."""
        return token in self._cache

    def _cached(self, key: bytes) -> VerifiedToken | None:
        cached = self._cache.get(key)
        if cached is None:
            return None
        verified, exp, nbf = cached
        now = self._clock()
        if now >= exp + self.leeway_s:
            del self._cache[key]
            raise TokenError("token expired")
        if now < nbf - self.leeway_s:
            raise TokenError("token not yet valid (nbf)")
        self._cache.move_to_end(key)
        return verified

    def verify(self, token: str) -> VerifiedToken:
        try:
            key = token.encode("ascii")  # a JWT is ASCII; the key is then the header's bytes
        except UnicodeEncodeError:
            raise TokenError("malformed token") from None
        cached = self._cached(key)
        if cached is not None:
            return cached
        verified, exp, nbf = self._verify_uncached(token)
        if self.cache_size > 0:
            self._cache[key] = (verified, exp, nbf)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return verified

    def _verify_uncached(self, token: str) -> tuple[VerifiedToken, float, float]:
        if len(token) > _MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        alg, header = asymmetric_header(token)
        if alg not in self._algorithms:
            raise TokenError(f"algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        candidates = [k for k in self.keys if k.algorithm == alg]
        if isinstance(kid, str) and any(k.kid == kid for k in candidates):
            candidates = [k for k in candidates if k.kid == kid]
        last: TokenError = TokenError("signature does not verify")
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway_s,
                    options={"require": ["exp", "aud"] + (["iss"] if self.issuer else [])},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                last = TokenError("token expired")
                break
            except jwt.ImmatureSignatureError:
                last = TokenError("token not yet valid (nbf)")
                break
            except jwt.InvalidAudienceError:
                last = TokenError("token audience is not accepted")
                break
            except jwt.InvalidIssuerError:
                last = TokenError("token issuer is not accepted")
                break
            except jwt.MissingRequiredClaimError as exc:
                last = TokenError(f"token lacks the {exc.claim} claim")
                break
            except jwt.PyJWTError:
                last = TokenError("token is invalid")
                break
            digest = subject_hash(claims)
            exp = float(claims["exp"])
            nbf = float(claims.get("nbf", 0))
            principal = principal_from_claims(claims)
            caller = Caller(principal, "token", caller_label(claims.get("iss"), digest))
            return VerifiedToken(principal, digest, caller), exp, nbf
        raise last
