"""The ``sovereign`` entry point and its single error boundary.

Each command group lives in its own module and registers itself on ``app``. ``main`` is the
only place that catches ``SovereignError``: it prints what happened and what to do, and exits
with the documented code (SPEC 5). Tracebacks appear only for bugs, or with SOVEREIGN_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

import typer

from orchestrator import __version__
from orchestrator.cli import audit, demo, directive, explain, export, gateway, plan, validate
from orchestrator.cli.output import err_console, print_problems
from orchestrator.errors import FleetError, SovereignError

app = typer.Typer(
    name="sovereign",
    help=(
        "Serve AI models across jurisdictions, each only where its law allows.\n\n"
        "Exit codes: 0 success; 1 invalid input or refused; 2 plan --detailed-exitcode found "
        "changes; 3 apply finished with some sites failed; 4 the state is locked by another run."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("version")
def version() -> None:
    """Print the Sovereign version."""
    typer.echo(__version__)


for module in (validate, directive, explain, plan, audit, gateway, demo, export):
    module.register(app)


def _report(exc: SovereignError) -> None:
    if isinstance(exc, FleetError):
        print_problems(exc.problems)  # unwrapped FILE:LINE: lines, as `validate` prints them
    else:
        err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
    if exc.hint:
        err_console.print(f"[dim]hint:[/] {exc.hint}", soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; never let a user mistake end in a traceback."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="sovereign", standalone_mode=False)
    except SovereignError as exc:
        if os.environ.get("SOVEREIGN_DEBUG") == "1":
            raise
        _report(exc)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # Typer's (vendored click) usage errors. Click would exit 2, but SPEC 5 reserves 2 for
        # "plan found changes": a wrong argument is invalid input, exit 1.
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show(file=sys.stderr)  # type: ignore[attr-defined]
            sys.exit(0)
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
