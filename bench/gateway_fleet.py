"""What bench/gateway.py serves: its fleet, its directives, its API key and its tokens (minted by
the package's own development identity provider, gateway.devtokens).
"""

from __future__ import annotations

import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from orchestrator.fleet.signing import (  # noqa: E402
    public_key_of,
    sign_file_bytes,
    write_signature,
)
from orchestrator.gateway.devtokens import mint_token  # noqa: E402
from orchestrator.state import open_store  # noqa: E402
from orchestrator.state.apikeys import ApiKey, key_digest, new_key  # noqa: E402

PROFILE = """\
jurisdiction: US
name: United States
countries: [US]
authorities:
  - id: us-gov
    public_key: "{public}"
directive_threshold: 1
residency:
  process_in: [US]
models: [m1]
sites:
  - id: us-1
    provider: local
    region: local-us
    country: US
    operator: op-us
    endpoint: {endpoint}
failover: [us-1]
"""


MODELS = """\
models:
  - id: m1
    origin: US
    export_control: restricted
    artifact: s3://bench/m1/
"""


DIRECTIVE = """\
id: {id}
jurisdiction: US
issuer: us-gov
reference: "bench suspension"
action: suspend
models: [m1]
audience:
  nationality_not_in: [US]
effective: 2026-01-01T00:00:00Z
expires: null
supersedes: null
"""


def write_fleet(root: Path, stub_url: str, public_key: str, attestor_pem: bytes) -> None:
    (root / "directives").mkdir(parents=True)
    (root / "us.yaml").write_text(PROFILE.format(public=public_key, endpoint=stub_url))
    (root / "models.yaml").write_text(MODELS)
    # A tenant judged as the token's principal (US, [US]): key and token route alike.
    (root / "fleet.yaml").write_text(
        "unlisted_countries: deny\nattestors:\n  - id: bench-notary\n"
        f'    public_key: "{public_key_of(attestor_pem)}"\n'
    )
    (root / "tenants").mkdir()
    tenant = root / "tenants" / "bench.yaml"
    tenant.write_text(
        "id: bench\nattested_by: bench-notary\nreference: bench\n"
        "principal: {residency: US, nationalities: [US]}\nexpires: 2099-01-01T00:00:00Z\n"
    )
    write_signature(tenant, "bench-notary", sign_file_bytes(attestor_pem, tenant.read_bytes()))


def create_key(store: Any, tenant: str) -> str:
    """An API key of ``tenant`` recorded as ``sovereign key create`` records it."""
    key_id, key = new_key()
    record = ApiKey(key_id, key_digest(key).hex(), tenant, "bench", "bench", datetime.now(UTC))
    current = store.api_keys()
    store.replace_api_keys(
        (*current.entries, record),
        expected_version=current.version,
        audit_kind="key.created",
        audit_payload={"id": key_id, "tenant": tenant, "by": "bench"},
    )
    return key


def authenticate_cost(key_file: Path, token_text: str, api_key: str, root: Path) -> None:
    """In-process: the authenticator's own cost per call, a remembered token against a key."""
    from orchestrator.fleet.loader import load_fleet
    from orchestrator.gateway.authn import Authenticator, KeyBook
    from orchestrator.gateway.tokens import TokenVerifier, load_token_keys

    store = open_store(None, root, create=False)
    book = KeyBook()
    book.install(load_fleet(root).tenants, store.api_keys())
    store.close()
    authn = Authenticator(TokenVerifier(load_token_keys([key_file])), book)
    by_token = f"Bearer {token_text}".encode()
    by_key = f"Bearer {api_key}".encode()
    assert authn.authenticate(by_token).principal == authn.authenticate(by_key).principal
    n = 200_000
    token_s = min(timeit.repeat(lambda: authn.authenticate(by_token), number=n, repeat=5)) / n
    key_s = min(timeit.repeat(lambda: authn.authenticate(by_key), number=n, repeat=5)) / n
    print(
        f"authenticate() in-process (best of 5 x {n:,}): remembered token "
        f"{token_s * 1e6:.2f} us, API key {key_s * 1e6:.2f} us ({key_s / token_s:.2f}x)"
    )


def add_directive(root: Path, directive_id: str, private_pem: bytes) -> Path:
    path = root / "directives" / f"{directive_id}.yaml"
    path.write_text(DIRECTIVE.format(id=directive_id))
    write_signature(path, "us-gov", sign_file_bytes(private_pem, path.read_bytes()))
    return path


def token(private_pem: bytes, residency: str, nationalities: list[str]) -> str:
    """A token as `sovereign token mint` makes it (``gateway.devtokens``)."""
    return mint_token(
        private_pem, residency=residency, nationalities=nationalities, subject="bench"
    )
