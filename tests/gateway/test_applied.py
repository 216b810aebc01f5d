"""The gateway serves the APPLIED fleet from the state store, verified, and follows applies.

Real fleet files (signed with test keys), a real SQLite state store, real stub upstreams for
the local sites, and the gateway over HTTP; also ``sovereign gateway`` as a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from orchestrator.cli.app import main
from orchestrator.errors import StateError
from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import AppliedFleetSource
from orchestrator.gateway.tokens import TokenVerifier, load_token_keys
from orchestrator.state import StateStore, open_store
from tests.fleet.builder import DIRECTIVE_FILE, FleetFactory
from tests.gateway.support import Keys, wait_for
from tests.processes import spawn

CHAT = "/v1/chat/completions"
REPO = Path(__file__).resolve().parents[2]


def deploy(root: Path, site: str, *models: str) -> None:
    """What the local provider leaves at a site it deployed ``models`` to."""
    deployments = root / ".sovereign" / "sites" / site / "deployments"
    deployments.mkdir(parents=True, exist_ok=True)
    for model in models:
        (deployments / f"{model}.json").write_text('{"status": "serving"}')


def record(store: StateStore, root: Path, files: dict[str, bytes] | None = None) -> int:
    with store.lock("apply") as lease:
        return store.record_applied_fleet(lease, files or read_fleet_files(root))


@contextmanager
def applied_gateway(
    keys: Keys, store: StateStore, root: Path
) -> Iterator[tuple[GatewayApp, list[str]]]:
    log: list[str] = []
    source = AppliedFleetSource(store, lambda files: load_fleet_files(files, "applied"))
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    settings = GatewaySettings(fleet_dir=root, reload_interval_s=0.05, probe_interval_s=0)
    app = GatewayApp(Gateway(source, verifier, settings, AccessLog(log.append)))
    app.start()
    try:
        yield app, log
    finally:
        app.stop()


def test_serves_applied_fleet_and_enforces_a_new_directive(
    keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client
) -> None:
    before = signed_fleet_factory({DIRECTIVE_FILE: None}, name="before")
    after = signed_fleet_factory(name="after")  # the same fleet plus the signed suspension
    deployments = before / ".sovereign" / "sites" / "us-1" / "deployments"
    deployments.mkdir(parents=True)
    # What the local provider deployed at us-1.
    (deployments / "m-us.json").write_text('{"status": "serving"}')
    store = open_store(None, before)
    record(store, before)
    # A German national located in the US: m-us at us-1 until the suspension is applied.
    headers = keys.headers("US", ["DE"])
    with applied_gateway(keys, store, before) as (app, log):
        r = client.post(app.url + CHAT, json={"model": "m-us"}, headers=headers)
        assert r.status_code == 200 and r.headers["x-sovereign-site"] == "us-1"
        # The stub serves only what was deployed at the site.
        r = client.post(app.url + CHAT, json={"model": "m-open"}, headers=headers)
        assert r.status_code == 404 and r.headers["x-sovereign-site"] == "us-1"
        # Editing the working tree changes nothing: only an apply does.
        (before / DIRECTIVE_FILE).write_bytes((after / DIRECTIVE_FILE).read_bytes())
        time.sleep(0.2)
        r = client.post(app.url + CHAT, json={"model": "m-us"}, headers=headers)
        assert r.status_code == 200
        applied_at = time.monotonic()
        serial = record(store, after)
        while True:
            r = client.post(app.url + CHAT, json={"model": "m-us"}, headers=headers)
            if r.status_code == 451:
                break
            assert r.status_code == 200
            # generous: on a loaded machine the poll may be late (no wall-clock bound asserted)
            assert time.monotonic() - applied_at < 60, "the directive was not enforced"
        refs = r.json()["explanation"]["sites"]["us-1"]["reasons"]
        assert [x["ref"] for x in refs] == ["us-d1"]
        health = client.get(app.url + "/healthz").json()
        assert health["serial"] == serial and health["reload_error"] is None
        # A recorded change moves the state's serial, not the applied fleet: /healthz shows
        # the current serial, and the one the served fleet was applied under.
        with store.lock("test") as lease:
            moved = store.record_change(lease, "deployment.us-1.m-x", "create", "applied", None)
        deadline = time.monotonic() + 30
        while health["serial"] != moved and time.monotonic() < deadline:
            time.sleep(0.05)
            health = client.get(app.url + "/healthz").json()
        assert health["serial"] == moved and health["applied_serial"] == serial
        # A US national is not in the audience.
        r = client.post(app.url + CHAT, json={"model": "m-us"}, headers=keys.headers("US", ["US"]))
        assert r.status_code == 200


def test_tampered_applied_fleet_keeps_the_verified_table(
    keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client
) -> None:
    root = signed_fleet_factory()
    deploy(root, "us-1", "m-open", "m-us")
    store = open_store(None, root)
    record(store, root)
    with applied_gateway(keys, store, root) as (app, log):
        version = app.gateway.serving.table.version
        files = read_fleet_files(root)
        files[DIRECTIVE_FILE] = files[DIRECTIVE_FILE].replace(b"[m-us]", b"[m-open]")
        record(store, root, files)  # the signature no longer matches these bytes
        wait_for(lambda: app.gateway.reload_error is not None)
        health = client.get(app.url + "/healthz").json()
        assert health["table"] == version and health["status"] == "degraded"
        assert "invalid" in health["reload_error"]
        # Still the verified table: m-open is served, m-us still refused for this audience.
        h = keys.headers("US", ["DE"])
        assert client.post(app.url + CHAT, json={"model": "m-open"}, headers=h).status_code == 200
        assert client.post(app.url + CHAT, json={"model": "m-us"}, headers=h).status_code == 451


def test_a_recorded_fleet_with_an_unpinned_authority_set_keeps_the_last_table(
    keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client
) -> None:
    """Issue 19: a fleet recorded behind apply's back with a rogue authority and a lift signed
    by it is never served; the reload keeps the last good table (docs/security.md)."""
    from orchestrator.fleet.signing import generate_key, sign_file_bytes
    from orchestrator.planning.trust import authority_set
    from orchestrator.state.base import PinnedAuthorities

    root = signed_fleet_factory()
    deploy(root, "us-1", "m-open", "m-us")
    store = open_store(None, root)
    fleet = load_fleet_files(read_fleet_files(root), "fleet")
    with store.lock("apply") as lease:
        pins = {}
        for j, value in fleet.jurisdictions.items():
            held, threshold = authority_set(value)
            pins[j] = PinnedAuthorities(
                j, held, threshold, fleet.directives["us-d1"].effective, "t"
            )
        store.record_applied_fleet(lease, read_fleet_files(root), (), pins)
    with applied_gateway(keys, store, root) as (app, _):
        version = app.gateway.serving.table.version
        pem, public = generate_key()
        files = read_fleet_files(root)
        files["us.yaml"] = files["us.yaml"].replace(
            b"directive_threshold: 1",
            f'  - id: us-rogue\n    public_key: "{public}"\ndirective_threshold: 1'.encode(),
        )
        lift = (
            b"id: us-lift\njurisdiction: US\nissuer: us-rogue\nreference: r\naction: lift\n"
            b"effective: 2026-02-01T00:00:00Z\nsupersedes: us-d1\n"
        )
        files["directives/us-lift.yaml"] = lift
        files["directives/us-lift.yaml.sig"] = f"us-rogue {sign_file_bytes(pem, lift)}\n".encode()
        record(store, root, files)
        wait_for(lambda: app.gateway.reload_error is not None)
        health = client.get(app.url + "/healthz").json()
        assert health["table"] == version and "authority set of US" in health["reload_error"]
        h = keys.headers("US", ["DE"])
        assert client.post(app.url + CHAT, json={"model": "m-us"}, headers=h).status_code == 451


def test_refuses_to_start_without_an_applied_fleet(
    keys: Keys, signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    store = open_store(None, root)
    source = AppliedFleetSource(store, load_fleet_files)
    gateway = Gateway(source, TokenVerifier(load_token_keys([keys.public_pem_path])))
    with pytest.raises(StateError) as info:
        gateway.load_initial()
    assert "sovereign apply" in (info.value.hint or "")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "gateway",
                "--fleet",
                str(root),
                "--token-key",
                str(keys.public_pem_path),
                "--port",
                "0",
            ]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "nothing has been applied" in err and "sovereign apply" in err


def test_cli_usage_errors(
    keys: Keys, signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()
    for argv, expected in [
        # Without --token-key the gateway accepts API keys only (docs/identity.md): the
        # first thing it misses here is a state to read the applied fleet and keys from.
        (["gateway", "--fleet", str(root)], "no state at"),
        (
            ["gateway", "--fleet", str(root), "--token-key", str(root / "us.yaml")],
            "not a PEM public key",
        ),
        (
            [
                "gateway",
                "--fleet",
                str(root),
                "--token-key",
                str(keys.public_pem_path),
                "--reload-interval",
                "0",
            ],
            "--reload-interval",
        ),
        (
            [
                "gateway",
                "--fleet",
                str(root),
                "--token-key",
                str(keys.public_pem_path),
                "--signal-interval",
                "-1",
            ],
            "--signal-interval must be >= 0",
        ),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 1
        assert expected in capsys.readouterr().err


def test_cli_gateway_process(
    keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client
) -> None:
    root = signed_fleet_factory()
    deploy(root, "us-1", "m-open", "m-us")
    store = open_store(None, root)
    record(store, root)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = spawn(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "gateway",
            "--fleet",
            str(root),
            "--port",
            "0",
            "--token-key",
            str(keys.public_pem_path),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        url = started["url"]
        assert url.startswith("http://127.0.0.1:") and started["serial"] == store.serial()
        wait_for(lambda: _ready(client, url), timeout=10)
        token = keys.token("US", ["US"])
        r = client.post(
            url + CHAT,
            json={
                "model": "m-us",
                "messages": [{"role": "user", "content": "a very private prompt"}],
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200 and r.headers["x-sovereign-site"] == "us-1"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    served = [x for x in lines if x.get("path") == CHAT]
    assert served and served[0]["site"] == "us-1" and served[0]["residency"] == "US"
    assert token not in err and "private prompt" not in err


def _ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url + "/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_working_fleet_reloads_on_file_changes(
    keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client
) -> None:
    from orchestrator.fleet.loader import load_fleet
    from orchestrator.gateway.sources import WorkingFleetSource

    root = signed_fleet_factory({DIRECTIVE_FILE: None}, name="working")
    deploy(root, "us-1", "m-open", "m-us")
    signed = signed_fleet_factory(name="signed")
    verifier = TokenVerifier(load_token_keys([keys.public_pem_path]), keys.audience)
    settings = GatewaySettings(fleet_dir=root, reload_interval_s=0.05, probe_interval_s=0)
    app = GatewayApp(
        Gateway(WorkingFleetSource(root, load_fleet), verifier, settings, AccessLog(None))
    )
    app.start()
    try:
        h = keys.headers("US", ["DE"])
        assert client.post(app.url + CHAT, json={"model": "m-us"}, headers=h).status_code == 200
        # An unsigned directive makes the fleet invalid: never half-applied, old table stays.
        (root / DIRECTIVE_FILE).write_bytes((signed / DIRECTIVE_FILE).read_bytes())
        wait_for(lambda: app.gateway.reload_error is not None)
        assert client.post(app.url + CHAT, json={"model": "m-us"}, headers=h).status_code == 200
        sig = DIRECTIVE_FILE + ".sig"
        (root / sig).write_bytes((signed / sig).read_bytes())
        wait_for(
            lambda: (
                client.post(app.url + CHAT, json={"model": "m-us"}, headers=h).status_code == 451
            )
        )
        assert app.gateway.reload_error is None
    finally:
        app.stop()


def test_a_local_site_with_nothing_deployed_serves_nothing(
    keys: Keys, signed_fleet_factory: FleetFactory, client: httpx.Client
) -> None:
    """Fail closed: without --stub-upstreams, a legal route to a local site where the local
    provider deployed nothing never reaches a stub that would answer for any model."""
    root = signed_fleet_factory()
    store = open_store(None, root)
    record(store, root)
    with applied_gateway(keys, store, root) as (app, _):
        r = client.post(
            app.url + CHAT, json={"model": "m-open"}, headers=keys.headers("US", ["US"])
        )
    assert r.status_code == 404
    assert r.headers["x-sovereign-site"] == "us-1"
    assert "not deployed" in r.text
