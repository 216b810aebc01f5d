"""CLI: ``sovereign demo`` - the June 2026 story end to end, offline, in a throwaway copy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt
from orchestrator.cli.output import out_console


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
    # Piped output (CI logs, `make demo | tee`) has no width to honour: use one that fits the
    # routing matrix on one line per principal. A terminal keeps its own width.
    console = out_console if out_console.is_terminal else Console(width=110, highlight=False)
    from orchestrator.demo.story import run_demo  # heavy: the whole stack; only for demo

    run_demo(fleet, console, workspace=workspace)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the root app."""
    app.command("demo")(demo_command)
