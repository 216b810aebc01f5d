"""API keys of attested tenants through the real gateway, with the official openai client.

A copy of the committed example fleet gets an attestor and two tenants (signed with
``sovereign directive sign``), is recorded as applied in a real SQLite state, and keys are made
with ``sovereign key create`` / revoked with ``sovereign key revoke``. The gateway reads both
from the state and serves each key as its tenant's attested principal (docs/identity.md).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.authn import Authenticator, KeyBook
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import AppliedFleetSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.state import StateStore, open_store
from tests.cli.support import run_cli
from tests.gateway.support import Keys, wait_for

REPO = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
EXPIRES = "2099-01-01T00:00:00Z"
EXPIRES_TS = 4070908800.0  # EXPIRES as a POSIX timestamp


def tenant_text(tenant: str, residency: str, nationalities: str) -> str:
    return (
        f"id: {tenant}\n"
        "attested_by: eu-notary\n"
        f'reference: "KYC dossier {tenant}"\n'
        "principal:\n"
        f"  residency: {residency}\n"
        f"  nationalities: [{nationalities}]\n"
        "  groups: []\n"
        f"expires: {EXPIRES}\n"
    )


@dataclass
class Setup:
    root: Path
    store: StateStore
    capsys: pytest.CaptureFixture[str]

    def cli(self, *args: str) -> tuple[int, str, str]:
        return run_cli(self.capsys, *args, "--fleet", str(self.root))

    def key(self, tenant: str) -> dict[str, str]:
        code, out, err = self.cli("key", "create", "--tenant", tenant, "--yes", "--json")
        assert code == 0, err
        created: dict[str, str] = json.loads(out)
        return created

    def apply(self, files: dict[str, bytes] | None = None) -> None:
        with self.store.lock("apply") as lease:
            self.store.record_applied_fleet(lease, files or read_fleet_files(self.root))


@pytest.fixture
def setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Setup]:
    root = tmp_path / "regions"
    shutil.copytree(REPO / "regions", root, ignore=shutil.ignore_patterns(".sovereign"))
    key_file = tmp_path / "eu-notary.pem"
    code, out, err = run_cli(
        capsys, "keygen", "--out", str(key_file), "--authority", "eu-notary", "--json"
    )
    assert code == 0, err
    public = json.loads(out)["public_key"]
    with (root / "fleet.yaml").open("a") as f:
        f.write(f'attestors:\n  - id: eu-notary\n    public_key: "{public}"\n')
    (root / "tenants").mkdir()
    for tenant, residency in (("acme-de", "DE"), ("acme-us", "US")):
        path = root / "tenants" / f"{tenant}.yaml"
        path.write_text(tenant_text(tenant, residency, "DE"))
        code, _, err = run_cli(
            capsys, "directive", "sign", str(path), "--key", str(key_file),
            "--authority", "eu-notary", "--fleet", str(root),
        )  # fmt: skip
        assert code == 0, err
    code, out, err = run_cli(capsys, "validate", "--fleet", str(root))
    assert code == 0 and "2 attested tenants" in out, err
    store = open_store(None, root)
    s = Setup(root, store, capsys)
    s.apply()
    try:
        yield s
    finally:
        store.close()


@pytest.fixture
def clock() -> list[float]:
    return [1_800_000_000.0]  # 2027-01-15, well before the attestations expire


@pytest.fixture
def gateway(setup: Setup, keys: Keys, clock: list[float]) -> Iterator[tuple[GatewayApp, list[str]]]:
    log: list[str] = []
    source = AppliedFleetSource(setup.store, lambda files: load_fleet_files(files, "applied"))
    authn = Authenticator(
        TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience),
        KeyBook(clock=lambda: clock[0]),
    )
    settings = GatewaySettings(stub_all_sites=True, reload_interval_s=0.05, probe_interval_s=0)
    app = GatewayApp(Gateway(source, authn, settings, AccessLog(log.append)))
    app.start()
    try:
        yield app, log
    finally:
        app.stop()


def _openai(app: GatewayApp, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{app.url}/v1",
        api_key=key,
        max_retries=0,
        timeout=10,
        http_client=httpx.Client(trust_env=False),
    )


def _ask(app: GatewayApp, key: str) -> int:
    """One fable-5 chat through the openai client: its HTTP status."""
    with _openai(app, key) as client:
        try:
            client.chat.completions.with_raw_response.create(
                model="fable-5", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.APIStatusError as exc:
            return exc.status_code
    return 200


def test_a_key_is_served_as_its_tenants_attested_principal(
    setup: Setup, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, log = gateway
    de = setup.key("acme-de")
    assert de["key"].startswith("sk-sov-") and len(de["key"]) == len("sk-sov-") + 43
    assert de["tenant"] == "acme-de" and de["expires"] is None and de["id"].startswith("key_")
    wait_for(lambda: len(app.gateway.authenticator.keys or ()) == 1)
    with _openai(app, de["key"]) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="fable-5", messages=[{"role": "user", "content": "hi"}]
        )
    assert raw.headers["x-sovereign-site"] == "aws-eu-central-1"  # an EU site
    assert raw.parse().choices[0].message.content == "served by aws-eu-central-1 (fable-5)"
    us = setup.key("acme-us")
    wait_for(lambda: len(app.gateway.authenticator.keys or ()) == 2)
    with _openai(app, us["key"]) as client, pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="fable-5", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 451
    body = info.value.response.json()
    assert body["explanation"]["principal"] == {
        "residency": "US",
        "nationalities": ["DE"],
        "groups": [],
    }
    assert body["explanation"]["route"] == []
    lines = [json.loads(x) for x in log if '"status"' in x]
    assert {(x["auth"], x["caller"]) for x in lines} >= {("key", "acme-de"), ("key", "acme-us")}
    assert not any(de["key"] in x or us["key"] in x for x in log)


def test_revoked_key_is_refused_within_the_reload_interval(
    setup: Setup, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, _ = gateway
    created = setup.key("acme-de")
    wait_for(lambda: _ask(app, created["key"]) == 200, timeout=30)
    code, out, err = setup.cli("key", "revoke", created["id"], "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["revoked"]["status"] == "revoked"
    wait_for(lambda: _ask(app, created["key"]) == 401, timeout=30)
    with _openai(app, created["key"]) as client, pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert info.value.response.json()["error"]["code"] == "invalid_api_key"
    code, out, _ = setup.cli("key", "list", "--json")
    (row,) = json.loads(out)["keys"]
    assert row["status"] == "revoked" and "key" not in row and "sha256" not in row


def test_expired_or_removed_attestation_is_refused(
    setup: Setup, gateway: tuple[GatewayApp, list[str]], clock: list[float]
) -> None:
    app, _ = gateway
    de = setup.key("acme-de")
    us = setup.key("acme-us")
    wait_for(lambda: _ask(app, de["key"]) == 200, timeout=30)
    clock[0] = EXPIRES_TS  # the attestation's own expiry: refused from that instant on
    assert _ask(app, de["key"]) == 401
    with _openai(app, de["key"]) as client, pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    error = info.value.response.json()["error"]
    assert error["code"] == "invalid_api_key" and "expired" in error["message"]
    clock[0] = 1_800_000_000.0
    assert _ask(app, us["key"]) == 451
    # The tenant's attestation removed from the applied fleet: its keys stop working.
    files = read_fleet_files(setup.root)
    del files["tenants/acme-us.yaml"], files["tenants/acme-us.yaml.sig"]
    setup.apply(files)
    wait_for(lambda: _ask(app, us["key"]) == 401, timeout=30)
    # ... and an attestation that no longer verifies (a changed byte) likewise.
    files = read_fleet_files(setup.root)
    files["tenants/acme-de.yaml"] = files["tenants/acme-de.yaml"].replace(b"KYC", b"kyc")
    setup.apply(files)
    wait_for(lambda: _ask(app, de["key"]) == 401, timeout=30)


def test_tokens_and_keys_side_by_side(
    setup: Setup, keys: Keys, gateway: tuple[GatewayApp, list[str]]
) -> None:
    app, _ = gateway
    created = setup.key("acme-de")
    wait_for(lambda: _ask(app, created["key"]) == 200, timeout=30)
    assert _ask(app, keys.token("DE", ["DE"])) == 200
    assert _ask(app, "sk-sov-" + "A" * 43) == 401  # well-formed, unknown
    assert _ask(app, keys.token("US", ["DE"])) == 451


def test_key_create_refuses_an_unknown_or_expired_tenant(setup: Setup) -> None:
    code, out, _ = setup.cli("key", "create", "--tenant", "acme-de", "--json")
    assert code == 1 and "confirmation" in json.loads(out)["error"]["message"]
    code, out, _ = setup.cli("key", "create", "--tenant", "nobody", "--yes", "--json")
    assert code == 1 and "not an attested tenant" in json.loads(out)["error"]["message"]
    code, out, _ = setup.cli(
        "key",
        "create",
        "--tenant",
        "acme-de",
        "--expires",
        "2020-01-01T00:00:00Z",
        "--yes",
        "--json",
    )
    assert code == 1 and "future" in json.loads(out)["error"]["message"]
    code, out, _ = setup.cli("key", "list", "--json")
    assert json.loads(out) == {"keys": []}
    code, out, _ = setup.cli("key", "revoke", "key_0000000000000000", "--yes", "--json")
    assert code == 1 and "no API key" in json.loads(out)["error"]["message"]


def test_sovereign_authz_judges_keys_as_the_gateway_does(
    setup: Setup, keys: Keys, clock: list[float]
) -> None:
    """authz shares the gateway's authenticator: a tenant's key is its attested principal
    there too, and a revoked key is a 401 within the reload interval (docs/proxies.md)."""
    from orchestrator.gateway.authz import Authz
    from orchestrator.gateway.authz_server import AuthzServer
    from orchestrator.gateway.server import bind

    source = AppliedFleetSource(setup.store, lambda files: load_fleet_files(files, "applied"))
    authn = Authenticator(
        TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience),
        KeyBook(clock=lambda: clock[0]),
    )
    settings = GatewaySettings(stub_all_sites=True, reload_interval_s=0.05, probe_interval_s=0)
    authz = Authz(source, authn, settings, AccessLog(lambda line: None))
    server = AuthzServer(authz, bind("127.0.0.1", 0))
    url = server.start()

    def decide(key: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", "X-Sovereign-Model": "fable-5"}
        return httpx.get(url + "/check", headers=headers, timeout=10, trust_env=False)

    try:
        de, us = setup.key("acme-de"), setup.key("acme-us")
        wait_for(lambda: decide(de["key"]).status_code == 200, timeout=30)
        allowed = decide(de["key"])
        assert allowed.headers["x-sovereign-route"] == "aws-eu-central-1,gcp-europe-west4"
        refused = decide(us["key"])
        assert refused.status_code == 451
        assert refused.json()["explanation"]["principal"]["residency"] == "US"
        code, _, err = setup.cli("key", "revoke", de["id"], "--yes", "--json")
        assert code == 0, err
        wait_for(lambda: decide(de["key"]).status_code == 401, timeout=30)
        assert decide(de["key"]).json()["error"]["code"] == "invalid_api_key"
    finally:
        server.stop()
