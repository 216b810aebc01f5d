"""Runbooks (docs/runbooks.md): drain, evacuate and restore, each judged before it is recorded.

A runbook command works in two steps so that what the engineer confirms is what happens:

1. ``prepare_*`` computes a :class:`RunbookChange` from the fleet the gateway serves (the
   applied fleet; the working fleet when nothing was applied yet) and the drains recorded now:
   the new drained set, every route that moves (``policy.drains.drain_effect``: who is
   rerouted where, who loses service) and the interlock it would break.
2. ``record`` writes the new drains to the state, audited, only if the drains are still those
   the effect was computed from (the store compares versions), and only if the interlock holds
   or the engineer gave ``--allow-outage`` (audited as ``interlock.overridden``).

The drain interlock has the meaning of the plan interlock (docs/planning.md, a disruption budget):
for a jurisdiction J and a model m that J lists, a drain is refused when it leaves fewer than
``min_sites_per_model`` of J's sites serving m *and* fewer than before. A shortfall the drain
does not cause or deepen never refuses it. Restoring only adds sites back: it is never refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrator.errors import RefusedError, UsageError
from orchestrator.fleet.checks import valid_names
from orchestrator.fleet.drain import Drain, Drains
from orchestrator.fleet.instants import format_utc
from orchestrator.fleet.loader import load_fleet_files
from orchestrator.fleet.model import Fleet
from orchestrator.planning.desired import desired_pairs
from orchestrator.planning.plan import InterlockViolation
from orchestrator.planning.scope import describe_scope, parse_scope
from orchestrator.policy.drains import drain_effect
from orchestrator.policy.impact import CellChange, Effect
from orchestrator.reconcile.interlock import MIN_SITES
from orchestrator.state.base import StateStore
from orchestrator.state.lease import who


class Runbook(StrEnum):
    DRAIN = "drain"
    EVACUATE = "evacuate"
    RESTORE = "restore"


AUDIT_KIND = {
    Runbook.DRAIN: "drain.added",
    Runbook.EVACUATE: "drain.added",
    Runbook.RESTORE: "drain.lifted",
}


@dataclass(frozen=True)
class RunbookChange:
    """What one runbook command would do: computed, shown, confirmed, then recorded."""

    runbook: Runbook
    sites: tuple[str, ...]  # the sites drained or restored by this command
    before: Drains
    after: tuple[Drain, ...]
    at: datetime
    fleet_from: str  # "applied" (what the gateway serves) or "working"
    routes: tuple[CellChange, ...]  # every route that moves, as impact cells
    violations: tuple[InterlockViolation, ...]
    reason: str | None

    @property
    def noop(self) -> bool:
        return not self.sites

    def summary(self) -> dict[str, Any]:
        effects = {e.value: 0 for e in Effect}
        for c in self.routes:
            effects[c.effect.value] += 1
        return {"changed": len(self.routes), **effects}

    def to_json(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook.value,
            "sites": list(self.sites),
            "at": format_utc(self.at),
            "fleet": self.fleet_from,
            "reason": self.reason,
            "routes": [c.to_json() for c in self.routes],
            "summary": self.summary(),
            "interlocks": [v.to_json() for v in self.violations],
            "drains": [d.to_json() for d in sorted(self.after, key=lambda d: d.site)],
        }


def serving_fleet(store: StateStore, working: Callable[[], Fleet]) -> tuple[Fleet, str]:
    """The fleet whose routes a drain changes: what the gateway serves (the applied fleet),
    or the working fleet when nothing was applied yet (loaded only then: an incident is not
    held up by an unmerged edit in the fleet directory)."""
    applied = store.applied_fleet()
    if applied is None:
        return working(), "working"
    return load_fleet_files(applied.files, label="applied fleet"), "applied"


def _check_sites(fleet: Fleet, sites: Iterable[str], requested: Iterable[str] | None) -> list[str]:
    scope = parse_scope(fleet, requested)
    out: list[str] = []
    for s in sites:
        if s not in fleet.sites:
            raise UsageError(
                f"unknown site {s!r}", hint=valid_names(fleet.sites, "valid sites", near=s)
            )
        owner = fleet.sites[s].jurisdiction
        if scope is not None and owner not in scope:
            raise UsageError(
                f"site {s} belongs to {owner}, outside {describe_scope(scope)}",
                hint="--jurisdiction limits a runbook command to those jurisdictions' sites",
            )
        if s not in out:
            out.append(s)
    return out


def _check_jurisdictions(fleet: Fleet, ids: Iterable[str]) -> list[str]:
    out: list[str] = []
    for j in ids:
        if j not in fleet.jurisdictions:
            valid = ", ".join(sorted(fleet.jurisdictions)) or "(none)"
            raise UsageError(f"unknown jurisdiction {j!r}", hint=f"valid jurisdictions: {valid}")
        if j not in out:
            out.append(j)
    return out


def drain_violations(
    fleet: Fleet, at: datetime, before: frozenset[str], after: frozenset[str]
) -> tuple[InterlockViolation, ...]:
    """The disruption budget of docs/runbooks.md for a change of drained sites (see module
    docstring)."""
    pairs = desired_pairs(fleet, at)
    out: list[InterlockViolation] = []
    for j in sorted(fleet.jurisdictions.values(), key=lambda j: j.id):
        need = j.min_sites_per_model
        for m in sorted(j.models):
            if m not in fleet.models:
                continue
            serving = [s for s in j.sites if (m, s) in pairs]
            was = sum(1 for s in serving if s not in before)
            now = sum(1 for s in serving if s not in after)
            if now >= need or now >= was:
                continue
            taken = tuple(s for s in serving if s in after and s not in before)
            out.append(
                InterlockViolation(
                    rule=MIN_SITES,
                    jurisdiction=j.id,
                    subject=m,
                    count=now,
                    required=need,
                    changes=tuple(f"drain.{s}" for s in taken),
                    message=(
                        f"{m} would be served at {now} of {j.id}'s sites, fewer than "
                        f"min_sites_per_model {need}: the drain takes {', '.join(taken)} out "
                        "of routing"
                    ),
                    overridable=True,
                )
            )
    return tuple(out)


def _change(
    runbook: Runbook,
    fleet: Fleet,
    fleet_from: str,
    before: Drains,
    after: tuple[Drain, ...],
    sites: list[str],
    at: datetime,
    reason: str | None,
) -> RunbookChange:
    was, now = before.sites_at(at), Drains(after).sites_at(at)
    return RunbookChange(
        runbook=runbook,
        sites=tuple(sites),
        before=before,
        after=after,
        at=at,
        fleet_from=fleet_from,
        routes=drain_effect(fleet, was, now, at),
        violations=drain_violations(fleet, at, was, now),
        reason=reason,
    )


def prepare_drain(
    fleet: Fleet,
    fleet_from: str,
    drains: Drains,
    *,
    sites: Iterable[str] = (),
    jurisdictions: Iterable[str] = (),
    scope: Iterable[str] | None = None,
    reason: str,
    at: datetime,
    until: datetime | None = None,
    allow_outage: str | None = None,
) -> RunbookChange:
    """``drain --site`` (``sites``) or ``evacuate --jurisdiction`` (``jurisdictions``)."""
    if not reason.strip():
        raise UsageError("--reason must say why", hint='e.g. --reason "INC-4711: eu-central-1 5xx"')
    if until is not None and until <= at:
        raise UsageError(
            f"--until {until.isoformat()} is not in the future",
            hint="give an instant after now, or omit --until to drain until `sovereign restore`",
        )
    runbook = Runbook.DRAIN
    chosen = _check_sites(fleet, sites, scope)
    if not chosen:
        runbook = Runbook.EVACUATE
        for j in _check_jurisdictions(fleet, jurisdictions):
            chosen += [s for s in sorted(fleet.jurisdictions[j].sites) if s not in chosen]
    by = who()
    new = [
        Drain(
            site=s,
            jurisdiction=fleet.sites[s].jurisdiction,
            reason=reason.strip(),
            by=by,
            at=at,
            until=until,
            allow_outage=allow_outage,
        )
        for s in chosen
    ]
    after = drains.with_drains(new)
    return _change(runbook, fleet, fleet_from, drains, after, chosen, at, reason.strip())


def prepare_restore(
    fleet: Fleet,
    fleet_from: str,
    drains: Drains,
    *,
    sites: Iterable[str] = (),
    jurisdictions: Iterable[str] = (),
    at: datetime,
) -> RunbookChange:
    """``restore --site`` / ``restore --jurisdiction``: lift the drains of those sites.

    A drain recorded for a site the fleet no longer has can still be restored by its id."""
    wanted = list(dict.fromkeys(sites))
    for s in wanted:
        if drains.get(s) is None:
            drained = ", ".join(d.site for d in drains.entries) or "(none)"
            raise UsageError(f"site {s!r} is not drained", hint=f"drained sites: {drained}")
    js = list(dict.fromkeys(jurisdictions))
    for j in js:
        if j not in fleet.jurisdictions and not any(d.jurisdiction == j for d in drains.entries):
            valid = ", ".join(sorted(fleet.jurisdictions)) or "(none)"
            raise UsageError(f"unknown jurisdiction {j!r}", hint=f"valid jurisdictions: {valid}")
        owned = fleet.jurisdictions[j].sites if j in fleet.jurisdictions else frozenset()
        wanted += [
            d.site
            for d in drains.entries
            if (d.jurisdiction == j or d.site in owned) and d.site not in wanted
        ]
    after = drains.without_sites(wanted)
    return _change(Runbook.RESTORE, fleet, fleet_from, drains, after, wanted, at, None)


def enforce_drain(change: RunbookChange, allow_outage: str | None) -> None:
    """Refuse a change that breaks the drain interlock unless an outage reason was given."""
    if not change.violations or (allow_outage is not None and allow_outage.strip()):
        return
    concerned = sorted({v.jurisdiction for v in change.violations})
    # One sentence: each violation is shown once, in the effect (``interlock:`` lines, or
    # ``change.interlocks`` with --json), not repeated here.
    models = sorted({v.subject for v in change.violations})
    raise RefusedError(
        f"the {change.runbook.value} is refused by the safety interlock "
        f"({', '.join(concerned)}): {', '.join(models)} would be served at fewer of "
        f"{', '.join(concerned)}'s sites than min_sites_per_model",
        hint="restore or add another serving site first, or accept the outage with "
        '--allow-outage "REASON" (the reason is recorded in the audit log)',
    )


def record(store: StateStore, change: RunbookChange, allow_outage: str | None) -> Drains:
    """Write the change to the state, audited (see module docstring)."""
    enforce_drain(change, allow_outage)
    by = who()
    if change.violations:
        store.audit.append(
            "interlock.overridden",
            {
                "reason": allow_outage,
                "by": by,
                "for": change.runbook.value,
                "sites": list(change.sites),
                "violations": [v.to_json() for v in change.violations],
            },
        )
    payload: dict[str, Any] = {
        "runbook": change.runbook.value,
        "sites": list(change.sites),
        "by": by,
        "reason": change.reason,
        "at": format_utc(change.at),
        "summary": change.summary(),
    }
    if change.runbook is not Runbook.RESTORE:
        drained = Drains(change.after)
        payload["drains"] = [d.to_json() for s in change.sites if (d := drained.get(s)) is not None]
    return store.replace_drains(
        change.after,
        expected_version=change.before.version,
        audit_kind=AUDIT_KIND[change.runbook],
        audit_payload=payload,
    )
