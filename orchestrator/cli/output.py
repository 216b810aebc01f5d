"""The one place that decides where a command's output goes (docs/cli.md).

Every command writes through this module, so that none can get the conventions wrong:

- a command's *result* (tables, plans, reports, JSON) goes to stdout: ``sovereign status >
  status.txt`` works;
- progress, prompts, warnings and diagnostics go to stderr;
- with ``--json``, stdout carries exactly one JSON document. A command hands its document to
  :func:`emit_json`; the error boundary in ``cli/app.py`` prints it when the command ends. If
  the command fails, the boundary merges ``{"error": {"message", "hint", "exit_code", ...}}``
  into that document (or prints it alone), so a pipeline never parses an empty stream or two
  documents;
- whether ``--json`` was given is read from the command line by the boundary itself
  (:func:`wants_json`), so a usage error raised before the command runs answers in JSON too.

Consoles are created per run (not at import): they honour ``COLUMNS`` when piped, and ``rich``
is imported only by commands that draw something.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.errors import Problem, SovereignError
from orchestrator.layout import MIN_WIDTH, print_table, say, wrap_plain

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_WIDTH = 80
"""Width of piped output when ``COLUMNS`` does not say otherwise."""

__all__ = [
    "begin",
    "emit_json",
    "emit_json_line",
    "emit_json_now",
    "err",
    "error_json",
    "error_of",
    "escape",
    "fail",
    "finish",
    "json_mode",
    "out",
    "print_error",
    "print_problems",
    "print_table",
    "printable",
    "say",
    "say_plain",
    "wants_json",
]

_UNSET: Any = object()


@dataclass
class _Run:
    """What one CLI invocation has printed so far (reset by :func:`begin`)."""

    json_mode: bool = False
    defer: bool = False
    document: Any = _UNSET
    streamed: bool = False
    consoles: dict[bool, Console] = field(default_factory=dict)


_run = _Run()


def begin(argv: Sequence[str]) -> None:
    """Start one invocation: JSON documents are held until :func:`finish` or :func:`fail`."""
    global _run
    _run = _Run(json_mode=wants_json(argv), defer=True)


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``--json`` was given on this command line (before a ``--`` terminator)."""
    args = list(argv)
    if "--" in args:
        args = args[: args.index("--")]
    return "--json" in args


def json_mode() -> bool:
    """Whether the running command was asked for ``--json``."""
    return _run.json_mode


def _console(stderr: bool) -> Console:
    console = _run.consoles.get(stderr)
    if console is None:
        from rich.console import Console

        # Diagnostics are never wrapped by us (paths and hashes stay whole on one line).
        console = Console(stderr=stderr, highlight=False, soft_wrap=stderr)
        if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
            console.width = DEFAULT_WIDTH
        _run.consoles[stderr] = console
    return console


def say_plain(text: str) -> None:
    """A result in plain prose (no markup) on stdout, wrapped between words exactly as
    :func:`say` would, at the width :func:`out` would have; it does not import ``rich``, which
    costs a command that draws nothing else (``validate``) a noticeable part of its start-up."""
    console = _run.consoles.get(False)
    width = console.width if console is not None else _plain_width()
    for line in wrap_plain(text, max(width, MIN_WIDTH)):
        sys.stdout.write(line + "\n")


def _plain_width() -> int:
    """The width ``rich`` gives the stdout console here: ``COLUMNS`` when set, else the
    terminal's, else (piped) :data:`DEFAULT_WIDTH`."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    if sys.stdout.isatty():
        try:
            return os.get_terminal_size(sys.stdout.fileno()).columns
        except (OSError, ValueError):
            return DEFAULT_WIDTH
    return DEFAULT_WIDTH


def out() -> Console:
    """The console for results (stdout)."""
    return _console(stderr=False)


def err() -> Console:
    """The console for progress, prompts, warnings and diagnostics (stderr)."""
    return _console(stderr=True)


def emit_json(payload: Any) -> None:
    """Hand over the command's one JSON document for stdout."""
    if _run.defer:
        _run.document = payload
        return
    _write(payload)


def streaming_json_lines() -> None:
    """The command answers with JSON lines, one per input line (``explain --batch``): from now
    on a failure is said on stderr only, so that stdout keeps exactly one line per input."""
    _run.streamed = True


def emit_json_line(payload: Any) -> None:
    """Print one compact JSON line now (JSON-lines output of batch commands)."""
    sys.stdout.write(json.dumps(payload, separators=(",", ":"), default=str))
    sys.stdout.write("\n")


def emit_json_now(payload: Any) -> None:
    """Print a JSON document at once: for long-running commands (the gateway's start line)."""
    _write(payload)
    _run.document = _UNSET


def _write(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, sort_keys=False, default=str))
    sys.stdout.write("\n")
    sys.stdout.flush()


def finish() -> None:
    """The command succeeded: print its JSON document, if it made one."""
    if _run.document is not _UNSET:
        _write(_run.document)
        _run.document = _UNSET
    _run.defer = False


def error_json(message: str, *, hint: str | None, exit_code: int, **extra: Any) -> dict[str, Any]:
    """The ``error`` object of docs/json.md, "Errors"."""
    return {"message": message, "hint": hint, "exit_code": exit_code, **extra}


def fail(error: dict[str, Any]) -> None:
    """The command failed: under ``--json``, print one document that carries ``error``."""
    document = _run.document
    _run.document = _UNSET
    _run.defer = False
    if not _run.json_mode or _run.streamed:
        return
    if isinstance(document, dict):
        _write({**document, "error": error})
    else:
        _write({"error": error})


def error_of(exc: SovereignError) -> dict[str, Any]:
    """The ``error`` object for a Sovereign error (a fleet error carries its ``problems``)."""
    from orchestrator.errors import FleetError

    extra: dict[str, Any] = {"type": type(exc).__name__}
    message = exc.message
    if isinstance(exc, FleetError):
        message = message.split("\n", 1)[0]
        extra["problems"] = [p.to_json() for p in exc.problems]
    return error_json(message, hint=exc.hint, exit_code=exc.exit_code, **extra)


def print_problems(problems: tuple[Problem, ...], *, head: str | None = None) -> None:
    """One unwrapped line per problem on stderr, for people and for editors' problem matchers."""
    n = len(problems)
    if head is None:
        head = f"the fleet is invalid ({n} problem{'s' if n != 1 else ''})"
    sys.stderr.write(f"error: {head}\n")
    for p in problems:
        sys.stderr.write(printable(p.render()) + "\n")
    sys.stderr.flush()


def print_error(message: str, hint: str | None = None) -> None:
    """A failure on stderr. For people (a terminal, or ``COLUMNS`` set) it is wrapped at the
    console's width between words only (ids, paths and hashes stay whole: ``layout.say``);
    piped to a log or a tool, the error and its hint stay one line each, for grep."""
    console = err()
    lines = [f"[bold red]error:[/] {_escape(message)}"]
    if hint:
        lines.append(f"[dim]hint:[/] {_escape(hint)}")
    for line in lines:
        if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
            say(console, line)
        else:
            console.print(line, soft_wrap=True)


def _escape(text: str) -> str:
    return escape(text)


# Bidirectional overrides and isolates: they reorder what a terminal shows ("trojan source").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` with every control character (ANSI escapes, carriage returns, backspaces, bidi
    overrides) shown as a visible escape such as ``\\x1b``: text a person or a file supplied
    (a drain's reason, a value in an error) can never recolour, move or rewrite the terminal.
    Newlines and tabs stay."""
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch in "\n\t" or (ch.isprintable() and ch not in _BIDI):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def escape(text: str) -> str:
    """User-supplied ``text`` made safe to print through ``rich``: control characters shown as
    escapes (:func:`printable`) and markup escaped. Every command prints user text through this
    (``from orchestrator.cli.output import escape``), never ``rich.markup.escape`` alone."""
    from rich.markup import escape as markup_escape

    return markup_escape(printable(text))
