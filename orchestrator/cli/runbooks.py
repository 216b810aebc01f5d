"""CLI: ``drain``, ``evacuate`` and ``restore`` (docs/runbooks.md), the on-call engineer's commands.

Each shows its effect first (on stderr: which routes move where, who loses service, the
interlock), asks on a terminal (``--yes`` for scripts), then records the drains in the state,
audited. The work is in ``orchestrator.reconcile.runbooks``; this module is presentation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from orchestrator.cli import output
from orchestrator.cli.confirm import confirm
from orchestrator.cli.options import (
    DEFAULT_FLEET,
    AllowOutageOpt,
    FleetOpt,
    JsonOpt,
    JurisdictionOpt,
    StateOpt,
    YesOpt,
)
from orchestrator.cli.output import emit_json, escape, say
from orchestrator.errors import UsageError
from orchestrator.fleet.drain import Drains
from orchestrator.fleet.instants import format_utc, parse_at
from orchestrator.fleet.loader import load_fleet
from orchestrator.reconcile.runbooks import (
    RunbookChange,
    enforce_drain,
    prepare_drain,
    prepare_restore,
    record,
    serving_fleet,
)
from orchestrator.state import open_store
from orchestrator.state.base import StateStore

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (an incident or change id): recorded and audited.")
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="ISO8601",
        help="The drain ends on its own at this instant (default: until `sovereign restore`).",
    ),
]


def render_change(console: Console, change: RunbookChange) -> None:
    verb = {"drain": "Drain", "evacuate": "Evacuate", "restore": "Restore"}[change.runbook.value]
    say(
        console,
        f"[bold]{verb}[/] {', '.join(change.sites)} (routes of the {change.fleet_from} fleet at "
        f"{format_utc(change.at, 'seconds')})",
    )
    if not change.routes:
        say(console, "  no route changes for anyone (no one is routed to these sites now)")
    for line, indent in route_moves(change):
        say(console, line, indent=indent)
    s = change.summary()
    say(
        console,
        f"{s['changed']} route cells change: {s['rerouted']} rerouted, "
        f"{s['unavailable']} lose service (every legal site drained: 503, not refused), "
        f"{s['refused']} refused (451), {s['restored']} served again",
    )
    for v in change.violations:
        say(console, f"[bold red]interlock:[/] {escape(v.message)}")


_COLOUR = {"refused": "red", "unavailable": "red", "rerouted": "yellow", "restored": "green"}


def route_moves(change: RunbookChange) -> list[tuple[str, int]]:
    """Per (effect, home, route before => after): a line naming the models and counting the
    audience cells, then the route on its own indented line (it wraps between sites only, never
    into fragments at 80 columns): who loses service and where the others go, at 3 a.m.
    Each line comes with its indent."""
    groups: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], tuple[set[str], list[int]]]
    groups = {}
    for c in change.routes:
        key = (c.effect.value, c.home or "(unlisted)", c.before, c.after)
        models, count = groups.setdefault(key, (set(), [0]))
        models.add(c.model)
        count[0] += 1
    lines: list[tuple[str, int]] = []
    order = {"refused": 0, "unavailable": 1, "rerouted": 2, "restored": 3}
    for (effect, home, before, after), (models, count) in sorted(
        groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1:])
    ):
        # An empty route before a restore was an outage (drained), not the law's refusal.
        was = " > ".join(before) or ("drained (503)" if effect == "restored" else "refused")
        now = " > ".join(after) or (
            "lose service (drained: 503)" if effect == "unavailable" else "refused (451)"
        )
        lines.append(
            (
                f"[{_COLOUR[effect]}]{effect}[/] residents of {home} "
                f"[dim]({', '.join(sorted(models))}; {count[0]} audience cells)[/]",
                2,
            )
        )
        lines.append((f"{was} => {now}", 6))
    return lines


def render_drains(console: Console, drains: Drains) -> None:
    if not drains.entries:
        console.print("No site is drained.")
        return
    for d in drains.entries:
        until = f" until {d.until.isoformat()}" if d.until is not None else ""
        say(
            console,
            f"  drained: {d.site} ({d.jurisdiction}) since {d.at.isoformat(timespec='seconds')}"
            f"{until} by {escape(d.by)}: {escape(d.reason)}",
        )


def _run(
    store: StateStore,
    change: RunbookChange,
    *,
    yes: bool,
    json_out: bool,
    allow_outage: str | None,
) -> None:
    if not json_out:
        render_change(output.err(), change)
    if change.noop:
        if json_out:
            emit_json({"change": change.to_json(), "drains": change.before.to_json()})
        else:
            output.out().print("Nothing to do.")
        return
    if json_out:
        # A refusal below still answers with the effect it would have had, beside the error.
        emit_json({"change": change.to_json(), "drains": change.before.to_json()})
    enforce_drain(change, allow_outage)  # refused before anyone is asked
    confirm(
        f"{change.runbook.value.capitalize()} {', '.join(change.sites)}?",
        yes=yes,
        doing=f"{change.runbook.value} {', '.join(change.sites)}",
    )
    drains = record(store, change, allow_outage)
    if json_out:
        emit_json({"change": change.to_json(), "drains": drains.to_json()})
    else:
        say(
            output.out(),
            f"[green]Recorded.[/] The gateway honours it within its reload interval. "
            f"{len(drains.entries)} site(s) drained now.",
        )


def _open(fleet_dir: Path, state: str | None) -> StateStore:
    return open_store(state, fleet_dir)


def _drain(
    fleet: Path,
    state: str | None,
    *,
    reason: str,
    until: str | None,
    allow_outage: str | None,
    yes: bool,
    json_out: bool,
    **selection: Any,
) -> None:
    """The one drain sequence behind `drain` and `evacuate`; ``selection`` names what to drain
    (``sites``/``scope`` or ``jurisdictions``, as ``prepare_drain`` takes them)."""
    store = _open(fleet, state)
    try:
        served, origin = serving_fleet(store, lambda: load_fleet(fleet))
        change = prepare_drain(
            served,
            origin,
            store.drains(),
            **selection,
            reason=reason,
            at=_now(),
            until=parse_at(until, what="--until"),
            allow_outage=allow_outage,
        )
        _run(store, change, yes=yes, json_out=json_out, allow_outage=allow_outage)
    finally:
        store.close()


@cli.command("drain")
def drain_command(
    site: Annotated[
        list[str], typer.Option("--site", "-s", help="The site to drain (repeatable).")
    ],
    reason: ReasonOpt,
    until: UntilOpt = None,
    jurisdiction: JurisdictionOpt = None,
    allow_outage: AllowOutageOpt = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
) -> None:
    """Take a site out of every route; its deployments stay, so `restore` is instant.

    The gateway tries the next site of each route (never one the law does not already
    allow). Shows which routes move and who loses service, then asks. Refused if a model
    listed by a jurisdiction would be served at fewer than min_sites_per_model of its sites,
    unless --allow-outage "REASON". Recorded in the state with who, when and why; audited.

    Examples:

      sovereign drain --site aws-eu-central-1 --reason "INC-4711: 5xx" --yes

      sovereign drain --site gcp-europe-west4 --reason "maintenance CHG-88" \\
        --until 2026-06-14T06:00:00Z --yes
    """
    _drain(
        fleet,
        state,
        reason=reason,
        until=until,
        allow_outage=allow_outage,
        yes=yes,
        json_out=json_out,
        sites=site,
        scope=jurisdiction,
    )


@cli.command("evacuate")
def evacuate_command(
    jurisdiction: Annotated[
        list[str],
        typer.Option("--jurisdiction", "-j", help="Drain every site of it (repeatable)."),
    ],
    reason: ReasonOpt,
    until: UntilOpt = None,
    allow_outage: AllowOutageOpt = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
) -> None:
    """Drain every site of a jurisdiction (a regional outage).

    Its residents are routed to the other sites their law allows, or refused (451) if there
    are none: the effect lists who loses service before it asks.

    Examples:

      sovereign evacuate --jurisdiction EU --reason "INC-4711: EU region down" \\
        --allow-outage "INC-4711, approved by the incident commander"
    """
    _drain(
        fleet,
        state,
        reason=reason,
        until=until,
        allow_outage=allow_outage,
        yes=yes,
        json_out=json_out,
        jurisdictions=jurisdiction,
    )


@cli.command("restore")
def restore_command(
    site: Annotated[
        list[str] | None, typer.Option("--site", "-s", help="A drained site (repeatable).")
    ] = None,
    jurisdiction: Annotated[
        list[str] | None,
        typer.Option("--jurisdiction", "-j", help="Restore every drained site of it (repeatable)."),
    ] = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
) -> None:
    """Put drained sites back into routing (instant: their deployments stayed).

    Examples:

      sovereign restore --site aws-eu-central-1

      sovereign restore --jurisdiction EU --yes --json
    """
    if not site and not jurisdiction:
        raise UsageError(
            "restore needs --site S or --jurisdiction J",
            hint="`sovereign status` lists the drained sites",
        )
    store = _open(fleet, state)
    try:
        served, origin = serving_fleet(store, lambda: load_fleet(fleet))
        change = prepare_restore(
            served,
            origin,
            store.drains(),
            sites=site or (),
            jurisdictions=jurisdiction or (),
            at=_now(),
        )
        _run(store, change, yes=yes, json_out=json_out, allow_outage=None)
    finally:
        store.close()


def _now() -> datetime:
    return datetime.now(UTC)
