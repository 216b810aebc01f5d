"""The request authenticator shared by the gateway and ``sovereign authz``, without HTTP."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.model import Tenant
from orchestrator.gateway.authn import ApiKeyError, Authenticator, AuthError, Caller, KeyBook
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.policy.principal import Principal
from orchestrator.state.apikeys import ApiKey, ApiKeys, key_digest, new_key
from tests.fleet.builder import FleetFactory, tenant_yaml
from tests.gateway.support import make_keys


def test_a_token_is_a_caller_with_a_label_that_holds_no_secret(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    authn = Authenticator(TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience))
    token = keys.token("DE", ["DE"], ["staff"])
    caller = authn.authenticate(f"Bearer {token}".encode())
    assert caller == authn.authenticate(f"Bearer {token}")  # bytes or text, cached or not
    assert caller.principal == Principal.of("DE", ["DE"], ["staff"])
    assert caller.kind == "token"
    issuer, _, sub_hash = caller.label.partition("#")
    assert issuer == keys.issuer and len(sub_hash) == 16
    assert token not in caller.label and "alice" not in caller.label
    with pytest.raises(dataclasses.FrozenInstanceError):
        caller.kind = "key"  # type: ignore[misc]
    assert isinstance(caller, Caller)


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, "invalid_request"), ("", "invalid_request"), ("Basic abc", "invalid_request")],
)
def test_missing_or_malformed_credentials_are_typed_401s(
    tmp_path: Path, header: str | None, code: str
) -> None:
    keys = make_keys(tmp_path)
    authn = Authenticator(TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience))
    with pytest.raises(AuthError) as info:
        authn.authenticate(header)
    assert info.value.status == 401 and info.value.error == code


def test_a_bad_token_is_invalid_token(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    authn = Authenticator(TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience))
    with pytest.raises(AuthError) as info:
        authn.authenticate(f"Bearer {keys.token('DE', exp_in=-60)}")
    assert info.value.error == "invalid_token" and "expired" in info.value.reason


# -- API keys: the KeyBook, with an injected clock ----------------------------------------------

T0 = datetime(2027, 1, 1, tzinfo=UTC)


def _tenant(tenant_id: str = "acme", expires: datetime = T0 + timedelta(days=30)) -> Tenant:
    return Tenant(
        tenant_id, "notary", "KYC", "DE", frozenset({"DE"}), frozenset(), expires, "t.yaml", "0"
    )


def _key(tenant: str = "acme", expires: datetime | None = None) -> tuple[str, ApiKey]:
    key_id, key = new_key()
    return key, ApiKey(key_id, key_digest(key).hex(), tenant, "", "ops@host", T0, expires)


def test_a_key_is_its_tenants_attested_principal_until_the_first_expiry() -> None:
    now = [T0.timestamp()]
    book = KeyBook(clock=lambda: now[0])
    authn = Authenticator(None, book)
    early, early_rec = _key(expires=T0 + timedelta(days=1))
    late, late_rec = _key()
    book.install({"acme": _tenant()}, ApiKeys((early_rec, late_rec)))
    for header in (f"Bearer {early}", f"bearer  {late} ".encode()):
        caller = authn.authenticate(header)
        assert caller == Caller(Principal.of("DE", ["DE"]), "key", "acme")
    now[0] = (T0 + timedelta(days=2)).timestamp()
    with pytest.raises(ApiKeyError, match="the API key expired"):
        authn.authenticate(f"Bearer {early}")
    assert authn.authenticate(f"Bearer {late}").label == "acme"
    now[0] = (T0 + timedelta(days=30)).timestamp()  # the attestation's own instant
    with pytest.raises(ApiKeyError, match="attestation of tenant 'acme' expired") as info:
        authn.authenticate(f"Bearer {late}")
    assert info.value.error == "invalid_api_key" and info.value.status == 401


def test_revoked_unknown_and_orphaned_keys_are_invalid_api_key() -> None:
    book = KeyBook(clock=lambda: T0.timestamp())
    authn = Authenticator(None, book)
    kept, kept_rec = _key()
    revoked, revoked_rec = _key()
    orphan, orphan_rec = _key(tenant="gone")
    book.install(
        {"acme": _tenant()}, ApiKeys((kept_rec, revoked_rec.revoked("ops@host", T0), orphan_rec))
    )
    assert len(book) == 1
    for key, reason in ((revoked, "revoked"), (orphan, "no valid attestation")):
        with pytest.raises(ApiKeyError, match=reason):
            authn.authenticate(f"Bearer {key}")
    with pytest.raises(ApiKeyError, match="invalid API key"):
        authn.authenticate(f"Bearer {kept[:-1]}x")
    book.install({}, ApiKeys((kept_rec,)))  # the tenant removed from the applied fleet
    with pytest.raises(ApiKeyError, match="no valid attestation"):
        authn.authenticate(f"Bearer {kept}")
    with pytest.raises(ApiKeyError, match="not accepted here"):
        Authenticator(None, None).authenticate(f"Bearer {kept}")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=80))
def test_no_made_up_key_authenticates(suffix: bytes) -> None:
    book = KeyBook(clock=lambda: T0.timestamp())
    _, record = _key()
    book.install({"acme": _tenant()}, ApiKeys((record,)))
    with pytest.raises(AuthError) as info:
        Authenticator(None, book).authenticate(b"Bearer sk-sov-" + suffix)
    assert info.value.status == 401


def test_a_revoked_key_is_refused_even_while_a_new_fleet_fails_to_load(
    signed_fleet_factory: FleetFactory,
) -> None:
    import asyncio

    from orchestrator.errors import FleetError, Problem
    from orchestrator.fleet.loader import load_fleet
    from orchestrator.gateway.app import Gateway, GatewaySettings
    from orchestrator.gateway.metrics import AccessLog
    from orchestrator.gateway.sources import StaticSource

    root = signed_fleet_factory({"tenants/acme.yaml": tenant_yaml()})
    source = StaticSource(load_fleet(root))
    key, record = _key()
    source.set_api_keys(ApiKeys((record,), "1"))
    settings = GatewaySettings(reload_interval_s=0, probe_interval_s=0, stub_all_sites=True)
    gateway = Gateway(source, Authenticator(None, KeyBook()), settings, AccessLog(None))
    gateway.load_initial()
    assert gateway.authenticator.authenticate(f"Bearer {key}").label == "acme"
    source.set_api_keys(ApiKeys((record.revoked("ops@host", T0),), "2"))
    source.fail_next(FleetError([Problem("regions/eu.yaml", 1, "", "broken")]))
    assert asyncio.run(gateway.reload_once()) is False and gateway.reload_error
    with pytest.raises(ApiKeyError, match="revoked"):
        gateway.authenticator.authenticate(f"Bearer {key}")
