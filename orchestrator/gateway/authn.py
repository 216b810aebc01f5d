"""One request authenticator for every door: the gateway and ``sovereign authz`` ask it alike.

``Authenticator.authenticate(authorization)`` takes an ``Authorization`` header value (bytes as
received, or text) and returns the ``Caller`` (principal, kind, loggable label) or raises an
``AuthError`` whose ``error`` is the code of the ``401`` answer. Whatever the credential, the
principal comes from something signed (docs/identity.md), never from a header the caller types:

- ``Bearer sk-sov-...``: an API key of an attested tenant (``KeyBook``), judged as the
  principal the tenant's attestor signed; refused (``invalid_api_key``) when the key is
  unknown, revoked or expired, or its tenant's attestation expired, was removed or no longer
  verifies;
- any other bearer credential: a JWT, from an OIDC issuer of ``--issuers`` (``issuers``: the
  token's ``iss`` picks the issuer, whose JWKS keys must verify it) or signed by a
  ``--token-key`` (``tokens``).

Call cost: a key costs one SHA-256 of ~50 bytes and one dict lookup (the ``Caller`` is built
when the keys are installed, not per request); a token seen before is a cache hit keyed by the
header's own bytes, its ``Caller`` built once with the verification.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.fleet.model import Tenant
from orchestrator.gateway.callers import AuthError, Caller, CallerKind
from orchestrator.gateway.issuers import Issuers
from orchestrator.gateway.tokens import TokenError, TokenVerifier, principal_from_claims
from orchestrator.state.apikeys import KEY_PREFIX, ApiKeys

__all__ = [
    "ApiKeyError",
    "AuthError",
    "Authenticator",
    "Caller",
    "CallerKind",
    "KeyBook",
]

_KEY_HEADER = b"Bearer " + KEY_PREFIX.encode()
_MAX_KEY_CHARS = 256
_sha256 = hashlib.sha256  # bound once: the key path runs on every keyed request
_compare = hmac.compare_digest


class ApiKeyError(AuthError):
    """An API key that is not (or no longer) accepted: ``401 invalid_api_key``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "invalid_api_key")


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    caller: Caller | None  # None: the key is known but refused (``refusal`` says why)
    until: float  # the key's or its tenant's attestation's expiry, whichever is first
    refusal: str
    expired_reason: str


class KeyBook:
    """The API keys accepted now, by SHA-256, each with its tenant's attested ``Caller``.

    ``install`` replaces the whole index with one reference swap (the gateway calls it with
    every table reload, docs/gateway.md); a request reads the index once. ``clock`` gives the
    time in seconds (tests inject one instead of sleeping past an expiry).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._index: Mapping[bytes, _Entry] = {}
        self.tenants: Mapping[str, Tenant] = {}  # the verified tenants, for bound issuers

    def __len__(self) -> int:
        return sum(1 for e in self._index.values() if e.caller is not None)

    def install(self, tenants: Mapping[str, Tenant], keys: ApiKeys) -> None:
        index: dict[bytes, _Entry] = {}
        for record in keys.entries:
            digest = bytes.fromhex(record.sha256)
            tenant = tenants.get(record.tenant)
            if record.revoked_at is not None:
                index[digest] = _Entry(digest, None, 0.0, "the API key was revoked", "")
                continue
            if tenant is None:
                refusal = (
                    f"tenant {record.tenant!r} of this API key has no valid attestation "
                    "(removed, or it no longer verifies)"
                )
                index[digest] = _Entry(digest, None, 0.0, refusal, "")
                continue
            try:  # the one claims-to-principal function, as for tokens
                principal = principal_from_claims(
                    {
                        "residency": tenant.residency,
                        "nationalities": sorted(tenant.nationalities),
                        "groups": sorted(tenant.groups),
                    }
                )
            except TokenError as exc:
                refusal = f"tenant {tenant.id!r} cannot be judged: {exc.reason}"
                index[digest] = _Entry(digest, None, 0.0, refusal, "")
                continue
            until = tenant.expires.timestamp()
            expired = f"the attestation of tenant {tenant.id!r} expired"
            if record.expires is not None and record.expires.timestamp() < until:
                until = record.expires.timestamp()
                expired = "the API key expired"
            caller = Caller(principal, "key", tenant.id)
            index[digest] = _Entry(digest, caller, until, "", expired)
        self._index = index  # the one reference swap: a request sees the old or the new
        self.tenants = tenants

    def resolve(self, key: bytes) -> Caller:
        """The caller an API key (``sk-sov-...``, exact bytes) stands for, or ApiKeyError."""
        if len(key) > _MAX_KEY_CHARS:
            raise ApiKeyError("invalid API key")
        digest = _sha256(key).digest()
        entry = self._index.get(digest)
        # The lookup is by a hash of the key: timing tells nothing about a key one does not
        # hold. The compare is constant-time all the same (docs/security.md).
        if entry is None or not _compare(entry.digest, digest):
            raise ApiKeyError("invalid API key")
        if entry.caller is None:
            raise ApiKeyError(entry.refusal)
        if self._clock() >= entry.until:
            raise ApiKeyError(entry.expired_reason)
        return entry.caller


class Authenticator:
    """Authenticates a request's ``Authorization`` header: API keys and tokens side by side."""

    def __init__(
        self,
        tokens: TokenVerifier | None = None,
        keys: KeyBook | None = None,
        issuers: Issuers | None = None,
    ) -> None:
        self.tokens = tokens
        self.keys = keys
        self.issuers = issuers

    def authenticate(self, authorization: str | bytes | None) -> Caller:
        """The caller the header proves, or ``AuthError`` (answered ``401``)."""
        if not authorization:
            raise TokenError("missing bearer token", "invalid_request")
        raw = authorization if isinstance(authorization, bytes) else authorization.encode()
        if raw.startswith(_KEY_HEADER):  # the exact form OpenAI clients send: no parsing
            keys = self.keys
            if keys is not None:
                return keys.resolve(raw[7:])
            raise ApiKeyError("API keys are not accepted here")
        if self.issuers is not None:
            caller = self._from_issuer(raw)
            if caller is not None:
                return caller
        if self.tokens is not None:
            try:
                return self.tokens.verify_header(raw).caller
            except TokenError:
                credential = self._credential(raw)
                if credential is not None and credential.startswith(KEY_PREFIX.encode()):
                    return self._key(credential)
                raise
        credential = self._credential(raw)
        if credential is None:
            raise TokenError("authorization must be 'Bearer <token>'", "invalid_request")
        if credential.startswith(KEY_PREFIX.encode()):
            return self._key(credential)
        raise TokenError("no token keys are configured: only API keys are accepted")

    def _from_issuer(self, raw: bytes) -> Caller | None:
        """A JWT of an issuer of ``--issuers``; None when the token names none of them."""
        assert self.issuers is not None
        token = raw[7:] if raw[:7] == b"Bearer " else self._credential(raw)
        if token is None:
            return None
        tenants = self.keys.tenants if self.keys is not None else {}
        if self.tokens is not None and self.tokens.is_cached(token):
            return None  # a development token seen before: its own cache answers
        caller = self.issuers.cached(token, tenants)
        if caller is not None:
            return caller
        iss = self.issuers.issuer_of(token)
        if iss is None:
            return None
        return self.issuers.verify(token, iss, tenants)

    @staticmethod
    def _credential(raw: bytes) -> bytes | None:
        scheme, _, credential = raw.strip().partition(b" ")
        credential = credential.strip()
        if scheme.lower() != b"bearer" or not credential:
            return None
        return credential

    def _key(self, key: bytes) -> Caller:
        if self.keys is None:
            raise ApiKeyError("API keys are not accepted here")
        return self.keys.resolve(key)
