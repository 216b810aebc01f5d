"""Re-judging logged decisions against the fleet as it was at their instant.

A decision line names the fleet it was decided with (its digest, ``labels.fleet``). The fleet
with that digest is read from the state's applied fleets (``StateStore.applied_fleet_of``), its
signatures verified again by the loader, and compiled once: one ``RouteTable`` answers every
instant (each directive epoch is a bisect inside it), so ten million lines from a handful of
applies compile a handful of tables. The law's route for the line's (model, principal, instant)
is then compared with what the gateway did (docs/evidence.md, "What is a violation").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import SovereignError
from orchestrator.evidence.decisions import Decision
from orchestrator.fleet.instants import format_utc
from orchestrator.fleet.model import Fleet
from orchestrator.policy.rules import decide
from orchestrator.policy.table import RouteTable

__all__ = ["FleetBook", "Judged", "Violation", "judge"]

# Statuses that never reach a route: nobody may have been served for them.
_NOT_DECIDED = frozenset({400, 401, 413})


@dataclass(frozen=True, slots=True)
class Compiled:
    fleet: Fleet
    table: RouteTable
    verdicts: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)


class FleetBook:
    """Fleets by digest, loaded once each and compiled once each when a decision needs one; a
    digest that cannot be found (or whose files no longer verify) is remembered with the
    reason."""

    def __init__(self, load: Callable[[str], Fleet | None]) -> None:
        self._load = load
        self._fleets: dict[str, Fleet | str] = {}
        self._compiled: dict[str, Compiled] = {}

    def fleet(self, digest: str) -> Fleet | str:
        """The fleet, or why there is none (loaded, not compiled: the directives need no
        table)."""
        found = self._fleets.get(digest)
        if found is None:
            try:
                fleet = self._load(digest)
            except SovereignError as exc:
                found = f"the fleet {digest[:12]} cannot be read: {exc.message}"
            else:
                if fleet is None:
                    found = (
                        f"no fleet with digest {digest[:12] or '(empty)'} was applied to this state"
                    )
                else:
                    found = fleet
            self._fleets[digest] = found
        return found

    def get(self, digest: str) -> Compiled | str:
        """The compiled fleet, or why there is none."""
        compiled = self._compiled.get(digest)
        if compiled is not None:
            return compiled
        found = self.fleet(digest)
        if isinstance(found, str):
            return found
        compiled = self._compiled[digest] = Compiled(found, RouteTable.compile(found))
        return compiled


@dataclass(frozen=True, slots=True)
class Violation:
    decision: Decision
    kind: str
    message: str
    law_route: tuple[str, ...] | None = None
    reasons: tuple[dict[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "decision_id": d.decision_id,
            "file": d.file,
            "line": d.line,
            "timestamp": format_utc(d.at),
            "kind": self.kind,
            "message": self.message,
            "model": d.model,
            "principal": d.principal.to_json() if d.principal is not None else None,
            "status": d.status,
            "site": d.site,
            "route": list(d.route),
            "law_route": None if self.law_route is None else list(self.law_route),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True, slots=True)
class Judged:
    """One decision re-judged: ``compiled`` is None when its fleet is unknown."""

    compiled: Compiled | None
    violations: tuple[Violation, ...]


# What a verdict needs to be rebuilt for another decision of the same class.
_Spec = tuple[str, str, tuple[str, ...] | None, tuple[dict[str, str], ...]]


def judge(d: Decision, book: FleetBook) -> Judged:
    """Re-judge ``d``: the law's route at its instant, compared with what was done. Decisions
    alike in everything the law reads (fleet, model, principal, directive epoch) and in what
    was done (status, site, route) share one verdict, memoised per fleet."""
    found = book.get(d.fleet)
    if isinstance(found, str):
        return Judged(None, (Violation(d, "fleet_unknown", found),))
    key = (d.model, d.principal, found.table.epochs.epoch(d.at), d.status, d.site, d.route)
    specs = found.verdicts.get(key)
    if specs is None:
        specs = _verdict(d, found)
        if len(found.verdicts) > 200_000:
            found.verdicts.clear()
        found.verdicts[key] = specs
    if not specs:
        return Judged(found, ())
    return Judged(found, tuple(Violation(d, *spec) for spec in specs))


def _verdict(d: Decision, found: Compiled) -> tuple[_Spec, ...]:
    fleet, table = found.fleet, found.table
    p = d.principal
    if p is None or d.model is None:
        if d.site is not None:
            return (("served_undecided", "served without a principal and a model", None, ()),)
        return ()
    law = table.route(d.model, p, d.at) if d.model in fleet.models else ()
    out: list[_Spec] = []
    if d.status in _NOT_DECIDED and d.site is not None:
        out.append(("served_undecided", f"status {d.status} but served", law, ()))
    if d.site is not None and d.site not in law:
        out.append(
            (
                "served_where_forbidden",
                f"served at {d.site}, which the law did not allow at that instant",
                law,
                _why(fleet, d),
            )
        )
    outside = [s for s in d.route if s not in law]
    if outside:
        out.append(
            (
                "route_not_lawful",
                f"the logged route lists {', '.join(outside)}, outside the law's route",
                law,
                (),
            )
        )
    if d.status == 451 and law:
        out.append(
            (
                "refused_but_allowed",
                f"refused (451) although the law allowed {', '.join(law)}",
                law,
                (),
            )
        )
    return tuple(out)


def _why(fleet: Fleet, d: Decision) -> tuple[dict[str, str], ...]:
    """The rules that forbid the served site (the reference rules, for the rare violation)."""
    assert d.principal is not None and d.model is not None and d.site is not None
    if d.site not in fleet.sites:
        return ({"rule": "unknown_site", "ref": d.site, "message": "not a site of this fleet"},)
    if d.model not in fleet.models:
        return ({"rule": "unknown_model", "ref": d.model, "message": "not a model of this fleet"},)
    decision = decide(fleet, d.model, d.site, d.principal, d.at)
    return tuple(r.to_json() for r in decision.reasons)
