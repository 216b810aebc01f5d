"""The one confirmation rule of every command that changes something (docs/cli.md,
"Conventions every command follows").

The command first shows what it will do (on stderr), then: with ``--yes`` it goes ahead; on a
terminal it asks, and anything but yes aborts (exit 1); without a terminal and without
``--yes`` it refuses (exit 1) and says to pass ``--yes``. An answer piped on stdin (``echo y
|``) is not a person who read the effect, so it counts as no terminal.
"""

from __future__ import annotations

import sys

import typer

from orchestrator.errors import UsageError


def confirm(question: str, *, yes: bool, doing: str) -> None:
    """Go ahead, ask, or refuse, by the one rule; ``doing`` completes "refusing to ..." (for
    instance "apply the plan")."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to {doing} without confirmation: there is no terminal to ask on",
            hint="pass --yes to confirm from a script (after reading the effect shown above)",
        )
    if not typer.confirm(question, default=False, err=True):
        raise typer.Abort()
