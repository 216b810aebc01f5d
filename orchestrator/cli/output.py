"""Where output goes: data on stdout, everything for humans on stderr when --json is set."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from orchestrator.errors import Problem

# Human-facing messages, warnings and progress go to stderr so that stdout stays parseable.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def emit_json(payload: Any) -> None:
    """Print one JSON document on stdout (the only thing on stdout under --json)."""
    sys.stdout.write(json.dumps(payload, sort_keys=False, default=str))
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit_json_line(payload: Any) -> None:
    """Print one compact JSON line (JSON-lines output for batch commands)."""
    sys.stdout.write(json.dumps(payload, separators=(",", ":"), default=str))
    sys.stdout.write("\n")


def print_problems(problems: tuple[Problem, ...]) -> None:
    """One unwrapped line per problem on stderr, for people and for editors' problem matchers."""
    n = len(problems)
    sys.stderr.write(f"error: the fleet is invalid ({n} problem{'s' if n != 1 else ''})\n")
    for p in problems:
        sys.stderr.write(p.render() + "\n")
    sys.stderr.flush()
