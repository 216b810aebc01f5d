"""``sovereign evidence``: one jurisdiction's period, from the audit log and the decision logs.

Two parts (docs/evidence.md):

- **directives**: every directive of the jurisdiction in force at some instant of the period,
  found in the fleets the state applied (the fleets named by the audit log's ``apply.started``
  entries, and the one applied now), each with the audit entries that recorded it and what it
  changed (the ``impact`` what-if: the fleet compared without and with it). The audit chain is
  verified first; a broken chain is an error, not a footnote.
- **decisions**: every line of the decision logs, streamed. Lines in the period are re-judged
  (``evidence.judge``) and counted (served per model, site and audience class; refused per
  model and audience class); lines outside it are only numbered, so a gap is never hidden by
  the period's edges. Unparsed lines, violations and gaps are listed, every one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import AuditError, UsageError
from orchestrator.evidence.decisions import (
    Decision,
    Gap,
    LineError,
    Sequences,
    Unparsed,
    parse_line,
    read_lines,
)
from orchestrator.evidence.judge import FleetBook, Violation, judge
from orchestrator.fleet.instants import format_utc
from orchestrator.fleet.model import Directive, Fleet
from orchestrator.policy.epochs import active_intervals
from orchestrator.policy.impact import impact
from orchestrator.policy.principal import Principal
from orchestrator.state.audit import AuditEntry, AuditReport

__all__ = ["Evidence", "audience_class", "collect_evidence", "iso"]


def iso(at: datetime) -> str:
    return format_utc(at)


def audience_class(principal: Principal, countries: frozenset[str]) -> str:
    """The principal as the jurisdiction sees them: national, foreign national or nationality
    unknown; resident or not; and the groups they carry (exemptions depend on them)."""
    nats = principal.nationalities
    if not nats:
        who = "nationality unknown"
    elif not nats.isdisjoint(countries):
        who = "national"
    else:
        who = "foreign national"
    where = "resident" if principal.residency in countries else "non-resident"
    groups = f", groups {'+'.join(sorted(principal.groups))}" if principal.groups else ""
    return f"{who}, {where}{groups}"


@dataclass
class Evidence:
    jurisdiction: str
    start: datetime
    end: datetime
    audit: AuditReport
    directives: list[dict[str, Any]]
    judged: int = 0
    outside_period: int = 0
    lines: int = 0
    served: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    unparsed: list[Unparsed] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.violations or self.unparsed or self.gaps)

    def to_json(self) -> dict[str, Any]:
        """Exactly the documented ``evidence --json`` shape (docs/json.md)."""
        return {
            "jurisdiction": self.jurisdiction,
            "from": iso(self.start),
            "to": iso(self.end),
            "directives": self.directives,
            "decisions": {
                "judged": self.judged,
                "served": {
                    "total": sum(self.served.values()),
                    "by": [
                        {"model": m, "site": s, "audience": a, "count": n}
                        for (m, s, a), n in sorted(self.served.items())
                    ],
                },
                "refused": {
                    "total": sum(self.refused.values()),
                    "by": [
                        {"model": m, "audience": a, "count": n}
                        for (m, a), n in sorted(self.refused.items())
                    ],
                },
            },
            "violations": [v.to_json() for v in self.violations],
            "unparsed": [u.to_json() for u in self.unparsed],
            "gaps": [g.to_json() for g in self.gaps],
        }


# --- directives ----------------------------------------------------------------------------


def _audited_digests(entries: Sequence[AuditEntry], current: str | None) -> list[str]:
    """Fleet digests the state applied, newest first (the current one leading)."""
    seen: dict[str, None] = {}
    if current:
        seen[current] = None
    for e in reversed(entries):
        if e.kind == "apply.started":
            digest = e.payload.get("fleet_digest")
            if isinstance(digest, str) and digest:
                seen.setdefault(digest, None)
    return list(seen)


def _directive_json(
    d: Directive,
    fleet: Fleet,
    interval: tuple[datetime, datetime | None],
    start: datetime,
    end: datetime,
    entries: Sequence[AuditEntry],
) -> dict[str, Any]:
    a = d.audience

    def listed(values: frozenset[str] | None) -> list[str] | None:
        return None if values is None else sorted(values)

    others = {k: v for k, v in fleet.directives.items() if k != d.id}
    what = impact(fleet.with_directives(others), d, max(start, d.effective))
    in_from = max(start, interval[0])
    in_to = end if interval[1] is None else min(end, interval[1])
    return {
        "id": d.id,
        "jurisdiction": d.jurisdiction,
        "issuer": d.issuer,
        "reference": d.reference,
        "action": d.action.value,
        "models": sorted(d.models),
        "audience": {
            "nationality_in": listed(a.nationality_in),
            "nationality_not_in": listed(a.nationality_not_in),
            "residency_in": listed(a.residency_in),
            "residency_not_in": listed(a.residency_not_in),
            "except_groups": sorted(a.except_groups),
        },
        "effective": iso(d.effective),
        "expires": None if d.expires is None else iso(d.expires),
        "supersedes": d.supersedes,
        "sha256": d.sha256,
        "in_force": {"from": iso(in_from), "to": iso(in_to)},
        "audit": [
            {"seq": e.seq, "ts": e.ts, "kind": e.kind}
            for e in entries
            if e.kind.startswith("directive.") and e.payload.get("id") == d.id
        ],
        "changed": what.summary(),
        "changes": [c.to_json() for c in what.changes],
    }


def _directives(
    jurisdiction: str,
    start: datetime,
    end: datetime,
    entries: Sequence[AuditEntry],
    fleets: Iterable[Fleet],
) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fleet in fleets:  # newest first: a directive is described by its latest version
        intervals = active_intervals(fleet)
        for d in sorted(fleet.directives.values(), key=lambda d: d.id):
            if d.jurisdiction != jurisdiction or d.id in out:
                continue
            interval = intervals.get(d.id)
            if interval is None:
                continue
            begins, ends = interval
            if begins < end and (ends is None or ends > start):
                out[d.id] = _directive_json(d, fleet, interval, start, end, entries)
    return [out[k] for k in sorted(out, key=lambda k: (out[k]["effective"], k))]


# --- decisions -----------------------------------------------------------------------------


def _relevant_refusal(d: Decision, fleet: Fleet, jurisdiction: str) -> bool:
    """A refusal concerns the jurisdiction when its principal lives there or a reason cites
    the jurisdiction or one of its directives."""
    assert d.principal is not None
    if fleet.home_of(d.principal.residency) == jurisdiction:
        return True
    for _, ref in d.reasons:
        if ref == jurisdiction:
            return True
        directive = fleet.directives.get(ref)
        if directive is not None and directive.jurisdiction == jurisdiction:
            return True
    return False


def _check_chain(audit_report: AuditReport) -> None:
    if not audit_report.ok:
        problem = audit_report.problem
        raise AuditError(
            "the audit log does not verify: "
            + (problem.message if problem is not None else "unknown problem"),
            hint="evidence rests on the audit chain; run `sovereign audit verify` and restore "
            "the state from a backup",
        )


def _applied_fleets(
    book: FleetBook, entries: Sequence[AuditEntry], current: str | None, jurisdiction: str
) -> list[Fleet]:
    fleets: list[Fleet] = []
    for digest in _audited_digests(entries, current):
        found = book.fleet(digest)
        if not isinstance(found, str):
            fleets.append(found)
    if fleets and not any(jurisdiction in f.jurisdictions for f in fleets):
        known = sorted({j for f in fleets for j in f.jurisdictions})
        raise UsageError(
            f"no applied fleet has a jurisdiction {jurisdiction!r}",
            hint=f"jurisdictions: {', '.join(known)}",
        )
    return fleets


class _Counter:
    """Counts judged decisions per model, site and audience class (for one jurisdiction)."""

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        self._countries: dict[str, frozenset[str]] = {}
        self._classes: dict[tuple[str, Principal], str] = {}

    def audience(self, d: Decision, fleet: Fleet) -> str:
        assert d.principal is not None
        found = self._classes.get((d.fleet, d.principal))
        if found is None:
            countries = self._countries.get(d.fleet)
            if countries is None:
                j = fleet.jurisdictions.get(self.ev.jurisdiction)
                countries = self._countries[d.fleet] = j.countries if j else frozenset()
            found = audience_class(d.principal, countries)
            if len(self._classes) > 100_000:
                self._classes.clear()
            self._classes[(d.fleet, d.principal)] = found
        return found

    def count(self, d: Decision, fleet: Fleet) -> None:
        if d.principal is None or d.model is None or (d.site is None and d.status != 451):
            return
        ev = self.ev
        if d.site is not None:
            site = fleet.sites.get(d.site)
            if site is not None and ev.jurisdiction in site.governing:
                ev.served[(d.model, d.site, self.audience(d, fleet))] += 1
        elif _relevant_refusal(d, fleet, ev.jurisdiction):
            ev.refused[(d.model, self.audience(d, fleet))] += 1


def collect_evidence(
    jurisdiction: str,
    start: datetime,
    end: datetime,
    decision_files: Sequence[Path],
    *,
    audit_report: AuditReport,
    entries: Sequence[AuditEntry],
    current_digest: str | None,
    load_fleet: Callable[[str], Fleet | None],
    progress: Callable[[int], None] | None = None,
) -> Evidence:
    """The evidence for ``jurisdiction`` in ``[start, end)``."""
    _check_chain(audit_report)
    book = FleetBook(load_fleet)
    fleets = _applied_fleets(book, entries, current_digest, jurisdiction)
    ev = Evidence(
        jurisdiction,
        start,
        end,
        audit_report,
        _directives(jurisdiction, start, end, entries, fleets),
        files=[str(p) for p in decision_files],
    )
    seqs = Sequences()
    counter = _Counter(ev)
    for path in decision_files:
        name = str(path)
        for number, raw in read_lines(path):
            ev.lines += 1
            if progress is not None and ev.lines % 1_000_000 == 0:
                progress(ev.lines)
            try:
                d = parse_line(raw, name, number)
            except LineError as exc:
                ev.unparsed.append(Unparsed(name, number, str(exc)))
                continue
            if not seqs.add(d.gateway, d.seq):
                ev.unparsed.append(
                    Unparsed(name, number, f"decision_id {d.decision_id} appears more than once")
                )
                continue
            if not start <= d.at < end:
                ev.outside_period += 1
                continue
            ev.judged += 1
            judged = judge(d, book)
            ev.violations.extend(judged.violations)
            if judged.compiled is not None:
                counter.count(d, judged.compiled.fleet)
    ev.gaps = seqs.gaps()
    return ev
