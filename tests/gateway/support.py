"""Test support for the gateway: an in-memory fleet, token keys and a running gateway.

The fleet is built directly as frozen values (no YAML) so these tests depend only on the
contract types. Every site is ``local`` without an endpoint, so the gateway starts its own
loopback stub upstreams, which the tests inspect (hit counters) and kill.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orchestrator.fleet.model import (
    Action,
    Audience,
    Directive,
    Fleet,
    Jurisdiction,
    Model,
    Site,
)
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import StaticSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys

PAST = datetime(2026, 1, 1, tzinfo=UTC)


def site(sid: str, juris: str, country: str, governed_by: frozenset[str] = frozenset()) -> Site:
    return Site(
        id=sid,
        jurisdiction=juris,
        provider="local",
        region="local",
        country=country,
        operator=f"op-{juris.lower()}",
        governed_by=governed_by,
        governing=frozenset({juris}) | governed_by,
    )


def jurisdiction(
    jid: str,
    countries: set[str],
    sites: tuple[str, ...],
    models: set[str],
    export: dict[str, frozenset[str]] | None = None,
) -> Jurisdiction:
    return Jurisdiction(
        id=jid,
        name=jid,
        countries=frozenset(countries),
        authorities=(),
        directive_threshold=1,
        process_in=frozenset({jid}),
        export=export or {},
        models=frozenset(models),
        sites=sites,
        failover=sites,
        min_sites_per_model=1,
        source=f"{jid.lower()}.yaml",
    )


def suspend(
    did: str,
    models: set[str],
    audience: Audience,
    effective: datetime = PAST,
    jurisdiction_id: str = "US",
) -> Directive:
    return Directive(
        id=did,
        jurisdiction=jurisdiction_id,
        issuer="us-commerce",
        reference=f"ref {did}",
        action=Action.SUSPEND,
        models=frozenset(models),
        audience=audience,
        effective=effective,
        expires=None,
        supersedes=None,
        source=f"directives/{did}.yaml",
        sha256=did,
    )


US_SUSPEND = suspend("us-doc", {"fable-5"}, Audience(nationality_not_in=frozenset({"US"})))


def make_fleet(
    directives: tuple[Directive, ...] = (US_SUSPEND,),
    us_failover: tuple[str, ...] = ("us-east", "us-west"),
) -> Fleet:
    """US (us-east, us-west), EU (eu-central, eu-west), JP (jp-us governed by US, jp-kk)."""
    sites = [
        site("us-east", "US", "US"),
        site("us-west", "US", "US"),
        site("eu-central", "EU", "DE"),
        site("eu-west", "EU", "FR"),
        site("jp-us", "JP", "JP", frozenset({"US"})),
        site("jp-kk", "JP", "JP"),
    ]
    us = jurisdiction(
        "US",
        {"US"},
        ("us-east", "us-west"),
        {"fable-5", "olmo-3"},
        {"restricted": frozenset({"EU", "JP"})},
    )
    us = Jurisdiction(
        **{**{f: getattr(us, f) for f in us.__dataclass_fields__}, "failover": us_failover}
    )
    return Fleet(
        jurisdictions={
            "US": us,
            "EU": jurisdiction(
                "EU", {"DE", "FR"}, ("eu-central", "eu-west"), {"fable-5", "olmo-3", "mistral"}
            ),
            "JP": jurisdiction("JP", {"JP"}, ("jp-us", "jp-kk"), {"fable-5", "olmo-3"}),
        },
        sites={s.id: s for s in sites},
        models={
            "fable-5": Model("fable-5", "US", "restricted", "s3://m/fable-5/"),
            "olmo-3": Model("olmo-3", "US", "open", "s3://m/olmo-3/"),
            "mistral": Model("mistral", "EU", "restricted", "gs://m/mistral/"),
        },
        directives={d.id: d for d in directives},
    )


@dataclass
class Keys:
    """An identity provider's signing key and the public PEM file the gateway trusts."""

    private: Ed25519PrivateKey
    public_pem_path: Path
    issuer: str = "https://idp.test"
    audience: str = "sovereign"

    def token(
        self,
        residency: str | None = "US",
        nationalities: list[str] | None = None,
        groups: list[str] | None = None,
        *,
        exp_in: float | None = 300,
        key: Ed25519PrivateKey | None = None,
        raw: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        """A signed token; ``raw`` claims are set last, as is (malformed ones included)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "alice",
            "iat": now,
        }
        if exp_in is not None:
            claims["exp"] = now + int(exp_in)
        if residency is not None:
            claims["residency"] = residency
        if nationalities is not None:
            claims["nationalities"] = nationalities
        if groups is not None:
            claims["groups"] = groups
        claims.update(extra)
        claims.update(raw or {})
        return jwt.encode(claims, key or self.private, algorithm="EdDSA")

    def headers(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*args, **kwargs)}"}


def make_keys(tmp: Path) -> Keys:
    private = Ed25519PrivateKey.generate()
    path = tmp / "idp-public.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Keys(private, path)


@dataclass
class Running:
    gateway: Gateway
    source: StaticSource
    url: str
    log: list[str] = field(default_factory=list)

    @property
    def stubs(self) -> dict[str, Any]:
        return self.gateway.stubs

    def hits(self) -> dict[str, int]:
        return {sid: stub.total_hits for sid, stub in self.gateway.stubs.items()}


@contextmanager
def running_gateway(keys: Keys, fleet: Fleet | None = None, **settings: Any) -> Iterator[Running]:
    source = StaticSource(fleet if fleet is not None else make_fleet())
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience, keys.issuer)
    log: list[str] = []
    options: dict[str, Any] = {
        "reload_interval_s": 0.05,
        "probe_interval_s": 0,
        "base_backoff_s": 0.3,
        "max_backoff_s": 1.0,
        "upstream_timeout_s": 5.0,
    }
    options.update(settings)
    gateway = Gateway(source, verifier, GatewaySettings(**options), AccessLog(log.append))
    app = GatewayApp(gateway)
    url = app.start()
    try:
        yield Running(gateway, source, url, log)
    finally:
        app.stop()


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
