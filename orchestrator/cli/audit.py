"""CLI: ``sovereign audit verify`` and ``sovereign audit log``.

The audit log is only worth something if anyone can check it: ``verify`` recomputes the hash
chain and the recorded head and names the first entry that is wrong; ``log`` shows entries.
Both only read: they never create a state store, since an empty new one would hide a deleted
log.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt
from orchestrator.cli.output import emit_json, escape
from orchestrator.errors import AuditError, UsageError
from orchestrator.state import open_store

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

audit_app = typer.Typer(
    name="audit",
    help="Check and show the append-only, hash-chained audit log.",
    no_args_is_help=True,
)


@audit_app.command("verify")
def verify(
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the audit chain: every entry's hash, every link, and the recorded head.

    Exit 0 when intact; exit 1 naming the first entry edited, deleted or reordered, or the
    entries cut off the end.

    Examples:

        sovereign audit verify

        sovereign audit verify --state s3://acme-state/prod --json
    """
    store = open_store(state, fleet, create=False)
    try:
        report = store.audit.verify()
    finally:
        store.close()
    if json_out:
        emit_json(report.to_json())
    elif report.ok:
        head = report.head or "none"
        output.out().print(
            f"audit chain intact: {report.entries} entries, head {head}", soft_wrap=True
        )
        if report.pending:
            output.err().print(
                "note: the last entry is past the recorded head (an append was interrupted, "
                "e.g. a killed run); it chains onto the log and the next append records it",
                soft_wrap=True,
            )
    if not report.ok:
        problem = report.problem.message if report.problem is not None else "unknown problem"
        raise AuditError(
            f"audit chain broken ({store.url}): {problem}",
            hint="restore the state from a backup; the entry named is the first one that "
            "does not verify",
        )


@audit_app.command("log")
def log(
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Show the last N entries (0 = all).")
    ] = 20,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only entries of this kind, e.g. change.applied.")
    ] = None,
) -> None:
    """Show audit entries, oldest first (the last --limit of them).

    Examples:

        sovereign audit log

        sovereign audit log --limit 0 --kind interlock.overridden --json
    """
    if limit < 0:
        raise UsageError(f"--limit must be 0 or more, got {limit}", hint="0 shows every entry")
    store = open_store(state, fleet, create=False)
    try:
        entries = store.audit.entries()
    finally:
        store.close()
    if kind is not None:
        entries = [e for e in entries if e.kind == kind]
    if limit:
        entries = entries[-limit:]
    if json_out:
        emit_json([e.to_json() for e in entries])
        return
    if not entries:
        output.err().print("no audit entries" + (f" of kind {kind}" if kind else ""))
        return
    console = output.out()
    for e in entries:
        # One entry: its number, time and kind, then one wrapped line per payload field.
        output.say(console, escape(f"{e.seq:>6}  {e.ts}  {e.kind}"))
        for k, v in sorted(e.payload.items()):
            output.say(console, escape(f"{k}: {_readable(v)}"), indent=8)


def _readable(value: object, limit: int = 400) -> str:
    """A payload value for people: strings (ids, hashes, paths) whole; null as "none"; a
    structure as JSON (never Python's repr), shortened at an element boundary past ``limit``
    characters (``--json`` has it whole)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "none"
    text = json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    if len(text) <= limit:
        return text
    cut = text.rfind(", ", 0, limit)
    return (text[:cut] if cut > 0 else text[:limit]) + ", ... (--json shows it whole)"


cli.add_typer(audit_app, name="audit")
