"""Writes ``commands.json``: the index ``sovereign --help`` lists commands from.

The root group (``cli/app.py``) must list every command with its one-line help without importing
the command modules (they import the fleet, policy and reconcile layers: start-up would pay for
all of them). The help is written once, in the command's own module; this module reads it from
there and writes the index, so nobody copies it by hand:

    make cli-index        # .venv/bin/python -m orchestrator.cli.index

A command module is any module of ``orchestrator.cli`` with a module-level ``cli`` Typer.
``tests/cli/test_conventions.py`` fails when the index differs from what the modules define.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import typer

import orchestrator.cli

INDEX_FILE = Path(__file__).with_name("commands.json")


def one_line(text: str | None) -> str:
    """The first paragraph of a help text, on one line."""
    return " ".join((text or "").strip().split("\n\n")[0].split())


def build_index() -> dict[str, dict[str, str]]:
    """Command name -> {"module", "help"}, read from every command module's ``cli``."""
    index: dict[str, dict[str, str]] = {}
    for info in pkgutil.iter_modules(orchestrator.cli.__path__):
        name = f"{orchestrator.cli.__name__}.{info.name}"
        module = importlib.import_module(name)
        commands = getattr(module, "cli", None)
        if not isinstance(commands, typer.Typer):
            continue
        for command_name, command in typer.main.get_group(commands).commands.items():
            if command_name in index:
                raise SystemExit(
                    f"{command_name!r} is defined by {index[command_name]['module']} and {name}"
                )
            index[command_name] = {
                "module": name,
                "help": one_line(command.short_help or command.help),
            }
    return dict(sorted(index.items()))


def render(index: dict[str, dict[str, str]]) -> str:
    return json.dumps(index, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    INDEX_FILE.write_text(render(build_index()), encoding="utf-8")
    print(f"wrote {INDEX_FILE}")


if __name__ == "__main__":
    main()
