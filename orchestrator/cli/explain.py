"""CLI: ``explain`` (why a principal is or is not served, site by site) and ``impact`` (what a
directive would change before it is added). Both read the fleet, and the drained sites of the
state (docs/cli.md: the default state when it exists, or the one named with ``--state``); neither
ever creates or writes a state.

Over 400 lines on purpose: ``explain`` (with ``--batch``) and ``impact`` share principal parsing,
the drains and the rendering of a decision, which is most of the module.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli import output
from orchestrator.cli.options import DEFAULT_FLEET, FleetOpt, JsonOpt, StateOpt
from orchestrator.cli.output import emit_json, emit_json_line, escape
from orchestrator.errors import RefusedError, UsageError
from orchestrator.fleet.countries import parse_country
from orchestrator.fleet.drain import Drains
from orchestrator.fleet.instants import AT_HINT, format_utc, parse_at_or_now
from orchestrator.fleet.loader import load_directive_file, load_fleet
from orchestrator.fleet.model import Action, Directive, Fleet
from orchestrator.fleet.signing import signature_path
from orchestrator.policy.explain import Explainer, Explanation, check_model, explain
from orchestrator.policy.impact import CellChange, Impact, impact
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from orchestrator.state.url import read_drains

if TYPE_CHECKING:
    from orchestrator.planning.trust import TrustChange

cli = typer.Typer()  # this module's commands (cli/commands.json indexes them)

_BATCH_KEYS = frozenset({"model", "residency", "nationalities", "groups", "at"})


def principal_of(
    fleet: Fleet, residency: str, nationalities: list[str], groups: list[str]
) -> Principal:
    return Principal(
        parse_country(residency, "residency", fleet.country_home),
        frozenset(parse_country(n, "nationality", fleet.country_home) for n in nationalities),
        frozenset(g.strip() for g in groups),
    )


# ------------------------------------------------------------------------------ explain


def _render_explanation(fleet: Fleet, e: Explanation) -> None:
    p = e.principal
    nats = ", ".join(sorted(p.nationalities)) or "unknown"
    groups = ", ".join(sorted(p.groups)) or "none"
    home = e.home or "none (unlisted country)"
    console = output.out()
    output.say(
        console,
        f"[bold]{e.model}[/] for a principal in {p.residency} (home {home}), "
        f"nationality {nats}, groups {escape(groups)}, "
        f"at {format_utc(e.at)}",
    )
    rows = []
    for site_id, d in e.sites.items():
        reasons = "\n".join(escape(f"{r.rule.value} ({r.ref}): {r.message}") for r in d.reasons)
        allowed = "[green]yes[/]" if d.allowed else "[red]no[/]"
        if site_id in e.drained:
            allowed += " [yellow]unavailable (drained)[/]" if d.allowed else " [yellow](drained)[/]"
        rows.append([site_id, fleet.sites[site_id].jurisdiction, allowed, reasons or "-"])
    output.print_table(console, ("site", "owner", "allowed", "failing rules"), rows)
    if e.route:
        output.say(console, f"route: {' -> '.join(e.route)}")
    elif e.unavailable:
        output.say(
            console,
            f"route: [bold yellow]unavailable (drained)[/]: the law allows "
            f"{', '.join(e.unavailable)}, operations drained them "
            "(an outage, not a refusal: the gateway answers 503 site_unavailable)",
        )
    else:
        output.say(console, "route: [bold red]refused[/] (no site may serve this principal)")


@dataclass(frozen=True, slots=True)
class _Query:
    model: str
    principal: Principal
    at: datetime


@dataclass(frozen=True, slots=True)
class BatchError:
    """A batch line that is not a query: its answer is an error object on that output line."""

    line: int
    error: UsageError

    def to_json(self) -> dict[str, Any]:
        return {"error": {**output.error_of(self.error), "line": self.line}}


def read_batch(stream: IO[bytes], fleet: Fleet, now: datetime) -> Iterator[_Query | BatchError]:
    """One item per input line, in order: the query, or the error of that line. Lines are
    judged one by one (a non-UTF-8 byte or a blank line spoils only its own line), so output
    line N always answers input line N and a compliance report never silently loses a row."""
    for n, raw in enumerate(stream, start=1):
        try:
            yield _batch_line(raw, fleet, now)
        except UsageError as exc:
            yield BatchError(n, exc)


def _batch_line(raw: bytes, fleet: Fleet, now: datetime) -> _Query:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"not valid UTF-8 (byte {exc.start} of the line)",
            hint="save the batch file as UTF-8",
        ) from None
    if not line.strip():
        raise UsageError(
            "the line is blank",
            hint="every line is one query (output line N answers input line N); remove blank lines",
        )
    return _batch_query(line, fleet, now)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise UsageError(
                f'duplicate key "{key}" in one object',
                hint="each field may appear once per line (which one would count is a guess)",
            )
        seen[key] = value
    return seen


def _batch_query(line: str, fleet: Fleet, now: datetime) -> _Query:
    hint = (
        'each line is a JSON object {"model": "fable-5", "residency": "DE", '
        '"nationalities": ["DE"], "groups": [], "at": "2026-06-13T00:00:00Z"} '
        "(nationalities, groups and at are optional)"
    )
    try:
        obj = json.loads(line, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not JSON: {exc.msg}", hint=hint) from None
    except RecursionError:
        raise UsageError("nested too deeply to be a query", hint=hint) from None
    if not isinstance(obj, dict):
        raise UsageError("not a JSON object", hint=hint)
    unknown = sorted(set(obj) - _BATCH_KEYS)
    if unknown:
        raise UsageError(f"unknown field(s) {', '.join(unknown)}", hint=hint)
    model, residency = obj.get("model"), obj.get("residency")
    if not isinstance(model, str) or not isinstance(residency, str):
        raise UsageError('"model" and "residency" are required strings', hint=hint)
    lists: dict[str, list[str]] = {}
    for key in ("nationalities", "groups"):
        value = obj.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f'"{key}" must be a list of strings', hint=hint)
        lists[key] = value
    at = obj.get("at")
    if at is not None and not isinstance(at, str):
        raise UsageError('"at" must be an ISO 8601 string', hint=AT_HINT)
    check_model(fleet, model)
    principal = principal_of(fleet, residency, lists["nationalities"], lists["groups"])
    return _Query(model, principal, parse_at_or_now(at, now))


def _open_batch(source: str) -> IO[bytes]:
    if source == "-":
        return sys.stdin.buffer
    try:
        return Path(source).open("rb")
    except OSError as exc:
        raise UsageError(
            f"cannot read batch file {source}: {exc.strerror}",
            hint="pass a file of JSON lines, or - to read standard input",
        ) from None


def _answer_batch(stream: IO[bytes], fleet: Fleet, now: datetime, drains: Drains) -> None:
    """Print one JSON line per input line as it is read; exit 1 at the end if any line failed
    (a pipeline that checks the exit code fails closed), naming the failed lines on stderr."""
    explainers: dict[frozenset[str], Explainer] = {}
    compiled = RouteTable.compile(fleet)
    failed: list[int] = []
    total = 0
    output.streaming_json_lines()
    for item in read_batch(stream, fleet, now):
        total += 1
        if isinstance(item, BatchError):
            failed.append(item.line)
            if not output.json_mode():
                output.print_error(f"line {item.line}: {item.error.message}", item.error.hint)
            emit_json_line(item.to_json())
            continue
        drained = drains.sites_at(item.at)
        explainer = explainers.get(drained)
        if explainer is None:
            explainer = explainers[drained] = Explainer(fleet, compiled, drained)
        emit_json_line(explainer.explain(item.model, item.principal, item.at).to_json())
    sys.stdout.flush()
    if failed:
        shown = ", ".join(str(n) for n in failed[:10]) + (", ..." if len(failed) > 10 else "")
        raise UsageError(
            f"{len(failed)} of {total} batch line(s) are not valid queries (line {shown})",
            hint="each failed line has an error object on its output line; fix those lines",
        )


@cli.command("explain")
def explain_command(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model id from models.yaml.")
    ] = None,
    residency: Annotated[
        str | None,
        typer.Option("--residency", "-r", help="Country the principal is located in (ISO code)."),
    ] = None,
    nationality: Annotated[
        list[str] | None,
        typer.Option("--nationality", "-n", help="A nationality (repeatable; none = unknown)."),
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group the principal is in.")
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            metavar="T",
            help="Judge as tenant T's attested principal (tenants/T.yaml), as its API keys are.",
        ),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Instant to decide at (ISO 8601; default now).")
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option(
            "--batch",
            help="JSON-lines file of queries ('-' = stdin); prints one JSON object per line.",
        ),
    ] = None,
    fleet_dir: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Explain, site by site, whether a principal may be served a model, and the route.

    Every site of the fleet is listed with every rule that fails (no_jurisdiction,
    not_offered, export, residency, withdrawn, directive) and the directive or profile
    behind it. An empty route is a refusal. A drained site (sovereign drain) is marked
    drained and left out of the route.

    Examples:

      sovereign explain --model fable-5 --residency DE --nationality DE

      sovereign explain -m fable-5 -r US -n DE --at 2026-06-13 --json

      sovereign explain -m mythos-5 -r US -n DE -g trusted-partners \\
        --at 2026-06-27

      sovereign explain --batch queries.jsonl > decisions.jsonl

      sovereign explain --model fable-5 --tenant acme-gmbh

    With --tenant T the principal is the one tenant T's attestation signs for (what the
    gateway judges its API keys as; docs/identity.md); the answer names the tenant, and says
    when the attestation is expired at --at (its keys are then refused, 401).

    A batch line looks like {"model": "fable-5", "residency": "DE", "nationalities": ["DE"],
    "groups": [], "at": "2026-06-13T00:00:00Z"}; only model and residency are required. Every
    input line gets exactly one output line, in order: an invalid line gets
    {"error": {"line": N, "message": ..., "hint": ...}} and the exit code is then 1.
    """
    fleet = load_fleet(fleet_dir)
    now = datetime.now(UTC)
    drains = read_drains(state, fleet_dir)
    if batch is not None:
        if model or residency or nationality or group or at or tenant:
            raise UsageError(
                "--batch takes every query from its lines",
                hint="drop --model/--residency/--nationality/--group/--at, or drop --batch",
            )
        stream = _open_batch(batch)
        try:
            _answer_batch(stream, fleet, now, drains)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        return
    if tenant is not None:
        if residency or nationality or group:
            raise UsageError(
                "--tenant judges as the tenant's attested principal",
                hint="drop --residency/--nationality/--group, or drop --tenant",
            )
        if model is None:
            raise UsageError(
                "explain --tenant needs --model",
                hint="e.g. sovereign explain --model fable-5 --tenant acme-gmbh",
            )
    elif model is None or residency is None:
        raise UsageError(
            "explain needs --model and --residency (or --tenant T, or --batch FILE)",
            hint="e.g. sovereign explain --model fable-5 --residency DE --nationality DE",
        )
    check_model(fleet, model)
    when = parse_at_or_now(at, now)
    attested: dict[str, object] | None = None
    if tenant is not None:
        found = fleet.tenants.get(tenant)
        if found is None:
            problems = [p for p in fleet.tenant_problems if f"/{tenant}." in p.file]
            raise RefusedError(
                f"tenant {tenant!r} has no valid attestation in {fleet_dir}"
                + (f": {problems[0].render()}" if problems else ""),
                hint="its API keys are refused (401); `sovereign validate` shows why",
            )
        principal = Principal(found.residency, found.nationalities, found.groups)
        expired = found.expired(when)
        attested = {
            "id": found.id,
            "attested_by": found.attested_by,
            "reference": found.reference,
            "expires": format_utc(found.expires),
            "expired": expired,
        }
    else:
        assert residency is not None
        principal = principal_of(fleet, residency, nationality or [], group or [])
    result = explain(fleet, model, principal, when, drains.sites_at(when))
    if json_out:
        emit_json({**result.to_json(), **({"tenant": attested} if attested else {})})
        return
    if attested is not None:
        state = (
            "EXPIRED: its API keys are refused (401)"
            if attested["expired"]
            else f"valid until {attested['expires']}"
        )
        output.say(
            output.out(),
            f"tenant [bold]{escape(str(attested['id']))}[/], attested by "
            f"{escape(str(attested['attested_by']))} ({escape(str(attested['reference']))}), "
            f"{state}",
        )
    _render_explanation(fleet, result)


# ------------------------------------------------------------------------------- impact


def _render_impact(result: Impact) -> None:
    d = result.directive
    console = output.out()
    output.say(
        console,
        f"[bold]{d.id}[/] ({d.action.value} by {d.jurisdiction}, "
        + (f"lifting {d.supersedes}" if d.action is Action.LIFT else ", ".join(sorted(d.models)))
        + ") compared at "
        f"{format_utc(result.at)}",
    )
    groups: dict[tuple[str, str, str], list[CellChange]] = defaultdict(list)
    for c in result.changes:
        groups[(c.model, c.home or "(unlisted)", c.effect.value)].append(c)
    # One block per group, not a table: at 80 columns a route in a table cell is broken into
    # fragments; here it wraps between sites only (``say``), under its group's line.
    for (model, home, effect), cells in sorted(groups.items()):
        colour = {"refused": "red", "unavailable": "red", "rerouted": "yellow"}.get(effect, "green")
        first = cells[0]
        lost = "unavailable (drained)" if effect == "unavailable" else "refused"
        before = " > ".join(first.before) or "refused"
        after = " > ".join(first.after) or lost
        output.say(
            console,
            f"[bold]{escape(model)}[/] for residents of {escape(home)}: [{colour}]{effect}[/] "
            f"({len(cells)} audience cell{'s' if len(cells) != 1 else ''})",
        )
        output.say(console, f"{escape(before)} => {escape(after)}", indent=4)
        who = "; ".join(c.describe_principal() for c in cells[:3])
        if len(cells) > 3:
            who += f"; ... and {len(cells) - 3} more"
        output.say(console, f"[dim]who:[/] {escape(who)}", indent=4)
    if not groups:
        output.say(console, "no route changes for anyone")
    s = result.summary()
    output.say(
        console,
        f"{s['changed']} of {s['cells']} cells change: {s['refused']} refused, "
        f"{s['unavailable']} lose service (drained), "
        f"{s['rerouted']} rerouted, {s['restored']} restored",
    )
    colour = "green" if result.collateral == 0 else "bold red"
    output.say(
        console,
        f"collateral (changes outside the directive's reach): [{colour}]{result.collateral}[/]",
    )
    named, unknown = _unknown_nationality(result)
    if named and unknown:
        output.say(
            console,
            f"[yellow]note:[/] nationality_in: [{escape(', '.join(named))}] also reaches every "
            f"principal whose nationality is unknown ({unknown} of the cells above): a token "
            "without a nationality may be one of them, so the law fails closed "
            "(docs/decisions.md); give principals their nationalities to serve the others",
        )


def _unknown_nationality(result: Impact) -> tuple[list[str], int]:
    """A ``nationality_in`` directive's names, and how many changed cells are of unknown
    nationality: it reaches them too (fail closed), which impact's summary points out."""
    audience = result.directive.audience
    named = sorted(audience.nationality_in or ()) if audience is not None else []
    return named, sum(1 for c in result.changes if not c.nationalities) if named else 0


@cli.command("impact")
def impact_command(
    directive_file: Annotated[
        Path, typer.Argument(help="The directive YAML to assess (its .sig beside it, if any).")
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Compare at this instant, or at the directive's effective if later."
        ),
    ] = None,
    fleet_dir: FleetOpt = DEFAULT_FLEET,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what a directive would change, before it is added to the fleet.

    Routes are compared without and with the directive for every model, every residency
    country and every class of principal the directives in play tell apart (each nationality
    they name, any other nationality "*", unknown; each exempt group, none). A cell is
    refused (no site left), rerouted (other sites) or restored (served again, when it
    supersedes a directive). Collateral counts changes outside its reach: it must be 0.

    An unsigned directive is still assessed, with a warning: it cannot take effect until
    signed. A .sig that does not verify is an error.

    Examples:

      sovereign impact new-directive.yaml

      sovereign impact regions/directives/us-doc-2026-06-26.yaml --json

      sovereign impact draft.yaml --at 2026-07-01T00:00:00Z
    """
    if not directive_file.is_file():
        raise UsageError(
            f"cannot read the directive file {directive_file}: "
            + ("it is a directory" if directive_file.is_dir() else "no such file"),
            hint="pass the path of a directive YAML, e.g. "
            "sovereign impact regions/directives/us-doc-2026-06-12.yaml",
        )
    fleet = load_fleet(fleet_dir)
    signed = signature_path(directive_file).is_file()
    directive = load_directive_file(directive_file, fleet, require_signature=signed)
    if not signed:
        output.err().print(
            f"[yellow]warning:[/] {directive_file} is not signed: it cannot take effect until "
            f"signed (sovereign directive sign {directive_file} --key KEY --authority ID)",
            soft_wrap=True,
        )
    # Assess against the fleet without it, also when the fleet already holds this very file.
    base = fleet.with_directives({k: v for k, v in fleet.directives.items() if k != directive.id})
    when = parse_at_or_now(at)
    drained = read_drains(state, fleet_dir).sites_at(max(when, directive.effective))
    result = impact(base, directive, when, signed=signed, drained=drained)
    rotation = _rotation_change(fleet, directive, state, fleet_dir)
    if json_out:
        doc = result.to_json()
        if rotation is not None:
            doc["rotation"] = rotation.to_json()
        named, unknown = _unknown_nationality(result)
        if named and unknown:
            doc["unknown_nationality"] = {"nationality_in": named, "cells": unknown}
        emit_json(doc)
        return
    if rotation is not None:
        # A rotation routes nothing differently: what it changes is who may order.
        output.say(output.out(), f"[bold magenta]who may order:[/] {rotation.summary()}")
    _render_impact(result)


def _rotation_change(
    fleet: Fleet, directive: Directive, state: str | None, fleet_dir: Path
) -> TrustChange | None:
    """What a rotation changes in who may order: from the state's pin (when a state is known)
    to the set the profile lists (which the rotation carries exactly)."""
    if directive.action is not Action.ROTATE:
        return None
    from orchestrator.planning.trust import TrustChange, authority_set
    from orchestrator.state.url import parse_state_url

    after, threshold = authority_set(fleet.jurisdictions[directive.jurisdiction])
    pin = None
    where = parse_state_url(state, fleet_dir)
    if state is not None or (where.path is not None and where.path.exists()):
        from orchestrator.state import open_store

        store = open_store(state, fleet_dir, create=False)
        try:
            pin = store.pinned_authorities().get(directive.jurisdiction)
        finally:
            store.close()
    return TrustChange(
        directive.jurisdiction,
        "rotate",
        None if pin is None else pin.authorities,
        None if pin is None else pin.threshold,
        after,
        threshold,
        f"directive:{directive.id}",
    )


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``impact`` to the root app."""
    app.command("explain")(explain_command)
    app.command("impact")(impact_command)
