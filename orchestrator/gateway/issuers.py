"""OIDC issuers (``--issuers FILE``): JWTs of the organisations' own identity providers.

Each issuer of the file names its ``issuer`` (the tokens' ``iss``), where its keys are (a
``jwks_uri``, or the OIDC ``discovery`` document that names it), the ``audience`` its tokens
must carry, where in its tokens residency, nationalities and groups are (``claims``, dotted
paths for nested claims, e.g. ``address.country``) and, optionally, the ``tenant`` it is bound
to (its tokens are then accepted only inside that tenant's attested bounds). docs/identity.md
has the format and how Keycloak, Entra ID and Okta are wired.

Keys come from the JWKS through PyJWT's ``PyJWKClient`` (``_Jwks`` adds what it lacks):

- the key set is cached for the lifetime its HTTP ``Cache-Control: max-age`` (or ``Expires``)
  gives, clamped to ``[min_cache_seconds, max_cache_seconds]``, else ``cache_seconds``;
- a token with an unknown ``kid`` refreshes the set at most once per ``refresh_seconds``
  (PyJWKClient's cooldown): a rotated key is accepted without a restart, and a flood of made-up
  ``kid`` values costs one fetch per interval;
- when the set cannot be fetched and the cache has expired, tokens of that issuer are refused
  (fail closed), with the metric ``sovereign_gateway_jwks_failures_total{issuer}`` and a log
  line (``jwks.unavailable``) saying why; a failed fetch is not retried for
  ``refresh_seconds`` (requests in between are refused at once, without a network wait);
- only ``https://`` is fetched, or ``http://127.0.0.1`` (tests); any other ``http://`` is
  refused when the file is loaded. Redirects are not followed.

The gateway fetches each key set off the event loop when it starts and again in the last fifth
of its lifetime (``Issuers.refresh_due``, every second, on a thread), so a request waits for a
fetch (within ``timeout_seconds``) only for a ``kid`` the cached set does not know, at most once
per ``refresh_seconds``. Verified tokens are cached by their exact bytes like the development
tokens' (``tokens``).

Over 400 lines on purpose: the issuers file (pydantic, file:line errors), fetching and caching each
issuer's JWKS, and verifying its tokens change together whenever an identity provider's contract
does.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import jwt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from orchestrator.errors import UsageError
from orchestrator.fleet.model import Tenant
from orchestrator.fleet.schema_errors import validate_doc
from orchestrator.fleet.yamlsource import parse_yaml
from orchestrator.gateway.callers import Caller
from orchestrator.gateway.tokens import (
    TokenError,
    algorithm_for,
    asymmetric_header,
    caller_label,
    principal_from_claims,
    subject_hash,
)
from orchestrator.policy.principal import Principal

__all__ = ["IssuerConfig", "Issuers", "load_issuers"]

_MAX_TOKEN_CHARS = 8192
_MAX_DOCUMENT_BYTES = 1 << 20


def _fetchable(url: str) -> str:
    """https, or http on 127.0.0.1 only (tests): what the gateway may fetch keys from."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname == "127.0.0.1":
        return url
    raise ValueError(
        f"'{url}' is not fetched: keys come over https:// only (http://127.0.0.1 is allowed "
        "for tests)"
    )


FetchableUrl = Annotated[str, AfterValidator(_fetchable)]


def _claim_path(value: str) -> str:
    if not value or any(not part for part in value.split(".")):
        raise ValueError(f"'{value}' is not a claim path: a claim name, or names joined by '.'")
    return value


ClaimPath = Annotated[str, AfterValidator(_claim_path)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ClaimsDoc(_Strict):
    residency: ClaimPath = "residency"
    nationalities: ClaimPath = "nationalities"
    groups: ClaimPath = "groups"


class IssuerDoc(_Strict):
    issuer: Annotated[str, Field(min_length=1)]
    jwks_uri: FetchableUrl | None = None
    discovery: FetchableUrl | None = None
    audience: Annotated[str, Field(min_length=1)]
    claims: ClaimsDoc = ClaimsDoc()
    tenant: str | None = None
    cache_seconds: Annotated[float, Field(gt=0)] = 300.0
    min_cache_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_cache_seconds: Annotated[float, Field(gt=0)] = 86400.0
    refresh_seconds: Annotated[float, Field(ge=0)] = 30.0
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    leeway_seconds: Annotated[float, Field(ge=0, le=300)] = 0.0


class IssuersDoc(_Strict):
    issuers: Annotated[list[IssuerDoc], Field(min_length=1)]


@dataclass(frozen=True)
class IssuerConfig:
    issuer: str
    jwks_uri: str | None
    discovery: str | None
    audience: str
    claims: ClaimsDoc
    tenant: str | None
    cache_seconds: float = 300.0
    min_cache_seconds: float = 60.0
    max_cache_seconds: float = 86400.0
    refresh_seconds: float = 30.0
    timeout_seconds: float = 5.0
    leeway_seconds: float = 0.0


def load_issuers(path: Path) -> tuple[IssuerConfig, ...]:
    """Read ``--issuers FILE``; ``UsageError`` lists every problem as FILE:LINE: field: message."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --issuers {path}: {exc.strerror}") from None
    doc, problems = parse_yaml(str(path), raw)
    value: IssuersDoc | None = None
    if doc is not None and not problems:
        value, problems = validate_doc(doc, IssuersDoc)
    if value is not None and doc is not None:
        seen: set[str] = set()
        for i, item in enumerate(value.issuers):
            where = f"issuers[{i}]"
            if (item.jwks_uri is None) == (item.discovery is None):
                problems.append(doc.problem(where, "give exactly one of jwks_uri and discovery"))
            if item.issuer in seen:
                problems.append(doc.problem(f"{where}.issuer", f"'{item.issuer}' is listed twice"))
            seen.add(item.issuer)
            if item.min_cache_seconds > item.max_cache_seconds:
                problems.append(
                    doc.problem(f"{where}.min_cache_seconds", "must not exceed max_cache_seconds")
                )
    if problems or value is None:
        raise UsageError(
            f"--issuers {path} is not a valid issuers file:\n"
            + "\n".join(p.render() for p in problems),
            hint="see docs/identity.md, 'Identity providers'",
        )
    return tuple(
        IssuerConfig(
            issuer=i.issuer,
            jwks_uri=i.jwks_uri,
            discovery=i.discovery,
            audience=i.audience,
            claims=i.claims,
            tenant=i.tenant,
            cache_seconds=i.cache_seconds,
            min_cache_seconds=i.min_cache_seconds,
            max_cache_seconds=i.max_cache_seconds,
            refresh_seconds=i.refresh_seconds,
            timeout_seconds=i.timeout_seconds,
            leeway_seconds=i.leeway_seconds,
        )
        for i in value.issuers
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get_json(url: str, timeout: float) -> tuple[Any, Mapping[str, str]]:
    """GET a JSON document (no redirects, bounded size): the value and the response headers."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if urlsplit(url).hostname == "127.0.0.1":
        handlers.append(urllib.request.ProxyHandler({}))  # loopback never via a proxy
    opener = urllib.request.build_opener(*handlers)
    with opener.open(request, timeout=timeout) as response:
        body = response.read(_MAX_DOCUMENT_BYTES + 1)
        headers = {k.lower(): v for k, v in response.headers.items()}
    if len(body) > _MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {_MAX_DOCUMENT_BYTES} bytes")
    return json.loads(body), headers


def _max_age(headers: Mapping[str, str]) -> float | None:
    """The freshness lifetime HTTP caching gives a response (Cache-Control, else Expires)."""
    control = headers.get("cache-control", "")
    directives = [d.strip().lower() for d in control.split(",") if d.strip()]
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    for d in directives:
        if d.startswith("max-age="):
            try:
                return max(0.0, float(int(d.removeprefix("max-age=").strip('"'))))
            except ValueError:
                return None
    expires, date = headers.get("expires"), headers.get("date")
    if expires:
        try:
            end = parsedate_to_datetime(expires).timestamp()
            start = parsedate_to_datetime(date).timestamp() if date else time.time()
        except (TypeError, ValueError):
            return 0.0  # an invalid Expires means already expired (RFC 9111)
        return max(0.0, end - start)
    return None


class JwksUnavailable(TokenError):
    """The issuer's keys cannot be had right now (fetch failed, cache expired)."""


class _Jwks(jwt.PyJWKClient):
    """PyJWKClient with HTTP cache lifetimes, discovery, and a pause after a failed fetch."""

    def __init__(self, config: IssuerConfig, on_failure: Callable[[str, str], None]) -> None:
        self.config = config
        self._on_failure = on_failure
        self._failed_at: float | None = None
        self._failure = ""
        self.generation = 0  # moves on with every successful fetch
        uri = config.jwks_uri or config.discovery
        assert uri is not None
        super().__init__(
            uri,
            cache_jwk_set=True,
            lifespan=config.cache_seconds,
            timeout=config.timeout_seconds,
            cooldown_duration=config.refresh_seconds,
        )

    def fetch_data(self) -> Any:
        config = self.config
        now = time.monotonic()
        if self._failed_at is not None and now - self._failed_at < config.refresh_seconds:
            raise jwt.PyJWKClientConnectionError(self._failure)
        try:
            uri = config.jwks_uri
            if uri is None:
                assert config.discovery is not None
                found, _ = _get_json(config.discovery, config.timeout_seconds)
                uri = found.get("jwks_uri") if isinstance(found, dict) else None
                if not isinstance(uri, str):
                    raise ValueError(f"the discovery document {config.discovery} has no jwks_uri")
                _fetchable(uri)
            data, headers = _get_json(uri, config.timeout_seconds)
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise ValueError(f"{uri} is not a JWKS (no 'keys' list)")
        except Exception as exc:  # noqa: BLE001 - any failure to get keys is one outcome
            self._failed_at = time.monotonic()
            self._failure = f"cannot fetch the JWKS of {config.issuer}: {exc}"
            self._on_failure(config.issuer, self._failure)
            raise jwt.PyJWKClientConnectionError(self._failure) from None
        self._failed_at = None
        age = _max_age(headers)
        lifespan = config.cache_seconds if age is None else age
        lifespan = min(max(lifespan, config.min_cache_seconds), config.max_cache_seconds)
        assert self.jwk_set_cache is not None
        self.jwk_set_cache.lifespan = lifespan
        self.jwk_set_cache.put(data)
        self._last_successful_fetch = time.monotonic()
        self.generation += 1
        return data

    def expires_in(self) -> float:
        """Seconds until the cached key set expires (0: none cached, or expired)."""
        cache = self.jwk_set_cache
        held = cache.jwk_set_with_timestamp if cache is not None else None
        if cache is None or held is None:
            return 0.0
        return max(0.0, held.get_timestamp() + cache.lifespan - time.monotonic())

    def refresh_if_due(self) -> None:
        """Fetch the key set when it is missing or in the last fifth of its lifetime (a failed
        fetch is reported by ``fetch_data`` and paused like any other)."""
        cache = self.jwk_set_cache
        lifespan = cache.lifespan if cache is not None else self.config.cache_seconds
        if self.expires_in() > lifespan / 5:
            return
        try:
            self.get_jwk_set(refresh=True)
        except jwt.PyJWTError:
            pass  # reported (metric, log line) by fetch_data; requests fail closed meanwhile

    def still_valid(self, kid: str, generation: int) -> bool:
        """Whether a key verified at ``generation`` may still be trusted without a lookup: the
        cached set is the same and has not expired (else the caller looks the key up again)."""
        cache = self.jwk_set_cache
        return generation == self.generation and cache is not None and not cache.is_expired()


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class _Verified:
    caller: Caller
    exp: float
    nbf: float
    kid: str
    generation: int  # of the key set the signature was checked against


class _Issuer:
    def __init__(self, config: IssuerConfig, on_failure: Callable[[str, str], None]) -> None:
        self.config = config
        self.jwks = _Jwks(config, on_failure)

    def verify(self, token: str, tenants: Mapping[str, Tenant], now: float) -> _Verified:
        config = self.config
        alg, header = asymmetric_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("token has no kid: keys of an issuer are chosen by kid")
        jwk = self.key(kid)
        try:
            pinned = algorithm_for(jwk.key, f"{config.issuer} key {kid}")
        except UsageError as exc:
            raise TokenError(exc.message) from None
        if alg != pinned:
            raise TokenError(f"algorithm {alg!r} does not fit key {kid!r} ({pinned})")
        try:
            claims = jwt.decode(
                token,
                jwk.key,
                algorithms=[pinned],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid (nbf)") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token audience is not accepted") from None
        except jwt.InvalidSignatureError:
            raise TokenError("signature does not verify") from None
        except jwt.PyJWTError:
            raise TokenError("token is invalid") from None
        paths = config.claims
        mapped = {
            "nationalities": _as_list(_claim(claims, paths.nationalities)),
            "groups": _as_list(_claim(claims, paths.groups)),
        }
        residency = _claim(claims, paths.residency)
        if residency is not None:
            mapped["residency"] = residency
        principal = principal_from_claims(mapped)  # the one claims-to-principal function
        caller = Caller(principal, "issuer", caller_label(config.issuer, subject_hash(claims)))
        self.within_tenant(principal, tenants, now)
        exp, nbf = float(claims["exp"]), float(claims.get("nbf", 0))
        return _Verified(caller, exp, nbf, kid, self.jwks.generation)

    def key(self, kid: str) -> jwt.PyJWK:
        """The issuer's key ``kid`` from its (cached or fetched) JWKS, or TokenError."""
        config = self.config
        try:
            return self.jwks.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise JwksUnavailable(f"keys of {config.issuer} are unavailable: {exc}") from None
        except jwt.PyJWTError:
            raise TokenError(f"no key {kid!r} in the JWKS of {config.issuer}") from None

    def recheck(self, verified: _Verified) -> _Verified:
        """A remembered token whose key set moved on or expired: is its key still there?"""
        self.key(verified.kid)
        return _Verified(
            verified.caller, verified.exp, verified.nbf, verified.kid, self.jwks.generation
        )

    def within_tenant(
        self, principal: Principal, tenants: Mapping[str, Tenant], now: float
    ) -> None:
        """A tenant-bound issuer speaks only inside the tenant's attested bounds."""
        name = self.config.tenant
        if name is None:
            return
        tenant = tenants.get(name)
        if tenant is None:
            raise TokenError(
                f"issuer {self.config.issuer} is bound to tenant {name!r}, which has "
                "no valid attestation"
            )
        if now >= tenant.expires.timestamp():
            raise TokenError(f"the attestation of tenant {name!r} expired")
        if (
            principal.residency != tenant.residency
            or not principal.nationalities <= tenant.nationalities
            or not principal.groups <= tenant.groups
        ):
            raise TokenError(f"the token's claims are outside what tenant {name!r} is attested for")


class Issuers:
    """The issuers of ``--issuers``: verifies their tokens, caching verified ones."""

    def __init__(
        self,
        configs: Sequence[IssuerConfig],
        on_failure: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        cache_size: int = 4096,
    ) -> None:
        self._on_failure = on_failure or (lambda issuer, why: None)
        self._by_issuer = {c.issuer: _Issuer(c, self._failed) for c in configs}
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[_Verified, _Issuer]] = OrderedDict()
        self.cache_size = cache_size

    def set_failure_hook(self, hook: Callable[[str, str], None]) -> None:
        self._on_failure = hook

    def refresh_due(self) -> None:
        """Refresh every issuer's key set that is missing or about to expire. The gateway calls
        this off the event loop every second, so requests rarely wait for a fetch."""
        for issuer in self._by_issuer.values():
            issuer.jwks.refresh_if_due()

    def _failed(self, issuer: str, why: str) -> None:
        self._on_failure(issuer, why)

    def cached(self, token: bytes, tenants: Mapping[str, Tenant]) -> Caller | None:
        """The caller of a token verified before and still valid; None when not cached."""
        hit = self._cache.get(token)
        if hit is None:
            return None
        verified, issuer = hit
        now = self._clock()
        leeway = issuer.config.leeway_seconds
        if now >= verified.exp + leeway:
            del self._cache[token]
            raise TokenError("token expired")
        if now < verified.nbf - leeway:
            raise TokenError("token not yet valid (nbf)")
        if not issuer.jwks.still_valid(verified.kid, verified.generation):
            # The key set was refetched or its cache expired: the key must still be there
            # (a removed key, or keys that cannot be had, refuse remembered tokens too).
            try:
                verified = issuer.recheck(verified)
            except TokenError:
                del self._cache[token]
                raise
            self._cache[token] = (verified, issuer)
        issuer.within_tenant(verified.caller.principal, tenants, now)
        self._cache.move_to_end(token)
        return verified.caller

    def issuer_of(self, token: bytes) -> str | None:
        """The ``iss`` a JWT claims, if it is one of ours (unverified: it only picks the keys)."""
        if len(token) > _MAX_TOKEN_CHARS or token.count(b".") != 2:
            return None
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        iss = claims.get("iss")
        return iss if isinstance(iss, str) and iss in self._by_issuer else None

    def verify(self, token: bytes, iss: str, tenants: Mapping[str, Tenant]) -> Caller:
        issuer = self._by_issuer[iss]
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise TokenError("malformed token") from None
        verified = issuer.verify(text, tenants, self._clock())
        if self.cache_size > 0:
            self._cache[token] = (verified, issuer)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return verified.caller
