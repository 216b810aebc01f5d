"""The ``sovereign`` entry point and its single error boundary.

A command is defined once, in its own module under ``orchestrator/cli/``: the module has a
``cli = typer.Typer()`` and decorates each command function with ``@cli.command("name")`` (a
command group is a Typer of its own, added with ``cli.add_typer(group)``); the help is the
function's docstring or ``help=``. CONTRIBUTING.md, "How to add a command", has the recipe.
The root group imports a module only when one of its commands runs (or its ``--help`` is asked
for), so start-up pays for nothing else: ``sovereign --help`` lists the commands from
``commands.json``, generated from the modules by ``make cli-index``.

``main`` is the only place that catches ``SovereignError``: it prints what happened and what to
do, and exits with the documented code (docs/cli.md, "Exit codes"). A traceback appears only
for a bug (any other exception, re-raised after its JSON error document), or for a
``SovereignError`` when ``SOVEREIGN_DEBUG=1``.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import ClassVar

import typer
from typer._click.core import Command as click_Command
from typer._click.core import Context as click_Context
from typer._click.formatting import HelpFormatter as click_HelpFormatter
from typer.core import TyperCommand, TyperGroup

from orchestrator import __version__
from orchestrator.cli import output
from orchestrator.cli.options import JsonOpt
from orchestrator.errors import FleetError, SovereignError

# The commands `sovereign --help` lists and the module that defines each, with the one-line help
# that module gives it: generated from the modules by `make cli-index` (orchestrator/cli/index.py),
# so `--help` and `version` import no command module; tests/cli/test_conventions.py fails when
# it is stale. Read once per process.
INDEX_FILE = Path(__file__).with_name("commands.json")


@functools.cache
def command_index() -> dict[str, dict[str, str]]:
    """Command name -> {"module": the module whose ``cli`` defines it, "help": its one line}."""
    index: dict[str, dict[str, str]] = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    return index


class LazyCommands(TyperGroup):
    """The root group: a command's module is imported when the command is looked up to run.
    Listing commands for ``--help`` uses the one-line helps of the index instead."""

    _listing = False
    _loaded: ClassVar[dict[str, TyperGroup]] = {}

    def list_commands(self, ctx: click_Context) -> list[str]:
        return sorted({*self.commands, *command_index()})

    def get_command(self, ctx: click_Context, cmd_name: str) -> click_Command | None:
        found = self.commands.get(cmd_name)
        entry = command_index().get(cmd_name)
        if found is not None or entry is None:
            return found
        if self._listing:
            short = entry["help"]
            return TyperCommand(name=cmd_name, short_help=short, help=short, callback=None)
        command = _module_commands(entry["module"]).get(cmd_name)
        if command is not None:
            self.commands[cmd_name] = command
        return command

    def format_help_text(self, ctx: click_Context, formatter: click_HelpFormatter) -> None:
        # Click's wrapper breaks words at hyphens (`--detailed-` / `exitcode`): never here.
        import textwrap

        width = max((formatter.width or 80) - formatter.current_indent - 2, 40)
        for paragraph in (self.help or "").strip().split("\n\n"):
            formatter.write_paragraph()
            for line in textwrap.wrap(
                " ".join(paragraph.split()),
                width,
                break_on_hyphens=False,
                break_long_words=False,
            ):
                formatter.write(f"  {line}\n")

    def format_help(self, ctx: click_Context, formatter: click_HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _module_commands(module_name: str) -> dict[str, click_Command]:
    """The commands a module defines (its ``cli``), built once per process."""
    group = LazyCommands._loaded.get(module_name)
    if group is None:
        module = importlib.import_module(module_name)
        group = typer.main.get_group(module.cli)
        _unwrap_helps(group)
        LazyCommands._loaded[module_name] = group
    return dict(group.commands)


def _unwrap_helps(command: click_Command) -> None:
    """Help texts are written once and wrapped by the terminal: a prose paragraph of a
    docstring (its lines start at the margin) becomes one line, which the help screen wraps
    at the terminal's width; indented lines (examples) and ``\\b`` blocks keep their breaks."""
    if command.help:
        command.help = unwrap_prose(command.help)
    for sub in getattr(command, "commands", {}).values():
        _unwrap_helps(sub)


def unwrap_prose(text: str) -> str:
    """Join the lines of each prose paragraph of ``text`` (see ``_unwrap_helps``)."""
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.split("\n")
        verbatim = lines[0].strip() == "\b" or any(line[:1].isspace() for line in lines[1:])
        if verbatim or len(lines) == 1 or lines[0][:1].isspace():
            out.append(paragraph)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def click_context(group: TyperGroup) -> click_Context:
    return click_Context(group, info_name="sovereign")


app = typer.Typer(
    cls=LazyCommands,
    name="sovereign",
    help=(
        "Serve AI models across jurisdictions, each only where its law allows.\n\n"
        "Exit codes: 0 success; 1 invalid input or refused; 2 plan --detailed-exitcode found "
        "changes; 3 apply finished with some sites failed; 4 the state is locked by another run."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # The root help is plain (click's formatter): listing commands should not import rich.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    # A callback keeps the root a group even while only `version` is registered eagerly.
    pass


@app.command("version")
def version(json_out: JsonOpt = False) -> None:
    """Print the Sovereign version."""
    if json_out:
        output.emit_json({"version": __version__})
    else:
        typer.echo(__version__)


def command_tree() -> TyperGroup:
    """The root group with every command loaded (for tests and tools that walk them all)."""
    group = typer.main.get_command(app)
    assert isinstance(group, LazyCommands)
    for name in group.list_commands(click_context(group)):
        group.get_command(click_context(group), name)
    return group


def _report(exc: SovereignError) -> None:
    if output.json_mode():
        return  # reported once, as JSON on stdout
    if isinstance(exc, FleetError):
        output.print_problems(exc.problems)  # unwrapped FILE:LINE: lines, as `validate` prints
        if exc.hint:
            output.err().print(f"[dim]hint:[/] {output.escape(exc.hint)}", soft_wrap=True)
    else:
        output.print_error(exc.message, exc.hint)


def _usage_error(exc: typer.TyperException) -> None:
    """A wrong argument or option (Typer's vendored click): invalid input, exit 1.

    Click would exit 2, but docs/cli.md ("Exit codes") reserves 2 for "plan found changes"."""
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
    try:
        _main(argv)
    except BrokenPipeError:
        # The reader went away (`sovereign ... | head`): stop quietly, as Python's docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["version"] and all(a == "--json" for a in args[1:]):
        # What scripts call most: answered before any command tree is built.
        if args[1:]:
            sys.stdout.write(json.dumps({"version": __version__}) + "\n")
        else:
            sys.stdout.write(__version__ + "\n")
        sys.exit(0)
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


EXIT_MEANINGS = {
    1: "invalid input or refused",
    3: "finished with some sites failed",
    4: "the state is locked by another run",
}


def _exit(code: int) -> None:
    """End the run: 0 and 2 (plan found changes) are answers; any other code is a failure."""
    if code in (0, 2):
        output.finish()
    else:
        meaning = EXIT_MEANINGS.get(code, "the command failed")
        output.fail(
            output.error_json(
                f"{meaning} (exit code {code})", hint=None, exit_code=code, type="Exit"
            )
        )
    sys.exit(code)


if __name__ == "__main__":
    main()
