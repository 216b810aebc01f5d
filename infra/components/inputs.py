"""Where a stack's desired state comes from, in this order of precedence:

1. ``sovereign:input`` - the export document as JSON text (what ``--engine pulumi`` sets);
2. ``sovereign:inputFile`` - a file written by ``sovereign export --out`` (relative to infra/);
3. otherwise the fleet directory ``sovereign:fleet`` (default ``../regions``), exported here
   with the same function as ``sovereign export``, at ``sovereign:at`` (default now).

Every path ends in ``StackInput.from_json``, which refuses an input for another stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi

from orchestrator.fleet.instants import parse_at_or_now
from orchestrator.fleet.loader import load_fleet
from orchestrator.planning.export import StackInput, export_stack_input


def load_stack_input(config: pulumi.Config, stack: str, program_dir: Path) -> StackInput:
    text = config.get("input")
    if text:
        return StackInput.from_json(json.loads(text), stack=stack)
    input_file = config.get("inputFile")
    if input_file:
        path = program_dir / input_file
        return StackInput.from_json(json.loads(path.read_text()), stack=stack)
    fleet_dir = (program_dir / (config.get("fleet") or "../regions")).resolve()
    at_text = config.get("at")
    at = parse_at_or_now(at_text or None, what="sovereign:at")
    return StackInput.from_json(export_stack_input(load_fleet(fleet_dir), at, stack), stack=stack)
