"""CLI: ``sovereign gateway``, the routing gateway (docs/gateway.md) in the foreground."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import (
    DEFAULT_AUDIENCE,
    DEFAULT_DECISION_LOG_MAX_BYTES,
    DEFAULT_FLEET,
    DecisionLogMaxBytesOpt,
    DecisionLogOpt,
    DecisionLogWhenFullOpt,
    FleetOpt,
    GatewayIdOpt,
    HostOpt,
    IssuersOpt,
    JsonOpt,
    ProbeIntervalOpt,
    ReloadIntervalOpt,
    ServeWorkingFleetOpt,
    SignalIntervalOpt,
    StateOpt,
    StubUpstreamsOpt,
    TokenAudienceOpt,
    TokenIssuerOpt,
    TokenKeyOpt,
    WorkersOpt,
    decision_log_settings,
    positive,
)
from orchestrator.errors import SovereignError, UsageError

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)


def _reachable(url: str, timeout_s: float) -> str | None:
    """None when a TCP connection to the URL's host and port opens, else why not."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def require_a_reachable_site(
    upstreams: Mapping[str, str], site_ids: Sequence[str], timeout_s: float = 2.0
) -> None:
    """Refuse to start a gateway that could answer nothing but 503: no site of the fleet has
    an upstream that accepts a connection. One reachable site is enough (the others may be
    down for now; the gateway fails over along each route and probes them)."""
    from concurrent.futures import ThreadPoolExecutor

    items = sorted(upstreams.items())
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(items)))) as pool:
        reasons = list(pool.map(lambda kv: _reachable(kv[1], timeout_s), items))
    if any(r is None for r in reasons):
        return
    missing = [s for s in site_ids if s not in upstreams]
    detail = [f"{site} ({url}: {why})" for (site, url), why in zip(items, reasons, strict=True)]
    detail += [f"{site} (no endpoint)" for site in missing]
    raise SovereignError(
        f"no site can be reached, every request would fail with 503: {'; '.join(detail)}",
        hint="for a local trial, add --stub-upstreams (every site served by a stub on loopback); "
        "otherwise set each site's `endpoint` in the fleet to its OpenAI-compatible URL",
    )


@cli.command("gateway")
def gateway(
    token_key: TokenKeyOpt = None,
    issuers: IssuersOpt = None,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    token_issuer: TokenIssuerOpt = None,
    token_audience: TokenAudienceOpt = DEFAULT_AUDIENCE,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    reload_interval: ReloadIntervalOpt = 0.5,
    probe_interval: ProbeIntervalOpt = 5.0,
    signal_interval: SignalIntervalOpt = 0.05,
    upstream_timeout: Annotated[
        float, typer.Option(help="Seconds an upstream may take before failing over.")
    ] = 30.0,
    serve_working_fleet: ServeWorkingFleetOpt = False,
    stub_upstreams: StubUpstreamsOpt = False,
    workers: WorkersOpt = 1,
    decision_log: DecisionLogOpt = None,
    decision_log_max_bytes: DecisionLogMaxBytesOpt = DEFAULT_DECISION_LOG_MAX_BYTES,
    decision_log_when_full: DecisionLogWhenFullOpt = "refuse",
    gateway_id: GatewayIdOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve model requests (OpenAI-compatible) only where the law allows.

    Principals come only from signed credentials: bearer tokens (claims
    residency, nationalities and groups, exp required; --token-key) and
    API keys of attested tenants (Bearer sk-sov-..., from `sovereign key
    create`, judged as the tenant's attested principal) and tokens of the
    OIDC issuers of --issuers, keys from their JWKS (docs/identity.md).
    A request goes to the first
    healthy site of its route and fails over only along that route; an
    empty route answers 451 with the explanation. The gateway serves the
    fleet last applied to the state store and picks up a new apply within
    --reload-interval, without a restart.

    Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings;
    GET /v1/models, /healthz, /metrics.

    An apply reaches the gateway within milliseconds on an SQLite state
    (the database's change counter is watched) and within about
    --signal-interval on S3/GCS (the state object's version is read that
    often); the state serial is also read every --reload-interval,
    whatever the signal says.

    Examples:

      sovereign gateway --token-key idp-public.pem

      sovereign gateway --port 9000 --token-key jwks.json \\
        --token-issuer https://idp.example --workers 2

      sovereign gateway --serve-working-fleet --stub-upstreams \\
        --token-key dev.pem

      sovereign gateway --issuers issuers.yaml     # Entra ID, Okta, Keycloak

      sovereign gateway --token-key idp-public.pem \\
        --decision-log /var/log/sovereign/decisions.jsonl
    """
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port number", hint="use 1-65535 (0: any)")
    positive("--reload-interval", reload_interval)
    positive("--probe-interval", probe_interval, allow_zero=True)
    positive("--signal-interval", signal_interval, allow_zero=True)
    positive("--upstream-timeout", upstream_timeout)
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    log_settings = decision_log_settings(
        decision_log, decision_log_max_bytes, decision_log_when_full, gateway_id
    )
    # The gateway stack is imported only when the gateway runs (CLI start-up stays fast).
    from orchestrator.gateway.app import GatewaySettings
    from orchestrator.gateway.launch import GatewaySpec, build_gateway
    from orchestrator.gateway.server import bind, run
    from orchestrator.stubs.server import is_loopback

    if not fleet.is_dir():
        raise UsageError(
            f"fleet directory {fleet} does not exist",
            hint="pass --fleet DIR (default: regions)",
        )
    spec = GatewaySpec(
        fleet=fleet,
        state=state,
        token_keys=tuple(token_key or ()),
        issuers=issuers,
        token_audience=token_audience,
        token_issuer=token_issuer,
        serve_working_fleet=serve_working_fleet,
        settings=GatewaySettings(
            fleet_dir=fleet,
            reload_interval_s=reload_interval,
            probe_interval_s=probe_interval,
            object_signal_interval_s=signal_interval,
            upstream_timeout_s=upstream_timeout,
            stub_all_sites=stub_upstreams,
            decision_log=log_settings,
        ),
    )
    # Reads the keys and opens the state: errors come first. With --workers, each worker
    # opens its own decision log (FILE.wN); this first build opens none.
    gw = build_gateway(spec if workers == 1 else spec.without_decision_log())

    def announce(bound_port: int, info: Mapping[str, object]) -> None:
        url = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
        started = {"url": url, **info, "workers": workers}
        if json_out:
            output.emit_json_now(started)
        else:
            output.err().print(
                f"gateway on {url}, serving table {info['table']} from {info['source']}"
                + (f" ({workers} workers)" if workers > 1 else "")
            )
        if serve_working_fleet:
            output.err().print(
                "[yellow]warning:[/] serving the working fleet, not what was "
                "applied (development only)"
            )
        if not is_loopback(host):
            output.err().print(
                f"[yellow]warning:[/] listening on {host}: terminate TLS in front "
                "of the gateway; bearer tokens must not cross a network in clear"
            )

    if workers > 1:
        from orchestrator.gateway.workers import serve_workers

        serve_workers(spec, host, port, workers, announce, output.err().print)
        output.err().print("gateway stopped")
        return
    serving = gw.load_initial()
    if not stub_upstreams:
        require_a_reachable_site(serving.upstreams, sorted(serving.table.fleet.sites))
    sock = bind(host, port)
    announce(
        int(sock.getsockname()[1]),
        {
            "table": serving.table.version,
            "serial": serving.table.serial,
            "source": serving.source,
        },
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
    # handler that was installed before it: make that a clean stop, not a traceback.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        run(gw, host, port, sock)  # on uvloop when installed
    except KeyboardInterrupt:
        pass
    output.err().print("gateway stopped")


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
