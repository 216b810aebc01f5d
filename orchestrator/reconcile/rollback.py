"""Directive rollback protection (docs/fleet-format.md "Lifting a directive", docs/planning.md):
deleting lifts nothing.

A directive in force is lifted only by its own jurisdiction's signed word: when it expires, or
when a valid directive supersedes it (``action: lift`` is one that does nothing else). Anyone
who can push to the fleet repository can delete a file, put back an older signed version, or
edit one; none of that carries an authority's signature, so none of it may lift a directive.

So the state keeps every directive it applied (``state.base.AppliedDirective``: id,
jurisdiction, SHA-256 of the file, its signatures, its instants), and before anything is
planned or validated against a state, the fleet is compared with that record:

- a recorded directive whose version in the fleet is an *older* version applied before is a
  replay: refused, whatever the clock says;
- a recorded directive that is missing from the fleet, or whose file changed, is refused until
  the recorded version has expired: while it is in force, and before it takes effect (a
  future order cannot be cancelled by deleting it). "In force" is the one definition
  (``policy.epochs.intervals_of``), over the recorded versions and the fleet's directives, so a
  valid superseding directive (in the fleet, or applied before) ends it from its ``effective``
  on. It is judged on the real clock (``--at`` never moves it), widened by the clock-skew
  window (``policy.clock``): protected if it binds at ``now - skew`` or any later instant;
- a rotation (``action: rotate``) took effect when it was applied (the pinned authority set
  is its record): deleting it afterwards changes nothing, so only its replay is refused.

(A recorded directive that is present but *invalid* never gets here: an invalid directive
makes the whole fleet invalid.) Every refusal is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from orchestrator.errors import FleetError, RefusedError
from orchestrator.fleet.loader import load_fleet_files
from orchestrator.fleet.model import Action, Fleet
from orchestrator.policy.clock import CLOCK_SKEW
from orchestrator.policy.epochs import Timed, binds_at_or_after, intervals_of
from orchestrator.state.audit import AuditLog
from orchestrator.state.base import AppliedDirective, StateStore

__all__ = [
    "ROLLBACK_REFUSED",
    "Rollback",
    "applied_records",
    "ledger_of",
    "refuse_rollback",
    "rollback_problems",
]

ROLLBACK_REFUSED = "directive.rollback_refused"


@dataclass(frozen=True, slots=True)
class Rollback:
    """One recorded directive the fleet would lift without its jurisdiction's word."""

    directive: str
    jurisdiction: str
    kind: str  # "missing" | "altered" | "replayed"
    message: str
    hint: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.directive,
            "jurisdiction": self.jurisdiction,
            "kind": self.kind,
            "message": self.message,
            "hint": self.hint,
        }


def protected_ids(
    fleet: Fleet, ledger: Mapping[str, AppliedDirective], now: datetime
) -> frozenset[str]:
    """Recorded directives that still bind at ``now - skew`` or later: in force, or not yet
    effective, judged by the one definition of "in force" (``policy.epochs.intervals_of``)
    over the recorded versions and every valid directive of the fleet (so a lift in the fleet,
    or one applied before, ends what it supersedes from its ``effective`` on)."""
    timed: dict[str, Timed] = dict(fleet.directives)
    timed.update(ledger)  # a recorded directive is judged as it was applied
    intervals = intervals_of(timed.values())
    since = now - CLOCK_SKEW
    return frozenset(
        rec.id
        for rec in ledger.values()
        if rec.id in intervals and binds_at_or_after(intervals[rec.id], since)
    )


def _hint(rec: AppliedDirective) -> str:
    until = (
        f"it expires at {rec.expires.isoformat()}"
        if rec.expires is not None
        else "it is open-ended (no expires)"
    )
    return (
        f"restore {rec.source} and {rec.source}.sig exactly as applied (SHA-256 "
        f"{rec.sha256}). A directive is lifted only by {rec.jurisdiction}'s signed word: "
        f"{until}; or add a directive signed by {rec.jurisdiction} with "
        f"'supersedes: {rec.id}' (action: lift to lift it and change nothing else)"
    )


def rollback_problems(
    fleet: Fleet, ledger: Mapping[str, AppliedDirective], now: datetime
) -> tuple[Rollback, ...]:
    """Every recorded directive the fleet drops, alters or replays while that matters."""
    protected = protected_ids(fleet, ledger, now)
    problems: list[Rollback] = []
    for rec in sorted(ledger.values(), key=lambda r: r.id):
        current = fleet.directives.get(rec.id)
        if current is not None and current.sha256 == rec.sha256:
            continue
        if current is not None and current.sha256 in rec.history:
            problems.append(
                Rollback(
                    rec.id,
                    rec.jurisdiction,
                    "replayed",
                    f"directive {rec.id} ({rec.jurisdiction}) in {current.source} is an older "
                    f"version than the one applied (SHA-256 {rec.sha256[:12]}); an older "
                    "version of a directive is never applied again",
                    _hint(rec),
                )
            )
            continue
        if rec.jurisdiction not in fleet.jurisdictions:
            # Its jurisdiction left the fleet: it binds no site the fleet declares, and what
            # happens to its sites is a decommission (planning.decommission), refused unless
            # asked for by name.
            continue
        if rec.action == Action.ROTATE.value or rec.id not in protected:
            # A rotation took effect when it was applied (the pinned set is the record);
            # deleting its files afterwards changes nothing.
            continue
        if current is None:
            kind, what = "missing", f"is missing from the fleet (applied from {rec.source})"
        else:
            kind, what = "altered", f"was changed in {current.source} since it was applied"
        problems.append(
            Rollback(
                rec.id,
                rec.jurisdiction,
                kind,
                f"directive {rec.id} ({rec.jurisdiction}) {what} before it has expired (in "
                f"force, or not yet effective; judged at {now.isoformat()}, the real clock)",
                _hint(rec),
            )
        )
    return tuple(problems)


def refuse_rollback(
    fleet: Fleet, ledger: Mapping[str, AppliedDirective], now: datetime, audit: AuditLog | None
) -> None:
    """``RefusedError`` naming every rollback found, after auditing the refusal (fail closed:
    an audit failure propagates)."""
    problems = rollback_problems(fleet, ledger, now)
    if not problems:
        return
    if audit is not None:
        audit.append(
            ROLLBACK_REFUSED,
            {"at": now.isoformat(), "directives": [p.to_json() for p in problems]},
        )
    raise RefusedError(
        "the fleet would lift directives without their jurisdiction's signed word: "
        + "; ".join(p.message for p in problems),
        hint=problems[0].hint,
    )


def ledger_of(store: StateStore) -> dict[str, AppliedDirective]:
    """The applied directives of ``store``. A state written before these records were kept
    still protects what it last applied: the directives of its applied fleet count too."""
    ledger = dict(store.applied_directives())
    applied = store.applied_fleet()
    if applied is not None:
        try:
            fleet = load_fleet_files(applied.files, label="(applied fleet)")
        except FleetError:
            return ledger  # an applied fleet this version cannot read: the records alone
        for rec in applied_records(fleet, applied.files, ledger):
            ledger.setdefault(rec.id, rec)
    return ledger


def applied_records(
    fleet: Fleet, files: Mapping[str, bytes], prior: Mapping[str, AppliedDirective]
) -> Iterable[AppliedDirective]:
    """The records to keep for the directives of ``fleet`` as it is applied now."""
    for d in sorted(fleet.directives.values(), key=lambda d: d.id):
        old = prior.get(d.id)
        history = old.history if old is not None else ()
        if not history or history[-1] != d.sha256:
            history = (*history, d.sha256)
        signatures = files.get(d.source + ".sig", b"").decode("utf-8", "replace")
        yield AppliedDirective(
            id=d.id,
            jurisdiction=d.jurisdiction,
            sha256=d.sha256,
            signatures=signatures,
            source=d.source,
            action=d.action.value,
            effective=d.effective,
            expires=d.expires,
            supersedes=d.supersedes,
            history=history,
        )
