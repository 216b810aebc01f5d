"""The request authenticator shared by the gateway and ``sovereign authz``, without HTTP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.gateway.authn import Authenticator, AuthError, Caller
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.policy.principal import Principal
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
