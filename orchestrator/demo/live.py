"""The demo's last act: real requests through the real gateway, on the fleet just applied.

The gateway reads the applied fleet from the workspace's state store (re-verifying the directive
signatures), starts a loopback stub per local site that serves only what the local provider
really deployed under ``.sovereign/sites/<id>``, and is called over HTTP with signed tokens
from a throwaway identity-provider key. Then one site is stopped to show that failover stays
inside the legal route, and the on-call runbook drains it (the gateway stops trying it, without a
restart) and restores it. It runs at wall-clock time, when the 2026-06-26 amendment is in force.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from orchestrator.demo.matrix import MODELS, PRINCIPALS, DemoPrincipal
from orchestrator.fleet.loader import load_fleet, load_fleet_files
from orchestrator.gateway.app import Gateway, GatewaySettings
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.server import GatewayApp
from orchestrator.gateway.sources import AppliedFleetSource
from orchestrator.gateway.tokens import DEFAULT_AUDIENCE, TokenVerifier, load_token_keys
from orchestrator.layout import print_table
from orchestrator.policy.epochs import in_force
from orchestrator.policy.impact import audience_cells
from orchestrator.policy.principal import Principal
from orchestrator.reconcile.runbooks import prepare_drain, prepare_restore, record, serving_fleet
from orchestrator.state import StateStore, open_store

ISSUER = "https://idp.demo.invalid"
CHAT = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    site: str | None  # X-Sovereign-Site
    detail: str  # the stub's reply, or the first refusal reason

    @property
    def served(self) -> bool:
        return self.status == 200


class DemoIdentityProvider:
    """Signs tokens the way a real IdP would (EdDSA); the private key never leaves memory."""

    def __init__(self, workdir: Path) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.public_key_file = workdir / "idp-public.pem"
        self.public_key_file.write_bytes(
            self._key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token_for(self, who: DemoPrincipal) -> str:
        now = int(time.time())
        p = who.principal
        claims = {
            "iss": ISSUER,
            "aud": DEFAULT_AUDIENCE,
            "sub": who.label,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
            "residency": p.residency,
            "nationalities": sorted(p.nationalities),
            "groups": sorted(p.groups),
        }
        return jwt.encode(claims, self._key, algorithm="EdDSA")


def _ask(client: httpx.Client, url: str, token: str, model: str) -> Answer:
    r = client.post(
        url + CHAT,
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    site = r.headers.get("x-sovereign-site")
    body = r.json()
    if r.status_code == 200:
        detail = str(body["choices"][0]["message"]["content"])
    elif r.status_code == 451:
        refs = sorted(
            {
                reason["ref"]
                for decision in body["explanation"]["sites"].values()
                for reason in decision["reasons"]
                if reason["rule"] in ("directive", "withdrawn")
            }
        )
        detail = "refused: " + (", ".join(refs) if refs else "no legal site")
    else:
        detail = str(body.get("error", body))[:80]
    return Answer(r.status_code, site, detail)


def _cell(a: Answer) -> str:
    if a.served:
        return f"[green]{a.status}[/] {a.site}"
    return f"[red]{a.status}[/] {a.detail}"


def _runbook(
    console: Console,
    client: httpx.Client,
    url: str,
    gateway: Gateway,
    store: StateStore,
    fleet_dir: Path,
    site: str,
    token: str,
) -> bool:
    """The on-call runbook for the stopped site: drain it (the effect first, then recorded and
    audited), the gateway honours it on its next reload without a restart, then restore it."""
    served, origin = serving_fleet(store, lambda: load_fleet(fleet_dir))
    now = datetime.now(UTC)
    change = prepare_drain(
        served, origin, store.drains(), sites=[site], reason="demo: site down", at=now
    )
    s = change.summary()
    # The story's one unit: every model in every audience class the directives in force tell
    # apart (what the drain compared).
    cells = len(served.models) * len(audience_cells(served, in_force(served, now)))
    record(store, change, None)
    asyncio.run(gateway.reload_once())
    drained = _ask(client, url, token, "fable-5")
    console.print(
        f"sovereign drain --site {site} --reason 'demo: site down': {s['rerouted']} of {cells} "
        f"cells rerouted, {s['refused']} lose service (the interlock allows it: another EU site "
        f"serves). The gateway reloaded without a restart; German in Germany, fable-5: "
        f"{_cell(drained)}, {site} no longer tried."
    )
    restore = prepare_restore(served, origin, store.drains(), sites=[site], at=datetime.now(UTC))
    record(store, restore, None)
    asyncio.run(gateway.reload_once())
    route = gateway.serving.table.route("fable-5", Principal.of("DE", ["DE"]), datetime.now(UTC))
    console.print(
        f"sovereign restore --site {site}: {restore.summary()['rerouted']} cells back; "
        f"route again {' > '.join(route)}. Both steps are in the audit log."
    )
    return drained.served and drained.site != site and route[:1] == (site,)


def run_live_requests(fleet_dir: Path, workdir: Path, console: Console) -> bool:
    """Serve the applied fleet and send the story's principals through it; True when every
    answer agrees with the law (served from a legal site, or 451) and failover stays legal."""
    idp = DemoIdentityProvider(workdir)
    verifier = TokenVerifier(load_token_keys([idp.public_key_file]), DEFAULT_AUDIENCE, ISSUER)
    store = open_store(None, fleet_dir, create=False)
    label = f"{fleet_dir} (applied)"
    source = AppliedFleetSource(store, lambda files: load_fleet_files(files, label))
    # No reload or probe tasks: the demo controls time; no access log on the demo's screen.
    settings = GatewaySettings(
        fleet_dir=fleet_dir, reload_interval_s=0, probe_interval_s=0, upstream_timeout_s=5.0
    )
    gateway = Gateway(source, verifier, settings, AccessLog(None))
    app = GatewayApp(gateway)
    ok = True
    try:
        url = app.start()
        console.print(
            f"Gateway on {url}, serving table {gateway.serving.table.version[:12]} "
            "(the applied fleet, signatures re-verified); tokens signed by a demo IdP."
        )
        tokens = {p.label: idp.token_for(p) for p in PRINCIPALS}
        rows = []
        answers: dict[tuple[str, str], Answer] = {}
        with httpx.Client(timeout=10.0) as client:
            for p in PRINCIPALS:
                row = []
                for m in MODELS:
                    a = answers[(p.label, m)] = _ask(client, url, tokens[p.label], m)
                    ok &= a.status in (200, 451)
                    row.append(_cell(a))
                rows.append([p.label, *row])
            print_table(console, ("principal", *MODELS), rows, title="Live requests (now)")

            # Failover: stop the site serving the German resident and ask again.
            german = PRINCIPALS[2]
            first = answers[(german.label, "fable-5")].site
            if first is not None and first in gateway.stubs:
                gateway.stubs[first].stop()
                again = _ask(client, url, tokens[german.label], "fable-5")
                refused = _ask(client, url, tokens[PRINCIPALS[1].label], "fable-5")
                console.print(
                    f"Stopped {first}. {german.label}, fable-5: {_cell(again)} "
                    f"(failover inside the legal route). German national in US, fable-5: "
                    f"{_cell(refused)} (no healthy site anywhere makes an illegal one legal)."
                )
                ok &= again.served and again.site != first and refused.status == 451
                ok &= _runbook(
                    console, client, url, gateway, store, fleet_dir, first, tokens[german.label]
                )
    finally:
        app.stop()
        store.close()
    return ok
