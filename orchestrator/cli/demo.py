"""CLI: ``sovereign demo`` - the June 2026 story end to end, offline, in a throwaway copy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt
from orchestrator.cli.output import emit_json

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)


@cli.command("demo")
def demo_command(
    fleet: FleetOpt = DEFAULT_FLEET,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            help="Run in this new or empty directory and keep it (default: a temporary "
            "directory, removed afterwards).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the main job end to end, offline, in under a minute.

    Copies the fleet to a temporary workspace with every site on the local
    provider, applies it on 2026-06-11, adds the US directive of
    2026-06-12 (impact first, then plan and apply on 2026-06-13), then its
    2026-06-26 amendment, printing the routing matrix each time, the
    collateral count against switching the models off everywhere, and the
    audit verification. The real fleet directory is only read.

    Examples:

      sovereign demo

      sovereign demo --workspace /tmp/sovereign-demo   # keep the workspace
    """
    # A terminal keeps its own width; piped output honours COLUMNS (80 without it). With
    # --json the story is narrated on stderr and stdout holds only the outcome.
    console = output.err() if json_out else output.out()
    from orchestrator.demo.story import run_demo  # heavy: the whole stack; only for demo

    started = time.monotonic()
    run_demo(fleet, console, workspace=workspace)  # raises unless the story ended clean
    if json_out:  # the human story already ends with its own closing line
        emit_json(
            {
                "ok": True,
                "seconds": round(time.monotonic() - started, 1),
                "workspace": str(workspace) if workspace is not None else None,
            }
        )
