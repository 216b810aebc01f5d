"""CLI: ``sovereign export`` - one jurisdiction's desired state for its Pulumi stack.

The document (``orchestrator.planning.export``) is what the program in ``infra/`` reads, from
stack config or a file: ``sovereign export --jurisdiction EU --format pulumi --out eu.json``
then ``pulumi config set sovereign:inputFile eu.json`` in ``infra/``. It goes to stdout unless
``--out`` names a file; it is JSON either way, so ``--json`` changes only how errors look
(a JSON error object on stdout, docs/cli.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, AtOpt, FleetOpt, JsonOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import UsageError
from orchestrator.fleet.instants import parse_at_or_now
from orchestrator.fleet.loader import load_fleet
from orchestrator.planning.export import EXPORT_FORMATS, export_stack_input

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)


@cli.command("export")
def export_command(
    jurisdiction: Annotated[
        str, typer.Option("--jurisdiction", "-j", help="The jurisdiction id whose stack to export.")
    ],
    format_: Annotated[
        str, typer.Option("--format", help="Output format; 'pulumi' (the infra/ stack input).")
    ] = "pulumi",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the document to FILE instead of stdout.")
    ] = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    json_out: JsonOpt = False,
    at: AtOpt = None,
) -> None:
    """One jurisdiction's desired state (sites, deployments, artifacts, tags) as JSON.

    The input of the jurisdiction's Pulumi stack in infra/: the same
    deployments and artifacts `sovereign plan` wants at that
    jurisdiction's sites, and nothing at anyone else's.

    Examples:

      sovereign export --jurisdiction EU --format pulumi > eu.json

      sovereign export --jurisdiction US --format pulumi --out infra/US.json
    """
    # A failure (with --json too) is reported by the one error boundary in cli/app.py.
    _export(jurisdiction, format_, out, fleet, at)


def _export(jurisdiction: str, format_: str, out: Path | None, fleet: Path, at: str | None) -> None:
    if format_ not in EXPORT_FORMATS:
        raise UsageError(
            f"--format {format_!r} is not supported",
            hint=f"valid formats: {', '.join(EXPORT_FORMATS)}",
        )
    when = parse_at_or_now(at)
    document = export_stack_input(load_fleet(fleet), when, jurisdiction)
    if out is None:
        emit_json(document)
        return
    try:
        out.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(
            f"cannot write {out}: {exc.strerror}", hint="choose a writable --out path"
        ) from None
    output.err().print(
        f"wrote the desired state of {jurisdiction} to {out}: "
        f"{len(document['deployments'])} deployments at {len(document['sites'])} sites",
        markup=False,
        soft_wrap=True,
    )
