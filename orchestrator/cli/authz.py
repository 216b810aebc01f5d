"""CLI: ``sovereign authz``, the gateway's decision for nginx and Envoy (docs/proxies.md)."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.gateway import interrupt
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
from orchestrator.errors import UsageError

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)


@cli.command("authz")
def authz(
    token_key: TokenKeyOpt = None,
    issuers: IssuersOpt = None,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (0: any free port).")] = 9191,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            "--grpc-port",
            help="Also serve Envoy's gRPC ext_authz (Authorization/Check) on this port "
            "(0: any free port).",
        ),
    ] = None,
    token_issuer: TokenIssuerOpt = None,
    token_audience: TokenAudienceOpt = DEFAULT_AUDIENCE,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    reload_interval: ReloadIntervalOpt = 0.5,
    probe_interval: ProbeIntervalOpt = 5.0,
    signal_interval: SignalIntervalOpt = 0.05,
    serve_working_fleet: ServeWorkingFleetOpt = False,
    stub_upstreams: StubUpstreamsOpt = False,
    workers: WorkersOpt = 1,
    decision_log: DecisionLogOpt = None,
    decision_log_max_bytes: DecisionLogMaxBytesOpt = DEFAULT_DECISION_LOG_MAX_BYTES,
    decision_log_when_full: DecisionLogWhenFullOpt = "refuse",
    gateway_id: GatewayIdOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer nginx auth_request and Envoy ext_authz with the gateway's decision.

    The proxy asks before it forwards a model request; authz reads the caller's
    Authorization header (a token, an API key or an --issuers token, as the
    gateway) and the model from X-Sovereign-Model (or
    x-gateway-model-name). Allowed: 200 with X-Sovereign-Route (the legal sites in
    route order) and X-Sovereign-Upstream (the first healthy one's endpoint).
    Refused by the law: 451 with the explanation. Every legal site drained: 503
    site_unavailable. Bad credentials: 401. Any method and path is a decision except
    GET /healthz, GET /metrics and POST /admin/reload.

    --grpc-port also serves Envoy's envoy.service.auth.v3.Authorization/Check.
    The table, its reloads, drains and site health are the gateway's: an apply
    reaches authz's decisions as fast as the gateway's, with no proxy reload.
    `sovereign export --format nginx|envoy` writes the proxy's configuration.

    \b
    Examples:
      sovereign authz --token-key idp-public.pem --port 9191
      sovereign authz --token-key idp-public.pem --port 9191 --grpc-port 9192 --workers 2
      curl -si localhost:9191/check -H "Authorization: Bearer $TOKEN" \\
          -H 'X-Sovereign-Model: fable-5'

    """
    for name, value in (("--port", port), ("--grpc-port", grpc_port)):
        if value is not None and not 0 <= value <= 65535:
            raise UsageError(f"{name} {value} is not a port number", hint="use 1-65535 (0: any)")
    positive("--reload-interval", reload_interval)
    positive("--probe-interval", probe_interval, allow_zero=True)
    positive("--signal-interval", signal_interval, allow_zero=True)
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    log_settings = decision_log_settings(
        decision_log, decision_log_max_bytes, decision_log_when_full, gateway_id
    )
    if not fleet.is_dir():
        raise UsageError(
            f"fleet directory {fleet} does not exist",
            hint="pass --fleet DIR (default: regions)",
        )
    from orchestrator.gateway.app import GatewaySettings
    from orchestrator.gateway.authz_server import AuthzServer
    from orchestrator.gateway.launch import AuthzSpec
    from orchestrator.gateway.server import bind, event_loop_factory
    from orchestrator.stubs.server import is_loopback

    reserved = None
    if grpc_port == 0 and workers > 1:
        # every worker must serve the same gRPC port: pick it once
        reserved = bind(host, 0, reuse_port=True, listen=False)
        grpc_port = int(reserved.getsockname()[1])
    spec = AuthzSpec(
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
            stub_all_sites=stub_upstreams,
            decision_log=log_settings,
        ),
        grpc_port=grpc_port,
        grpc_host=host,
    )
    # Reads the keys and opens the state: errors come first. With --workers, each worker
    # opens its own decision log (FILE.wN); this first build opens none.
    enforcer = (spec if workers == 1 else spec.without_decision_log()).build()

    def announce(bound_port: int, info: Mapping[str, object]) -> None:
        url = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
        grpc = None
        if enforcer.grpc_port is not None:
            grpc = f"{host}:{enforcer.grpc_port}"
        started = {"url": url, "grpc": grpc, **info, "workers": workers}
        if json_out:
            output.emit_json_now(started)
        else:
            output.err().print(
                f"authz on {url}"
                + (f" and gRPC {grpc}" if grpc else "")
                + f", deciding on table {info['table']} from {info['source']}"
                + (f" ({workers} workers)" if workers > 1 else "")
            )
        if not is_loopback(host):
            output.err().print(
                f"[yellow]warning:[/] listening on {host}: only the proxy should reach "
                "authz, over a private network or TLS"
            )

    try:
        if workers > 1:
            from orchestrator.gateway.workers import serve_workers

            serve_workers(spec, host, port, workers, announce, output.err().print)
            output.err().print("authz stopped")
            return
        serving = enforcer.load_initial()
        sock = bind(host, port)
        info = {
            "table": serving.table.version,
            "serial": serving.table.serial,
            "source": serving.source,
        }
        signal.signal(signal.SIGTERM, interrupt)
        enforcer.on_started = lambda: announce(int(sock.getsockname()[1]), info)
        try:
            AuthzServer(enforcer, sock).serve_forever(event_loop_factory())
        except KeyboardInterrupt:
            pass
        output.err().print("authz stopped")
    finally:
        if reserved is not None:
            reserved.close()
