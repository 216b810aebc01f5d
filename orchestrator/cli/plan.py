"""CLI: ``plan``, ``apply`` and ``status`` - desired vs actual, carrying it out, what is where.

Presentation only: the work is in ``orchestrator.reconcile`` (sessions, apply, interlocks,
status). Results (the plan, the apply summary, the status) go to stdout; progress and the
confirmation prompt to stderr; ``--json`` output alone to stdout.

Over 400 lines on purpose: three commands that share their rendering (a plan, its changes, the
status tables) and their options; split by command, each would import the others' renderers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from orchestrator.cli import output
from orchestrator.cli.confirm import confirm
from orchestrator.cli.markdown import plan_markdown
from orchestrator.cli.options import (
    DEFAULT_FLEET,
    AllowOutageOpt,
    AtOpt,
    EngineOpt,
    FleetOpt,
    JsonOpt,
    JurisdictionOpt,
    SitesOpt,
    StateOpt,
    YesOpt,
    sites_local,
)
from orchestrator.cli.output import emit_json, escape, print_table, say
from orchestrator.errors import PartialApplyError, ProviderError, RefusedError, UsageError
from orchestrator.fleet.instants import parse_at
from orchestrator.fleet.reading import read_regular_file
from orchestrator.planning.plan import Change, Deferred, Plan, WaitReason
from orchestrator.planning.scope import describe_scope
from orchestrator.providers.base import Op
from orchestrator.reconcile.apply import ApplyObserver, ApplyResult
from orchestrator.reconcile.interlock import enforce
from orchestrator.reconcile.progress import ProgressObserver
from orchestrator.reconcile.review import directive_reviews
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import Session, make_plan, open_session
from orchestrator.reconcile.status import Status, collect_status

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)
OverrideWindowOpt = Annotated[
    str | None,
    typer.Option(
        "--override-window",
        metavar="REASON",
        help="Carry out deferred changes now, although a change window is closed or a rollout "
        "wave has not passed its gate (break-glass); REASON is audited.",
    ),
]

_SYMBOL = {Op.CREATE: ("+", "green"), Op.UPDATE: ("~", "yellow"), Op.DELETE: ("-", "red")}


def say_recorded_sites(session: Session, source: str = "the state's last apply") -> None:
    """One line on stderr when the --sites override was not given but reused."""
    if session.sites_recorded and not output.json_mode():
        output.err().print(
            f"Using --sites local, as recorded by {source} (--sites own to use each site's "
            "provider).",
            highlight=False,
        )


# -- rendering -----------------------------------------------------------------------------


def _spec_text(spec: tuple[tuple[str, str], ...] | None) -> dict[str, str]:
    return dict(spec or ())


def render_change(console: Console, c: Change) -> None:
    symbol, colour = _SYMBOL[c.op]
    cause = c.cause + (f": {c.reason}" if c.reason else "")
    say(console, f"  [{colour}]{symbol} {c.op.value:<6}[/] {c.address}  [dim]({escape(cause)})[/]")
    before, after = _spec_text(c.before), _spec_text(c.after)
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if c.op is Op.CREATE:
            say(console, escape(f"{key}: {new}"), indent=8)
        elif c.op is Op.DELETE:
            say(console, escape(f"{key}: {old}"), indent=8)
        elif old != new:
            say(console, escape(f"{key}: {old or '(none)'} -> {new or '(none)'}"), indent=8)


def render_plan(console: Console, plan: Plan, fleet_dir: Path) -> None:
    say(
        console,
        f"[bold]Plan[/] for {escape(str(fleet_dir))} at {plan.at.isoformat()} "
        f"(state serial {plan.serial})"
        + ("" if plan.scope is None else f", only {describe_scope(plan.scope)}"),
    )
    if plan.empty:
        say(console, "  [green]No changes.[/] The sites and the routing table match the fleet.")
    for c in plan.changes:
        render_change(console, c)
    for j in plan.decommission:
        say(
            console,
            f"  [bold red]! decommission[/] {escape(j)}: its profile left the fleet; its "
            "deployments and artifacts go, its authority set is unpinned (apply needs "
            f"--decommission {escape(j)} --reason TEXT)",
        )
    for t in plan.trust:
        # A change of who may order, shown as what it is (docs/security.md, trust roots).
        say(console, f"  [bold magenta]! who may order[/] {escape(t.summary())}")
    s = plan.summary()
    console.print()
    say(
        console,
        f"[bold]Plan:[/] {s.by_op.create} to create, {s.by_op.update} to update, "
        f"{s.by_op.delete} to delete.",
    )
    for j, counts in s.by_jurisdiction.items():
        say(console, f"  {j}: +{counts.create} ~{counts.update} -{counts.delete}")
    for w in plan.warnings:
        say(console, f"[yellow]warning:[/] {escape(w.message)}")
    for v in plan.interlocks:
        say(console, f"[bold red]interlock:[/] {escape(v.message)}")
    for u in plan.unobservable:
        owner = f" ({u.jurisdiction})" if u.jurisdiction else ""
        say(console, f"[bold red]not observed:[/] {escape(u.target + owner)}: {escape(u.error)}")
    render_deferred(console, plan)


def render_deferred(console: Console, plan: Plan) -> None:
    """The changes that wait for a window or a wave, grouped by why (not counted as changes)."""
    if not plan.deferred:
        return
    console.print()
    say(
        console,
        f"[bold]Deferred:[/] {len(plan.deferred)} change(s) wait for a change window or a "
        "rollout wave (not counted as changes; `apply --override-window REASON` carries them "
        "out now):",
    )
    groups: dict[str, list[Deferred]] = {}
    for d in plan.deferred:
        groups.setdefault(d.message, []).append(d)
    for message, waiting in groups.items():
        colour = "red" if waiting[0].why is WaitReason.WAVE_FAILED else "yellow"
        say(console, f"  [{colour}]{escape(message)}[/]")
        for d in waiting:
            symbol, _ = _SYMBOL[d.change.op]
            say(console, f"{symbol} {d.change.op.value:<6} {escape(d.change.address)}", indent=6)


def refuse_incomplete(plan: Plan, jurisdictions: Iterable[str]) -> None:
    """A plan that could not see some targets is shown and saved, then fails (exit 1): it is
    not a complete answer. ``--jurisdiction`` plans the others cleanly."""
    if not plan.unobservable:
        return
    # The targets by name only: why each could not be observed is shown above (and in the
    # plan's ``unobservable``), never repeated here.
    shown = ", ".join(u.target for u in plan.unobservable)
    blind = {u.jurisdiction for u in plan.unobservable}
    others = sorted(j for j in (plan.scope or jurisdictions) if j not in blind)
    example = " ".join(f"--jurisdiction {j}" for j in others[:3])
    scoped = f"plan the other jurisdictions alone (sovereign plan {example}); " if example else ""
    offline = (
        "" if plan.sites == "local" else "; to try the fleet on this machine alone: --sites local"
    )
    raise ProviderError(
        f"the plan could not observe {len(plan.unobservable)} target(s), so it holds no change "
        f"for them: {shown}",
        hint="the plan covers every other site (apply carries those out and reports these as "
        f"failed, exit 3); restore access to them, or {scoped}see `sovereign status`{offline}",
    )


def render_result(console: Console, result: ApplyResult) -> None:
    rows = [
        [
            t,
            str(r.total),
            str(r.applied),
            str(r.failed),
            str(r.skipped),
            "[green]ok[/]" if r.ok else f"[red]failed[/]: {escape(str(r.error))}",
        ]
        for t, r in sorted(result.results.items())
    ]
    columns = ("target", "changes", "applied", "failed", "skipped", "result")
    print_table(console, columns, rows, title="Apply summary")
    if result.ok:
        say(console, f"[green]Apply complete.[/] State serial {result.serial}.")
    else:
        say(
            console,
            f"[red]Apply finished with {len(result.failed_targets)} failed target(s):[/] "
            f"{', '.join(result.failed_targets)}. The rest applied and was recorded; re-run "
            "`sovereign apply` to converge.",
        )


def progress_display(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=False,
    )


class ApplyDisplay:
    """Shows the sequence: the plan (a result: on ``console``, stdout, unless --json), then
    one progress bar per target (progress: on stderr)."""

    def __init__(self, console: Console, fleet_dir: Path, *, show_plan: bool) -> None:
        self.console = console
        self.fleet_dir = fleet_dir
        self.show_plan = show_plan

    def planned(self, plan: Plan) -> None:
        if self.show_plan:
            render_plan(self.console, plan, self.fleet_dir)

    @contextmanager
    def applying(self, plan: Plan) -> Iterator[ApplyObserver]:
        del plan
        with progress_display(output.err()) as progress:
            yield ProgressObserver(progress)


def confirm_on_terminal(plan: Plan) -> bool:
    """The one confirmation rule (``cli.confirm``) for a plan made and shown by ``apply``."""
    del plan  # already shown
    confirm("Apply these changes?", yes=False, doing="apply the plan")
    return True


def render_status(console: Console, status: Status) -> None:
    say(console, f"[bold]State[/] lineage {status.lineage}, serial {status.serial}")
    if status.applied_digest is None:
        say(console, "[yellow]No fleet applied yet[/]: the gateway has nothing to serve.")
    elif status.in_sync:
        say(console, "[green]Applied fleet is the working fleet[/] (in sync).")
    else:
        say(
            console,
            "[yellow]Applied fleet differs from the working fleet[/]: run `sovereign plan`.",
        )
    deployed = [
        [
            d.site,
            d.model,
            "[green]serving[/]" if d.healthy else f"[red]{escape(str(d.detail))}[/]",
            "yes" if d.desired else "[yellow]no[/]",
        ]
        for d in status.deployments
    ]
    print_table(
        console, ("site", "model", "health", "desired"), deployed, title="Deployments (observed)"
    )
    for m, s in status.missing:
        say(console, f"[yellow]missing:[/] {m} at {s} is desired but not serving")
    for u in status.unobservable:
        say(console, f"[red]unobservable:[/] {u.target} ({u.jurisdiction}): {escape(u.error)}")
    routes = [
        [
            f"{r.jurisdiction} ({r.residency})",
            r.model,
            " > ".join(r.route) if r.route else "[red]451 refused[/]",
        ]
        for r in status.routes
    ]
    print_table(
        console,
        ("jurisdiction", "model", "route"),
        routes,
        title=f"Routing at {status.at.isoformat()} for a resident of unknown nationality "
        f"({status.routes_from} fleet)",
        key_columns=2,
    )
    for w in status.shortfalls:
        say(console, f"[yellow]warning:[/] {escape(w.message)}")
    for drain in status.drains.entries:
        until = f" until {drain.until.isoformat()}" if drain.until is not None else ""
        state = "drained" if drain.active(status.at) else "drain ended"
        say(
            console,
            f"[yellow]{state}:[/] {drain.site} ({drain.jurisdiction}) since "
            f"{drain.at.isoformat(timespec='seconds')}{until} by {escape(drain.by)}: "
            f"{escape(drain.reason)}",
        )
    for ws in status.windows:
        data = ws.to_json()
        window = data["window"]
        what = f"{window['kind']} '{window['cron']}' for {window['duration']}" if window else ""
        if ws.state.open:
            text = f"[green]open[/] ({what})" if what else "[green]open[/]"
            if data["closes_at"]:
                text += f" until {data['closes_at']}"
        else:
            text = f"[yellow]closed[/] ({what or 'no allow window open'})"
            text += (
                f", next opening {data['next_opening']}"
                if data["next_opening"]
                else ", no opening within two years"
            )
        say(console, f"change window {ws.jurisdiction} ({ws.timezone}): {text}")
    for r in status.rollouts:
        colour = {"stopped": "red", "waiting": "yellow"}.get(r.state, "green")
        say(
            console,
            f"[{colour}]rollout {r.state}:[/] {escape(r.model)} at {escape(r.wave)}: "
            f"{escape(r.message)}",
        )
    for gone in status.departed:
        say(
            console,
            f"[yellow]leaving:[/] {escape(gone.site.id)} ({escape(gone.reason)}) still holds "
            f"{len(gone.recorded)} resource(s) Sovereign placed there; `sovereign apply` tears "
            "them down",
        )


# -- commands ------------------------------------------------------------------------------


@cli.command("plan")
def plan_command(
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the plan JSON to FILE for `apply FILE`.")
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 0 when there is nothing to do, 2 when the plan has changes (deferred "
            "changes, waiting for a change window or a rollout wave, do not count).",
        ),
    ] = False,
    at: AtOpt = None,
    sites: SitesOpt = None,
    jurisdiction: JurisdictionOpt = None,
    engine: EngineOpt = None,
    markdown: Annotated[
        Path | None,
        typer.Option(
            "--markdown",
            metavar="FILE",
            help="Also write a summary for a pull-request comment (Markdown) to FILE.",
        ),
    ] = None,
) -> None:
    """Compare the desired state with what the sites really hold.

    Every change names its cause: config, drift, or directive:<id>. A plan
    that deletes deployments for a cause other than a directive and so
    leaves a model at fewer of a jurisdiction's sites than its
    min_sites_per_model is refused (exit 1), naming the jurisdiction; the
    plan is still written with --out. A shortfall the plan does not cause
    (a first rollout, export rules, residency, a withdraw) is a warning.
    --jurisdiction J (repeatable) plans only those jurisdictions' sites.
    Configuration changes that wait for a change window or a rollout wave
    are listed apart as deferred, with why and when they may go; the law
    (directives, export removals), drift repair and drains never wait.

    Examples:

      sovereign plan

      sovereign plan --sites local --out plan.json

      sovereign plan --detailed-exitcode --json > plan.json   # CI: 2 = changes

      sovereign plan --jurisdiction EU --jurisdiction UK --out eu-uk.json

      sovereign plan --out plan.json --markdown plan.md   # PR comment
    """
    session = open_session(
        fleet,
        state,
        at=parse_at(at),
        sites_local=sites_local(sites),
        jurisdictions=jurisdiction,
        engine=engine,
    )
    say_recorded_sites(session)
    try:
        plan = make_plan(session)
        every_jurisdiction = tuple(session.fleet.jurisdictions)
        reviews = directive_reviews(session) if markdown is not None else ()
    finally:
        session.close()
    if out is not None:
        try:
            out.write_text(plan.dumps())
        except OSError as exc:
            raise UsageError(
                f"cannot write the plan to {out}: {exc.strerror}",
                hint="pass --out FILE in a directory that exists and you may write to",
            ) from None
    if markdown is not None:
        try:
            markdown.write_text(plan_markdown(plan, fleet, reviews))
        except OSError as exc:
            raise UsageError(
                f"cannot write {markdown}: {exc.strerror}", hint="pass a writable --markdown FILE"
            ) from None
    if json_out:
        emit_json(plan.to_json_with_digest())
    else:
        render_plan(output.out(), plan, fleet)
        output.out().print(f"Plan SHA-256: {plan.sha256()}", highlight=False, soft_wrap=True)
        if out is not None:
            output.err().print(f"Plan written to {out}: apply it with `sovereign apply {out}`.")
    enforce(
        plan.interlocks, None, changed=plan.jurisdictions()
    )  # refused plans exit 1, after showing (and saving) them
    refuse_incomplete(plan, every_jurisdiction)
    if detailed_exitcode and not plan.empty:
        raise typer.Exit(2)


@cli.command("apply")
def apply_command(
    planfile: Annotated[
        Path | None, typer.Argument(help="A plan written by `sovereign plan --out`.")
    ] = None,
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    yes: YesOpt = False,
    allow_outage: AllowOutageOpt = None,
    at: AtOpt = None,
    sites: SitesOpt = None,
    jurisdiction: JurisdictionOpt = None,
    engine: EngineOpt = None,
    override_window: OverrideWindowOpt = None,
    decommission: Annotated[
        list[str] | None,
        typer.Option(
            "--decommission",
            metavar="J",
            help="Decommission J, whose profile left the fleet: delete its deployments and "
            "artifacts and unpin its authority set (repeatable; needs --reason; audited).",
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why the jurisdictions are decommissioned (audited)."),
    ] = None,
) -> None:
    """Carry a plan out: sites in parallel, each site's changes in order.

    Without PLANFILE a fresh plan is made, shown, and confirmed on a
    terminal (--yes for scripts). A saved plan is refused if the state or
    the fleet moved since it was made. Exit 0 when everything applied, 3
    when some sites failed (the rest applied and was recorded; re-running
    converges), 4 when another run holds the state lock. --jurisdiction J
    (repeatable) changes only those jurisdictions' sites (a saved plan
    records its scope and is applied with it).

    Examples:

      sovereign apply --yes

      sovereign plan --out plan.json && sovereign apply plan.json

      sovereign apply --yes --allow-outage "CHG-1234: gcp-us-central1 maintenance"

      sovereign apply --yes --override-window "INC-4711: hotfix during the freeze"

    Deferred changes (a closed change window, a rollout wave not yet
    healthy) are not carried out unless --override-window REASON.

    A jurisdiction whose profile left the fleet is decommissioned (its
    deployments and artifacts deleted, its authority set unpinned) only
    with --decommission J --reason TEXT; otherwise apply refuses (exit 1)
    and the other jurisdictions can go with --jurisdiction:

      sovereign apply --yes --decommission IN --reason "CHG-2001: India exits"
    """
    if override_window is not None and not override_window.strip():
        raise UsageError(
            "--override-window needs a reason",
            hint='say why the window is broken, e.g. --override-window "INC-4711: hotfix"; '
            "it is recorded in the audit log",
        )
    if decommission and not (reason and reason.strip()):
        raise UsageError(
            "--decommission needs --reason TEXT (it is audited)",
            hint='e.g. --decommission IN --reason "CHG-2001: India exits"',
        )
    if reason is not None and not decommission:
        raise UsageError(
            "--reason goes with --decommission J", hint="name the jurisdiction to decommission"
        )
    saved = None
    if planfile is not None:
        if at is not None:
            raise UsageError(
                "--at cannot be combined with PLANFILE: a saved plan carries its own instant",
                hint="apply the file alone (`sovereign apply FILE`)",
            )
        try:
            saved = Plan.loads(read_regular_file(planfile))  # never a FIFO, never unbounded
        except OSError as exc:
            raise UsageError(
                f"cannot read the plan file {planfile}: {exc.strerror}",
                hint="pass a file written by `sovereign plan --out FILE`",
            ) from None
    requested = parse_at(at)
    if saved is not None and not jurisdiction:
        jurisdiction = list(saved.scope or ())  # a saved plan carries its own scope
    if saved is not None and engine is None:
        engine = saved.engine  # and its own engine
    local = sites_local(sites)
    if saved is not None and local is None:
        local = saved.sites == "local"  # and its own --sites
        if local and not json_out:
            output.err().print(f"Using --sites local, as the plan {planfile} records.")
    session = open_session(
        fleet,
        state,
        at=requested,
        sites_local=local,
        jurisdictions=jurisdiction,
        engine=engine,
    )
    say_recorded_sites(session)
    try:
        done = plan_and_apply(
            session,
            saved=saved,
            allow_outage=allow_outage,
            confirm=None if saved is not None or yes else confirm_on_terminal,
            observer=ApplyDisplay(output.out(), fleet, show_plan=not json_out),
            override_window=override_window,
            decommission={j: str(reason) for j in decommission or ()},
        )
    finally:
        session.close()
    if done.result is None:
        raise typer.Abort()
    if json_out:
        emit_json(
            {
                "plan": done.plan.to_json(),
                "result": done.result.to_json(),
                "window_override": override_window if done.released else None,
            }
        )
    elif not done.plan.empty:
        render_result(output.out(), done.result)
    if done.result.refused_targets:
        raise RefusedError(
            "the law refused changes at "
            + ", ".join(done.result.refused_targets)
            + "; nothing was written there (see the audit log, change.refused)",
            hint="make a fresh plan with `sovereign plan`: the planner only asks for what "
            "R1, R2 and R4 allow",
        )
    if not done.result.ok:
        raise PartialApplyError(
            f"apply finished with {len(done.result.failed_targets)} failed target(s): "
            f"{', '.join(done.result.failed_targets)}",
            hint="the rest applied and was recorded; fix the cause and re-run `sovereign apply`",
        )


@cli.command("status")
def status_command(
    fleet: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
    at: AtOpt = None,
    sites: SitesOpt = None,
) -> None:
    """What is deployed where, the state, and routing per jurisdiction.

    Routing shows, for every jurisdiction and model, the route of a
    resident whose nationality is unknown (the fail-closed default),
    computed from the applied fleet.

    Examples:

      sovereign status

      sovereign status --sites local --at 2026-06-13T00:00:00Z --json
    """
    session = open_session(
        fleet, state, at=parse_at(at), sites_local=sites_local(sites), create=False
    )
    say_recorded_sites(session)
    try:
        status = collect_status(session)
    finally:
        session.close()
    if json_out:
        emit_json(status.to_json())
    else:
        render_status(output.out(), status)
