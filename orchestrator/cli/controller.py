"""CLI: ``sovereign controller`` (docs/runbooks.md), the loop that keeps the fleet converged.

Presentation and process plumbing only (options, signals, the HTTP endpoints' lifetime); the
loop is ``orchestrator.reconcile.controller``.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import (
    DEFAULT_FLEET,
    FleetOpt,
    JsonOpt,
    SitesOpt,
    StateOpt,
    sites_local,
)
from orchestrator.cli.output import emit_json
from orchestrator.errors import UsageError
from orchestrator.fleet.instants import parse_at

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)


@cli.command("controller")
def controller_command(
    once: Annotated[
        bool,
        typer.Option("--once", help="Run one pass and exit with apply's exit codes (cron, CI)."),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="SECONDS",
            help="Drift check period; a directive epoch that comes sooner wakes it sooner.",
        ),
    ] = 60.0,
    git: Annotated[
        str | None,
        typer.Option("--git", metavar="URL", help="Pull the fleet from this git repository."),
    ] = None,
    branch: Annotated[str, typer.Option("--branch", help="The branch --git follows.")] = "main",
    checkout: Annotated[
        Path | None,
        typer.Option(
            "--checkout",
            metavar="DIR",
            help="Where --git keeps its clone (default: a temporary directory); --fleet is "
            "then the fleet's path inside the repository.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address of /healthz and /metrics.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of /healthz and /metrics (0: any).")] = 9090,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds",
            help="How long a dead leader's lock lasts before a standby replica takes over.",
        ),
    ] = 60.0,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="With --once: run the pass as if at this instant (ISO 8601; a rehearsal: "
            "only every site local, e.g. --sites local). Change windows and rollout waves are "
            "judged at it.",
        ),
    ] = None,
) -> None:
    """Keep the fleet converged: plan and apply within the interlocks, forever.

    Configuration changes that wait for a change window or a rollout wave
    are carried out when they may go: the controller wakes when a window
    opens or a wave's gate passes, with no new commit.

    Level-triggered: every --interval (and at every directive effective/expires
    instant) it reloads the fleet (pulling --git), plans against what the sites
    hold, and applies. It never overrides the interlock: a refusal is logged at
    error level and waits for a person. Failures back off exponentially with
    jitter. Several replicas may run: the one holding the state lock leads,
    the others stand by. Logs are JSON lines on stderr; /healthz and /metrics
    are served on --host:--port.

    Exit codes with --once: 0 in sync or applied, 1 refused or failed, 3 some
    sites failed, 4 the state is locked by another run.

    Examples:

      sovereign controller --state s3://acme-sovereign/prod --interval 300

      sovereign controller --git https://github.com/acme/fleet.git --branch main \\
        --fleet regions --state gs://acme-sovereign/prod --host 0.0.0.0

      sovereign controller --once --sites local --json

      sovereign controller --once --sites local --at 2026-06-15T06:00:00Z
    """
    from orchestrator.reconcile.controller import (
        Controller,
        ControllerSettings,
        GitSource,
        serve_http,
    )

    if interval <= 0:
        raise UsageError(f"--interval must be > 0, got {interval}")
    if lease_seconds <= 0:
        raise UsageError(f"--lease-seconds must be > 0, got {lease_seconds}")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port number", hint="use 1-65535 (0: any)")
    source = None
    if git is not None:
        where = checkout or Path(tempfile.mkdtemp(prefix="sovereign-fleet-"))
        source = GitSource(git, branch, where)
    elif checkout is not None:
        raise UsageError("--checkout goes with --git", hint="pass --git URL, or drop --checkout")
    elif not fleet.is_dir():
        raise UsageError(
            f"fleet directory {fleet} does not exist",
            hint="pass --fleet DIR (default: regions), or --git URL to pull the fleet",
        )
    settings = ControllerSettings(
        fleet_dir=fleet,
        state_url=state,
        interval=interval,
        sites_local=sites_local(sites),
        git=source,
        lease_seconds=lease_seconds,
    )
    instant = parse_at(at, what="--at")
    if instant is not None and not once:
        raise UsageError(
            "--at goes with --once", hint="sovereign controller --once --sites local --at ISO"
        )
    controller = (
        Controller(settings) if instant is None else Controller(settings, clock=lambda: instant)
    )
    if once:
        result = controller.reconcile_once()
        if json_out:
            emit_json(result.to_json())
        else:
            output.out().print(
                f"{result.outcome.value}: {result.changes} change(s), {result.drift} drift"
                + (
                    f", {sum(result.deferred.values())} deferred"
                    + (
                        f" (the first may go at {result.to_json()['next_deferred']})"
                        if result.next_deferred
                        else ""
                    )
                    if result.deferred
                    else ""
                )
                + (f"; {result.message}" if result.message else ""),
                highlight=False,
                soft_wrap=True,
            )
        if result.outcome.exit_code:
            raise typer.Exit(result.outcome.exit_code)
        return
    server = serve_http(controller, host, port)
    bound = server.server_address[1]
    controller.log("controller.started", url=f"http://{host}:{bound}", interval=interval)
    if json_out:
        emit_json({"url": f"http://{host}:{bound}", "interval": interval})

    def stop(signum: int, frame: object) -> None:
        del signum, frame
        controller.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        controller.run()
    finally:
        server.shutdown()
        controller.log("controller.stopped")
