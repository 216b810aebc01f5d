"""CLI: ``sovereign state lock-info`` and ``sovereign state unlock --force ID`` (docs/cli.md).

A stale lock is taken over on its own once its lease expires (at once when its holder ran on
this host and is gone), so these are for the cases between: who holds the state right now, and
breaking a lock whose holder is known to be dead before its lease runs out. Breaking is audited
(``lock.force_unlocked``) and moves the lock epoch on, so the old holder cannot write again even
if it was only stalled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from orchestrator.cli import output
from orchestrator.cli.confirm import confirm
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt, YesOpt
from orchestrator.cli.output import emit_json
from orchestrator.errors import UsageError
from orchestrator.fleet.instants import format_utc
from orchestrator.state import open_store
from orchestrator.state.lease import Lease, takeover_reason, who

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

state_app = typer.Typer(
    name="state",
    help="The state store: create it, who holds its lock, breaking a stale one (audited).",
    no_args_is_help=True,
)


def lock_json(holder: Lease | None, now: datetime) -> dict[str, Any]:
    if holder is None:
        return {"locked": False, "holder": None, "stale": None, "damaged": None}
    if holder.damaged is not None:
        return {
            "locked": True,
            "holder": {"holder_id": holder.holder_id},
            "stale": None,
            "damaged": holder.damaged,
        }
    return {
        "locked": True,
        "holder": holder.to_json(),
        "stale": takeover_reason(holder, now),
        "damaged": None,
    }


@state_app.command("lock-info")
def lock_info(
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show who holds the state lock: holder id, user@host, pid, operation, since, until.

    "stale" says why the lock would be taken over by the next run (lease expired, or its
    process gone on this host). Never creates a state.

    Examples:

      sovereign state lock-info

      sovereign state lock-info --state s3://acme-sovereign/prod --json
    """
    store = open_store(state, fleet, create=False)
    try:
        holder = store.current_lock()
    finally:
        store.close()
    now = datetime.now(UTC)
    info = lock_json(holder, now)
    if json_out:
        emit_json(info)
        return
    con = output.out()
    if holder is None:
        con.print("The state is not locked.")
        return
    if holder.damaged is not None:
        con.print(f"locked by {holder.describe()}", highlight=False, markup=False)
        con.print(
            "  no run takes over a lock record it cannot read: if no run holds the state, "
            f"break it with `sovereign state unlock --force {holder.holder_id}`",
            highlight=False,
            markup=False,
        )
        return
    con.print(f"locked by {holder.describe()}", highlight=False)
    con.print(f"  holder id  {holder.holder_id}", highlight=False)
    con.print(f"  expires    {format_utc(holder.expires_at, 'microseconds')}", highlight=False)
    con.print(f"  epoch      {holder.epoch}", highlight=False)
    if info["stale"]:
        con.print(f"  [yellow]stale:[/] {info['stale']} (the next run takes it over)")


@state_app.command("unlock")
def unlock(
    force: Annotated[
        str | None,
        typer.Option(
            "--force",
            metavar="ID",
            help="The holder id to break (from `sovereign state lock-info`).",
        ),
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the lock is broken (audited).")
    ] = "manual unlock",
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
) -> None:
    """Break the state lock held by ID (audited as lock.force_unlocked).

    Only for a holder known to be dead: a live holder's further writes are refused (the lock
    epoch moves on) and its run fails. Refused when ID is not the current holder.

    Examples:

      sovereign state unlock --force 3f2c9d0e8b7a4c1f9e6d5b4a3c2d1e0f \\
        --reason "runner lost" --yes
    """
    if not force:
        raise UsageError(
            "state unlock needs --force ID",
            hint="take ID from `sovereign state lock-info`",
        )
    store = open_store(state, fleet, create=False)
    try:
        holder = store.current_lock()
        if holder is not None and holder.holder_id == force:
            stale = holder.damaged or takeover_reason(holder, datetime.now(UTC))
            alive = "" if stale else " It looks ALIVE: its run will fail."
            confirm(
                f"Break the lock of {holder.describe()}?{alive}",
                yes=yes,
                doing="break the state lock",
            )
        broken = store.break_lock(force, by=who(), reason=reason)
    finally:
        store.close()
    if json_out:
        emit_json({"unlocked": broken.to_json(), "reason": reason})
    else:
        output.out().print(f"Unlocked: the lock of {broken.describe()} is broken (audited).")


@state_app.command("init")
def init(
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the state store explicitly and print its lineage (pin it in fleet.yaml).

    Refused when a store is already there (its lineage is named) or when fleet.yaml already
    pins a state_lineage: a pinned fleet never gets a new, empty store.

    Examples:

      sovereign state init --state s3://acme-sovereign/prod

      echo "state_lineage: $(sovereign state init --json | jq -r .lineage)" >> regions/fleet.yaml
    """
    from orchestrator.errors import RefusedError, StateError
    from orchestrator.state.url import pinned_state_lineage

    if state is None and not fleet.is_dir():
        raise UsageError(
            f"the fleet directory {fleet} does not exist, so there is nowhere beside it for "
            "the default state",
            hint="pass --fleet DIR (the state goes to DIR/.sovereign/state.db) or --state URL",
        )
    pinned = pinned_state_lineage(fleet)
    if pinned is not None:
        raise RefusedError(
            f"{fleet}/fleet.yaml pins state_lineage {pinned}: a new store would have another "
            "lineage",
            hint="restore the pinned state from a backup, or remove state_lineage from "
            "fleet.yaml in a reviewed change first",
        )
    try:
        existing = open_store(state, fleet, create=False, check_lineage=False)
    except StateError as exc:
        if not exc.message.startswith("no state at"):
            raise
    else:
        try:
            lineage = existing.lineage()
        finally:
            existing.close()
        raise RefusedError(
            f"a state already exists at {existing.url} (lineage {lineage})",
            hint=f"pin it in fleet.yaml: state_lineage: {lineage}",
        )
    store = open_store(state, fleet, check_lineage=False)
    try:
        lineage, url = store.lineage(), store.url
    finally:
        store.close()
    if json_out:
        emit_json({"lineage": lineage, "url": url, "created": True})
        return
    output.out().print(f"Created the state at {url}", highlight=False)
    output.out().print(f"lineage: {lineage}", highlight=False)
    output.out().print(f"pin it in fleet.yaml:  state_lineage: {lineage}", highlight=False)


cli.add_typer(state_app)
