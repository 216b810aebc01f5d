"""CLI: ``sovereign export`` - one jurisdiction's desired state for its Pulumi stack, or the
configuration of a proxy in front of ``sovereign authz`` (``--format nginx|envoy``, built by
``orchestrator.gateway.proxyconf``; docs/proxies.md).

The document (``orchestrator.planning.export``) is what the program in ``infra/`` reads, from
stack config or a file: ``sovereign export --jurisdiction EU --format pulumi --out eu.json``
then ``pulumi config set sovereign:inputFile eu.json`` in ``infra/``. It goes to stdout unless
``--out`` names a file; it is JSON either way, so ``--json`` changes only how errors look
(a JSON error object on stdout, docs/cli.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, AtOpt, FleetOpt, JsonOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import UsageError
from orchestrator.fleet.instants import parse_at_or_now
from orchestrator.fleet.loader import load_fleet
from orchestrator.planning.export import EXPORT_FORMATS, export_stack_input

PROXY_FORMATS = ("nginx", "envoy")

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)


@cli.command("export")
def export_command(
    jurisdiction: Annotated[
        str | None,
        typer.Option(
            "--jurisdiction", "-j", help="The jurisdiction id whose stack to export (pulumi)."
        ),
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="'pulumi' (the infra/ stack input), 'nginx' (nginx.conf), 'envoy' "
            "(an Envoy bootstrap, JSON) or 'cedar' (the rules at --at as Cedar policies and "
            "entities, JSON).",
        ),
    ] = "pulumi",
    authz: Annotated[
        str | None,
        typer.Option(
            "--authz",
            metavar="HOST:PORT",
            help="nginx/envoy: where sovereign authz answers (HTTP port for nginx, default "
            "127.0.0.1:9191; gRPC port for Envoy, default 127.0.0.1:9192).",
        ),
    ] = None,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="ADDR:PORT",
            help="nginx/envoy: where the proxy listens for model requests.",
        ),
    ] = "127.0.0.1:8080",
    resolver: Annotated[
        str | None,
        typer.Option(
            "--resolver",
            metavar="ADDR",
            help="nginx: resolve site endpoints given by host name per request with this DNS "
            "server (default: once, when nginx starts, with kept-alive connections).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the document to FILE instead of stdout.")
    ] = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    json_out: JsonOpt = False,
    at: AtOpt = None,
) -> None:
    """One jurisdiction's desired state (sites, deployments, artifacts, tags) as JSON, or a
    proxy's configuration in front of `sovereign authz`.

    --format pulumi: the input of the jurisdiction's Pulumi stack in infra/:
    the same deployments and artifacts `sovereign plan` wants at that
    jurisdiction's sites, and nothing at anyone else's.

    --format nginx: a complete nginx.conf that asks authz (auth_request)
    before every request, sends it to the upstreams authz names (failing
    over only along the route), relays 451/503 bodies unchanged, streams
    SSE, and refuses (503) when authz cannot be reached.

    --format envoy: an Envoy bootstrap with the ext_authz gRPC filter
    (failure_mode_allow: false) and one cluster per site.

    Examples:

      sovereign export --jurisdiction EU --format pulumi > eu.json

      sovereign export --jurisdiction US --format pulumi --out infra/US.json

      sovereign export --format nginx --authz 127.0.0.1:9191 --out nginx.conf

      sovereign export --format envoy --authz 127.0.0.1:9192 > envoy.json

      sovereign export --format cedar --at 2026-06-13 --out rules.cedar.json
    """
    # A failure (with --json too) is reported by the one error boundary in cli/app.py.
    if format_ in PROXY_FORMATS:
        _export_proxy(format_, out, fleet, authz, listen, resolver)
        return
    if format_ == "cedar":
        _export_cedar(out, fleet, at)
        return
    if jurisdiction is None:
        raise UsageError(
            f"--format {format_} needs --jurisdiction J", hint="name the jurisdiction's stack"
        )
    _export(jurisdiction, format_, out, fleet, at)


def _export_proxy(
    format_: str,
    out: Path | None,
    fleet_dir: Path,
    authz: str | None,
    listen: str,
    resolver: str | None,
) -> None:
    from orchestrator.gateway.proxyconf import envoy_bootstrap, nginx_config

    fleet = load_fleet(fleet_dir)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--listen {listen!r} is not ADDR:PORT", hint="e.g. 127.0.0.1:8080")
    if authz is not None:
        a_host, _, a_port = authz.rpartition(":")
        if not a_host or not a_port.isdigit():
            raise UsageError(f"--authz {authz!r} is not HOST:PORT", hint="e.g. 127.0.0.1:9191")
    if format_ == "nginx":
        text = nginx_config(fleet, authz or "127.0.0.1:9191", listen, resolver)
    else:
        document = envoy_bootstrap(fleet, authz or "127.0.0.1:9192", int(port), host)
        text = json.dumps(document, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise UsageError(
            f"cannot write {out}: {exc.strerror}", hint="choose a writable --out path"
        ) from None
    output.err().print(f"wrote the {format_} configuration to {out}", markup=False)


def _export_cedar(out: Path | None, fleet: Path, at: str | None) -> None:
    """The rules at ``at`` as Cedar policies and entities (docs/evidence.md, "Checking
    Sovereign with Cedar"): one JSON document, its ``policies`` the Cedar text."""
    from orchestrator.policy.cedar import cedar_export

    export = cedar_export(load_fleet(fleet), parse_at_or_now(at))
    document = export.to_json()
    _write(
        document,
        out,
        lambda: (
            f"wrote the Cedar rules at {document['at']} to {out}: "
            f"{1 + len(export.forbids)} policies, {len(export.entities)} entities"
        ),
    )


def _write(document: dict[str, Any], out: Path | None, said: Callable[[], str]) -> None:
    """The document on stdout, or into ``out`` with one line on stderr saying what it holds."""
    if out is None:
        emit_json(document)
        return
    try:
        out.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(
            f"cannot write {out}: {exc.strerror}", hint="choose a writable --out path"
        ) from None
    output.err().print(said(), markup=False, soft_wrap=True)


def _export(jurisdiction: str, format_: str, out: Path | None, fleet: Path, at: str | None) -> None:
    if format_ not in EXPORT_FORMATS:
        raise UsageError(
            f"--format {format_!r} is not supported",
            hint=f"valid formats: {', '.join((*EXPORT_FORMATS, *PROXY_FORMATS, 'cedar'))}",
        )
    when = parse_at_or_now(at)
    document = export_stack_input(load_fleet(fleet), when, jurisdiction)
    _write(
        document,
        out,
        lambda: (
            f"wrote the desired state of {jurisdiction} to {out}: "
            f"{len(document['deployments'])} deployments at {len(document['sites'])} sites"
        ),
    )
