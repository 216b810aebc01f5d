"""The ``sovereign`` entry point and its single error boundary.

Each command group lives in its own module and registers itself on ``app``. ``main`` is the
only place that catches ``SovereignError``: it prints what happened and what to do, and exits
with the documented code (SPEC 5). Tracebacks appear only for bugs, or with SOVEREIGN_DEBUG=1.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.markup import escape

from orchestrator import __version__
from orchestrator.cli import (
    audit,
    demo,
    directive,
    explain,
    export,
    gateway,
    output,
    plan,
    report,
    runbooks,
    state,
    token,
    validate,
)
from orchestrator.cli.options import JsonOpt
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
def version(json_out: JsonOpt = False) -> None:
    """Print the Sovereign version."""
    if json_out:
        output.emit_json({"version": __version__})
    else:
        typer.echo(__version__)


for module in (
    validate,
    directive,
    explain,
    plan,
    runbooks,
    state,
    audit,
    gateway,
    demo,
    export,
    token,
    report,
):
    module.register(app)


def _report(exc: SovereignError) -> None:
    if output.json_mode():
        return  # reported once, as JSON on stdout
    if isinstance(exc, FleetError):
        output.print_problems(exc.problems)  # unwrapped FILE:LINE: lines, as `validate` prints
        if exc.hint:
            output.err().print(f"[dim]hint:[/] {escape(exc.hint)}", soft_wrap=True)
    else:
        output.print_error(exc.message, exc.hint)


def _usage_error(exc: typer.TyperException) -> None:
    """A wrong argument or option (Typer's vendored click): invalid input, exit 1.

    Click would exit 2, but SPEC 5 reserves 2 for "plan found changes"."""
    ctx = getattr(exc, "ctx", None)
    command_path = getattr(ctx, "command_path", "sovereign")
    hint = f"see `{command_path} --help`"
    show = getattr(exc, "show", None)
    if output.json_mode():
        pass  # reported once, as JSON on stdout
    elif callable(show):
        show(file=sys.stderr)
    else:
        output.print_error(str(exc), hint)
    output.fail(output.error_json(exc.format_message(), hint=hint, exit_code=1, type="UsageError"))
    sys.exit(1)


class _Stderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def _show_transfer_progress() -> None:
    """Progress of large artifact copies (``providers.transfer``) is a diagnostic: stderr."""
    progress = logging.getLogger("orchestrator.transfer")
    if not progress.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("copying %(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: the single error boundary. A user mistake never ends in a traceback, and
    under --json every failure is one JSON error document on stdout."""
    args = sys.argv[1:] if argv is None else list(argv)
    output.begin(args)
    _show_transfer_progress()
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=args, prog_name="sovereign", standalone_mode=False)
    except SovereignError as exc:
        if os.environ.get("SOVEREIGN_DEBUG") == "1":
            raise
        _report(exc)
        output.fail(output.error_of(exc))
        sys.exit(exc.exit_code)
    except typer.Abort:
        if not output.json_mode():
            output.print_error("aborted")
        output.fail(output.error_json("aborted", hint=None, exit_code=1, type="Aborted"))
        sys.exit(1)
    except typer.Exit as exc:
        _exit(exc.exit_code)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show(file=sys.stderr)  # type: ignore[attr-defined]
            sys.exit(0)
        _usage_error(exc)
    except Exception as exc:
        # A bug: the traceback is worth having (on stderr); a --json pipeline still gets JSON.
        output.fail(
            output.error_json(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="this is a bug in sovereign; please report it with the command line",
                exit_code=1,
                type="InternalError",
            )
        )
        raise
    _exit(rc if isinstance(rc, int) else 0)


def _exit(code: int) -> None:
    """End the run: 0 and 2 (plan found changes) are answers; any other code is a failure."""
    if code in (0, 2):
        output.finish()
    else:
        output.fail(
            output.error_json(
                f"the command failed (exit code {code})", hint=None, exit_code=code, type="Exit"
            )
        )
    sys.exit(code)


if __name__ == "__main__":
    main()
