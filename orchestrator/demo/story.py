"""``sovereign demo``: the June 2026 story, end to end, offline, in a throwaway workspace.

1. 2026-06-11: the fleet without directives is applied to local sites; the routing matrix.
2. The US Commerce directive of 2026-06-12 arrives: its impact is computed before it is added;
   it is added, planned and applied on 2026-06-13. Only foreign nationals lose fable-5 and
   mythos-5 on US-governed sites, and are rerouted where the law allows.
3. The 2026-06-26 amendment exempts trusted partners; applied on 2026-06-27.
4. Collateral: cells refused although the law allows them - Sovereign vs switching the models
   off everywhere.
5. Live requests: the gateway serves the applied fleet to the story's principals over HTTP
   (signed tokens, local stub upstreams), and fails over inside the legal route.
6. The audit chain is verified.

Every step goes through ``reconcile.sequence.plan_and_apply``, the sequence the CLI uses.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.rule import Rule

from orchestrator.demo.live import run_live_requests
from orchestrator.demo.matrix import (
    MODELS,
    Collateral,
    Matrix,
    changed_cells,
    collateral,
    print_matrix,
    routing_matrix,
)
from orchestrator.demo.workspace import Workspace, prepare_workspace
from orchestrator.errors import SovereignError
from orchestrator.fleet.loader import load_directive_file, load_fleet, load_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.layout import print_table, say
from orchestrator.planning.plan import Plan
from orchestrator.policy.impact import Impact, audience_cells, impact
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from orchestrator.providers.base import ResourceKind
from orchestrator.reconcile.apply import ApplyObserver, ApplyResult
from orchestrator.reconcile.observe import observe_sites
from orchestrator.reconcile.progress import ProgressObserver
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import open_session

DAY_BEFORE = datetime(2026, 6, 11, tzinfo=UTC)
DIRECTIVE_DAY_AFTER = datetime(2026, 6, 13, tzinfo=UTC)
AMENDMENT_DAY_AFTER = datetime(2026, 6, 27, tzinfo=UTC)
DIRECTIVE = "us-doc-2026-06-12.yaml"
AMENDMENT = "us-doc-2026-06-26.yaml"
SUSPENDED_MODELS = ("fable-5", "mythos-5")


@dataclass(frozen=True)
class Step:
    plan: Plan
    result: ApplyResult
    applied: Fleet  # the fleet the gateway now serves
    served: frozenset[tuple[str, str]]  # healthy (model, site) deployments observed after


def _plan_summary(console: Console, plan: Plan) -> None:
    s = plan.summary().by_op
    console.print(
        f"Plan: [green]+{s.create}[/] [yellow]~{s.update}[/] [red]-{s.delete}[/]"
        f" (state serial {plan.serial})"
    )
    causes: dict[str, int] = {}
    for c in plan.changes:
        causes[c.cause] = causes.get(c.cause, 0) + 1
    for cause, n in sorted(causes.items()):
        console.print(f"  {n} change(s) caused by [bold]{cause}[/]")
    for c in plan.changes:
        if c.kind is ResourceKind.ROUTE or c.op.value != "create":
            console.print(f"  {c.op.value} {c.address} [dim]({c.cause})[/]")


class _StoryDisplay:
    """The demo's view of the apply sequence: a plan summary, then compact progress bars."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def planned(self, plan: Plan) -> None:
        _plan_summary(self.console, plan)

    @contextmanager
    def applying(self, plan: Plan) -> Iterator[ApplyObserver]:
        del plan
        with Progress(
            TextColumn("  {task.description:<22}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            console=self.console,
        ) as progress:
            yield ProgressObserver(progress)


def apply_step(ws: Workspace, at: datetime, console: Console) -> Step:
    session = open_session(ws.fleet_dir, None, at=at, sites_local=True)
    try:
        done = plan_and_apply(session, operation="demo apply", observer=_StoryDisplay(console))
        assert done.result is not None  # nothing to confirm in the demo
        applied_fleet = session.store.applied_fleet()
        assert applied_fleet is not None
        applied = load_fleet_files(applied_fleet.files, label="applied")
        observed = observe_sites(session.fleet, session.providers)
        served = frozenset(
            (r.model, r.target)
            for r in observed
            if r.kind is ResourceKind.DEPLOYMENT and "health" not in r.spec_dict()
        )
    finally:
        session.close()
    result = done.result
    status = "[green]ok[/]" if result.ok else f"[red]failed: {', '.join(result.failed_targets)}[/]"
    console.print(f"Apply {status}; state serial {result.serial}.")
    return Step(done.plan, result, applied, served)


# The story's one counting unit, said once (beside the first figure that uses it).
CELL = (
    "A cell is one model for one audience class: the residents of a country, by nationality "
    "and group, as finely as the directives in play tell them apart (what `sovereign impact` "
    "counts)."
)


def _show_impact(
    console: Console, ws: Workspace, name: str, at: datetime, earlier: Impact | None
) -> Impact:
    """The impact of the held-back directive ``name``, in the figures `sovereign impact` gives
    (tests/e2e compares them); ``earlier``: the impact shown before, if any."""
    fleet = load_fleet(ws.fleet_dir)
    directive = load_directive_file(ws.held_back / name, fleet)
    what = impact(fleet, directive, at)
    s = what.summary()
    classes = _classes(what, len(fleet.models))
    console.print(
        f"Impact of [bold]{directive.id}[/] ({directive.reference}), before adding it: "
        f"{s['changed']} of {s['cells']} cells change ({len(fleet.models)} models x {classes} "
        f"audience classes) - {s['refused']} refused, {s['rerouted']} rerouted, "
        f"{s['restored']} restored; collateral {s['collateral']}."
    )
    if earlier is None:
        console.print(CELL)
    elif (before := _classes(earlier, len(fleet.models))) != classes:
        groups = sorted(directive.audience.except_groups)
        why = (
            f"its exempt group ({', '.join(groups)}) splits every class by membership"
            if len(groups) == 1
            else f"its exempt groups ({', '.join(groups)}) split every class by membership"
            if groups
            else "with it in play the directives tell more people apart"
        )
        console.print(f"{classes} audience classes where there were {before}: {why}.")
    shown = [c for c in what.changes if c.model in MODELS and c.residency in ("US", "DE", "JP")]
    for c in shown[:8]:
        old = c.before[0] if c.before else "451"
        new = c.after[0] if c.after else "451"
        console.print(f"  {c.model}: {c.describe_principal()}: {old} -> {new} ({c.effect})")
    if len(what.changes) > len(shown[:8]):
        console.print(f"  ... and {len(what.changes) - len(shown[:8])} more cells")
    return what


def _classes(what: Impact, models: int) -> int:
    """Audience classes of an impact: it compares every model in every class."""
    return what.cells // models


def _narrate_changes(console: Console, before: Matrix, after: Matrix) -> None:
    for who, model, old, new in changed_cells(before, after):
        verb = "refused (451)" if new == "451" else f"now served by {new}"
        console.print(f"  {who}: {model} was {old}, {verb}")


def _collateral(before: Step, after: Step, at_before: datetime, at_after: datetime) -> Collateral:
    table = RouteTable.compile(after.applied)

    def served(model: str, principal: Principal) -> bool:
        return any((model, s) in after.served for s in table.route(model, principal, at_after))

    return collateral(
        before.applied,
        after.applied,
        at_before,
        at_after,
        SUSPENDED_MODELS,
        # The same (residency, audience) classes as the impact shown before: one set of cells.
        [c.principal for c in audience_cells(after.applied, after.applied.directives.values())],
        served,
    )


def run_story(ws: Workspace, console: Console) -> bool:
    """The whole story in ``ws``; True when everything applied and the audit chain verifies."""
    console.print(Rule("1. 2026-06-11: the fleet, before any directive"))
    console.print(f"Workspace {ws.fleet_dir} (every site on the local provider).")
    first = apply_step(ws, DAY_BEFORE, console)
    m1 = routing_matrix(first.applied, DAY_BEFORE)
    print_matrix(console, "Routing on 2026-06-11 (first serving site, or 451)", m1)

    console.print(Rule("2. The US Commerce directive of 2026-06-12"))
    first_impact = _show_impact(console, ws, DIRECTIVE, DIRECTIVE_DAY_AFTER, None)
    ws.add_directive(DIRECTIVE)
    console.print(f"Added directives/{DIRECTIVE} and its signature; planning on 2026-06-13.")
    second = apply_step(ws, DIRECTIVE_DAY_AFTER, console)
    m2 = routing_matrix(second.applied, DIRECTIVE_DAY_AFTER)
    print_matrix(console, "Routing on 2026-06-13 (* changed)", m2, m1)
    _narrate_changes(console, m1, m2)
    console.print(
        "Only foreign nationals (and unknown nationality, fail closed) lost fable-5/mythos-5 "
        "on US-governed sites; the Japanese resident moved to the Japanese-operated site; "
        "Germans in Germany and olmo-3 are untouched. No deployment was deleted: a suspend "
        "changes routing only, so lifting it is instant."
    )
    hit = _collateral(first, second, DAY_BEFORE, DIRECTIVE_DAY_AFTER)

    console.print(Rule("3. The amendment of 2026-06-26: trusted partners exempt"))
    _show_impact(console, ws, AMENDMENT, AMENDMENT_DAY_AFTER, first_impact)
    ws.add_directive(AMENDMENT)
    console.print(f"Added directives/{AMENDMENT}; planning on 2026-06-27.")
    third = apply_step(ws, AMENDMENT_DAY_AFTER, console)
    m3 = routing_matrix(third.applied, AMENDMENT_DAY_AFTER)
    print_matrix(console, "Routing on 2026-06-27 (* changed)", m3, m2)
    _narrate_changes(console, m2, m3)

    console.print(Rule("4. Collateral damage"))
    say(
        console,
        f"Counted over the {hit.cells} {' and '.join(SUSPENDED_MODELS)} cells of the impact "
        f"of {first_impact.directive.id} above ({len(SUSPENDED_MODELS)} models x "
        f"{hit.cells // len(SUSPENDED_MODELS)} audience classes). The law required refusing "
        f"{hit.required} of them, the cells that impact reported refused.",
    )
    print_table(
        console,
        ("response", "collateral cells"),
        [
            ["Sovereign (per jurisdiction, per audience)", f"[green]{hit.sovereign}[/]"],
            ["Switch fable-5/mythos-5 off everywhere", f"[red]{hit.switch_off}[/]"],
        ],
        title="Cells refused although the law allows them (2026-06-13)",
    )

    console.print(Rule("5. Live requests through the gateway"))
    live_ok = run_live_requests(ws.fleet_dir, ws.root, console)

    console.print(Rule("6. Audit"))
    session = open_session(ws.fleet_dir, None, at=AMENDMENT_DAY_AFTER, sites_local=True)
    try:
        report = session.store.audit.verify()
    finally:
        session.close()
    if report.ok:
        console.print(
            f"sovereign audit verify: [green]OK[/], {report.entries} entries, chain intact."
        )
    else:
        console.print(f"sovereign audit verify: [red]BROKEN[/]: {report.problem}")
    applied_ok = first.result.ok and second.result.ok and third.result.ok
    return applied_ok and live_ok and report.ok and hit.sovereign == 0


def run_demo(source: Path, console: Console, *, workspace: Path | None = None) -> bool:
    """Run the story in ``workspace`` (kept) or in a temporary directory (removed)."""
    started = time.monotonic()
    # Check the user's own fleet first, so that its problems name the user's files, not the
    # copies in a temporary workspace that is gone by the time they are read.
    load_fleet(source)
    if workspace is not None:
        if workspace.exists() and any(workspace.iterdir()):
            raise SovereignError(
                f"the demo workspace {workspace} is not empty",
                hint="pass a new or empty directory, or omit --workspace",
            )
        workspace.mkdir(parents=True, exist_ok=True)
        ok = run_story(prepare_workspace(source, workspace), console)
    else:
        with tempfile.TemporaryDirectory(prefix="sovereign-demo-") as tmp:
            ok = run_story(prepare_workspace(source, Path(tmp)), console)
    console.print(f"Demo finished in {time.monotonic() - started:.1f} s.")
    if not ok:
        raise SovereignError(
            "the demo did not end clean (a failed site, a broken audit chain or collateral)",
            hint="re-run with --workspace DIR to inspect the state it leaves behind",
        )
    return ok
