"""CLI: ``sovereign evidence``, what an auditor is handed for one jurisdiction and period.

The work is in ``orchestrator.evidence`` (reading, re-judging, the HTML page); this module
turns options into its inputs: the state (its audit log and its applied fleets), the decision
log files (a quoted glob pattern is expanded here, so rotated files are easy to name), and the
period. Exit 1 when anything is listed under violations, unparsed lines or gaps.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import UsageError

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

EVIDENCE_HELP = """What an auditor is handed: one jurisdiction's directives and decisions.

For the period [--from, --to): the directives of the jurisdiction in force \
and what each changed (from the audit log, whose chain is verified first), \
and every decision in the decision logs re-judged against the fleet in force \
at its instant (the fleet the gateway named, read from the state's applied \
fleets): served and refused counts per model, site and audience class; \
violations, unparsed lines and gaps in decision ids, each listed. Exit 1 \
when any of those three lists is not empty.

--decisions is repeatable and takes a file or a quoted glob pattern (the \
gateway rotates FILE to FILE.<instant>). See docs/evidence.md.

\b
Examples:
  sovereign evidence --jurisdiction US --from 2026-06-12 --to 2026-07-01 \\
    --decisions 'logs/decisions.jsonl*' --html us-june.html
  sovereign evidence -j EU --from 2026-06-01 --to 2026-06-02 \\
    --decisions gw1.jsonl --decisions gw2.jsonl --json
"""


def _decision_files(patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            files.append(path)
            continue
        if glob.has_magic(pattern):
            matched = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if matched:
                files.extend(matched)
                continue
        raise UsageError(
            f"--decisions {pattern}: no such file",
            hint="name a decision log (sovereign gateway --decision-log FILE) or a quoted glob "
            "pattern such as 'logs/decisions.jsonl*'",
        )
    unique: dict[Path, None] = {}
    for f in files:
        unique.setdefault(f.resolve(), None)
    return list(unique)


@cli.command("evidence", help=EVIDENCE_HELP)
def evidence_command(
    jurisdiction: Annotated[
        str, typer.Option("--jurisdiction", "-j", help="The jurisdiction the evidence is for.")
    ],
    from_: Annotated[
        str, typer.Option("--from", help="Start of the period (ISO 8601; no zone means UTC).")
    ],
    to: Annotated[str, typer.Option("--to", help="End of the period, excluded (ISO 8601).")],
    decisions: Annotated[
        list[str] | None,
        typer.Option(
            "--decisions",
            metavar="FILE",
            help="A decision log, or a quoted glob pattern of them. Repeatable.",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the evidence as an HTML page.")
    ] = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    from orchestrator.evidence.html import render_html
    from orchestrator.evidence.report import collect_evidence
    from orchestrator.fleet.instants import parse_at
    from orchestrator.fleet.loader import load_fleet_files
    from orchestrator.fleet.model import Fleet
    from orchestrator.state import open_store

    start = parse_at(from_, what="--from")
    end = parse_at(to, what="--to")
    if end <= start:
        raise UsageError(
            f"--to {to} is not after --from {from_}", hint="the period is [--from, --to)"
        )
    files = _decision_files(list(decisions or []))
    store = open_store(state, fleet, create=False)
    try:
        applied = store.applied_fleet()

        def load(digest: str) -> Fleet | None:
            found = store.applied_fleet_of(digest)
            if found is None:
                return None
            return load_fleet_files(found.files, f"applied fleet {digest[:12]}")

        def progress(lines: int) -> None:
            if not json_out:
                output.err().print(f"read {lines:,} decision lines", highlight=False)

        report = store.audit.verify()
        ev = collect_evidence(
            jurisdiction,
            start,
            end,
            files,
            audit_report=report,
            entries=store.audit.entries() if report.ok else [],
            current_digest=applied.digest if applied is not None else None,
            load_fleet=load,
            progress=progress,
        )
    finally:
        store.close()
    if html is not None:
        try:
            html.write_text(render_html(ev), encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"cannot write {html}: {exc.strerror}", hint="choose a writable --html path"
            ) from None
    if json_out:
        emit_json(ev.to_json())
    else:
        _say(ev, html)
    if not ev.clean:
        raise typer.Exit(1)


def _say(ev: object, html: Path | None) -> None:
    from orchestrator.evidence.report import Evidence

    assert isinstance(ev, Evidence)
    doc = ev.to_json()
    lines = [
        f"evidence for {ev.jurisdiction}, {doc['from']} to {doc['to']}",
        f"audit chain verified: {ev.audit.entries} entries",
        f"directives in force: {', '.join(d['id'] for d in doc['directives']) or 'none'}",
        f"decisions: {ev.lines} lines read, {ev.judged} re-judged in the period, "
        f"{ev.outside_period} outside it; served {doc['decisions']['served']['total']} at sites "
        f"{ev.jurisdiction} governs, refused {doc['decisions']['refused']['total']}",
        f"violations: {len(ev.violations)}, unparsed lines: {len(ev.unparsed)}, "
        f"gaps: {len(ev.gaps)}",
    ]
    for v in doc["violations"][:20]:
        lines.append(f"  violation {v['decision_id']} ({v['file']}:{v['line']}): {v['message']}")
    for u in doc["unparsed"][:20]:
        lines.append(f"  unparsed {u['file']}:{u['line']}: {u['error']}")
    for g in doc["gaps"][:20]:
        lines.append(f"  gap {g['gateway']}: {g['from_seq']}..{g['to_seq']} ({g['missing']} lines)")
    shown = min(20, len(ev.violations)) + min(20, len(ev.unparsed)) + min(20, len(ev.gaps))
    listed = len(ev.violations) + len(ev.unparsed) + len(ev.gaps)
    if listed > shown:
        lines.append(f"  ... {listed - shown} more: every one is in --json and --html")
    if html is not None:
        lines.append(f"wrote {html}")
    for line in lines:
        output.say_plain(line)  # wrapped between words at the console's width
