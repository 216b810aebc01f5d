"""What a directive would change before it is added: the ``impact`` what-if (docs/decisions.md,
"sovereign impact").

The fleet is compiled with and without the directive (the second compile reuses every key the
directive cannot reach) and the routes are compared over equivalence classes of principals, so
the answer covers everyone without enumerating people:

* residency: every country of the fleet, every unlisted country named in a residency
  predicate in play, and ``*`` (any other unlisted country) when unlisted countries are served;
* nationality: unknown, each country named in a nationality predicate in play, and ``*`` (any
  nationality no predicate names);
* groups: none, and each ``except_groups`` group in play.

"In play" means the directive itself, what it supersedes, and every directive in force at the
instant compared (they can already have removed the same sites). Each cell whose route changes is
``refused`` (the law leaves the route empty), ``unavailable`` (only drained sites are left:
service is lost to an outage, not refused by the law), ``rerouted`` (still served, other
sites) or ``restored`` (was refused, served again: only a directive that supersedes another
can do that). A cell that
changes although the directive does not reach it, or whose route changes at a site the directive
does not govern, is *collateral*; docs/decisions.md says there is none, and the count is shown so
that anyone can see it is zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from orchestrator.fleet.instants import format_utc
from orchestrator.fleet.model import Action, Directive, Fleet, Unlisted
from orchestrator.policy.principal import OTHER, Principal, audience_label
from orchestrator.policy.rules import audience_matches, route_without
from orchestrator.policy.table import RouteTable


class Effect(StrEnum):
    REFUSED = "refused"  # the law leaves the route empty: 451
    UNAVAILABLE = "unavailable"  # only drains leave it empty (the law allows a site): 503
    REROUTED = "rerouted"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class CellChange:
    """One (model, residency, audience class) cell whose route the directive changes (not a
    plan's ``planning.plan.Change``: nothing is deployed or removed, only routes move)."""

    model: str
    residency: str  # a country code, or "*" for any other unlisted country
    home: str | None
    nationalities: tuple[str, ...]  # () = unknown; ("*",) = a nationality no predicate names
    groups: tuple[str, ...]
    before: tuple[str, ...]
    after: tuple[str, ...]
    effect: Effect

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "residency": self.residency,
            "home": self.home,
            "audience": {"nationalities": list(self.nationalities), "groups": list(self.groups)},
            "before": list(self.before),
            "after": list(self.after),
            "effect": self.effect.value,
        }

    def representative(self) -> Principal:
        """A principal of this cell's class, as the comparison used it."""
        return Principal(
            _OTHER_CODE if self.residency == OTHER else self.residency,
            frozenset(_codes(self.nationalities)),
            frozenset(self.groups),
        )

    def describe_principal(self) -> str:
        where = "an unlisted country" if self.residency == OTHER else self.residency
        return f"{audience_label(self.nationalities, self.groups)} in {where}"


@dataclass(frozen=True, slots=True)
class Impact:
    directive: Directive
    at: datetime  # the instant compared: the later of the requested time and the effective
    signed: bool
    cells: int  # how many (model, residency, audience) cells were compared
    changes: tuple[CellChange, ...]
    collateral: int  # changed cells outside the directive's reach (docs/decisions.md: always 0)

    def summary(self) -> dict[str, object]:
        effects = Counter(c.effect.value for c in self.changes)
        return {
            "cells": self.cells,
            "changed": len(self.changes),
            "refused": effects.get(Effect.REFUSED.value, 0),
            "unavailable": effects.get(Effect.UNAVAILABLE.value, 0),
            "rerouted": effects.get(Effect.REROUTED.value, 0),
            "restored": effects.get(Effect.RESTORED.value, 0),
            "models": sorted({c.model for c in self.changes}),
            "collateral": self.collateral,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "directive": self.directive.id,
            "at": format_utc(self.at),
            "signed": self.signed,
            "changes": [c.to_json() for c in self.changes],
            "summary": self.summary(),
        }


def impact(
    fleet: Fleet,
    directive: Directive,
    at: datetime,
    *,
    signed: bool = True,
    drained: frozenset[str] = frozenset(),
) -> Impact:
    """Compare routes without and with ``directive`` at the later of ``at`` and its effective
    instant, both without the ``drained`` sites (routes as the gateway serves them).
    ``fleet`` must not already contain it (a directive with the same id is replaced, which
    makes this the what-if of changing that directive)."""
    when = max(at, directive.effective)
    before_table = RouteTable.compile(fleet)
    with_it = fleet.with_directives({**fleet.directives, directive.id: directive})
    after_table = RouteTable.compile(with_it, previous=before_table)
    replaced = [
        d
        for d in (
            fleet.directives.get(directive.supersedes or ""),
            fleet.directives.get(directive.id),
        )
        if d is not None
    ]
    in_force_before = before_table.epochs.in_force(when)
    in_force_after = after_table.epochs.in_force(when)
    play = {d.id: d for d in (*in_force_before, *in_force_after, *replaced, directive)}
    reach = (directive, *replaced)
    changes: list[CellChange] = []
    collateral = 0
    cells = 0
    for model in sorted(fleet.models):
        for cell in audience_cells(fleet, play.values()):
            cells += 1
            principal = cell.principal
            before = before_table.route(model, principal, when)
            legal_after = after_table.route(model, principal, when)
            before, after = route_without(before, drained), route_without(legal_after, drained)
            if before == after:
                continue
            if not _within_reach(fleet, reach, model, principal, before, after):
                collateral += 1
            changes.append(cell.change(model, before, after, legal_after))
    return Impact(directive, when, signed, cells, tuple(changes), collateral)


@dataclass(frozen=True, slots=True)
class Cell:
    """One class of principals: everyone in it gets the same route for every model."""

    residency: str  # label: a country code, or "*"
    home: str | None
    nationalities: tuple[str, ...]
    groups: tuple[str, ...]
    principal: Principal  # a representative

    def change(
        self,
        model: str,
        before: tuple[str, ...],
        after: tuple[str, ...],
        legal_after: tuple[str, ...] = (),
    ) -> CellChange:
        """This cell's route change for ``model`` (``before != after``). ``legal_after`` is the
        route the law gives after the change, drained sites included: an empty ``after`` with a
        non-empty ``legal_after`` is ``unavailable`` (the cell loses service to drains, 503),
        not ``refused`` (the law's 451)."""
        if not after:
            effect = Effect.UNAVAILABLE if legal_after else Effect.REFUSED
        else:
            effect = Effect.RESTORED if not before else Effect.REROUTED
        return CellChange(
            model, self.residency, self.home, self.nationalities, self.groups, before, after, effect
        )


def audience_cells(fleet: Fleet, play: Iterable[Directive]) -> list[Cell]:
    """The classes of principals that the directives in ``play`` tell apart (see the module
    docstring): comparing one representative per class covers everyone."""
    play = tuple(play)
    group_classes: list[tuple[str, ...]] = [()] + [
        (g,) for g in sorted({g for d in play for g in d.audience.except_groups})
    ]
    cells: list[Cell] = []
    for residency, code in _residency_classes(fleet, play):
        home = fleet.home_of(code)
        for nats in _nationality_classes(play):
            for groups in group_classes:
                principal = Principal(code, frozenset(_codes(nats)), frozenset(groups))
                cells.append(Cell(residency, home, nats, groups, principal))
    return cells


# Internal code for OTHER as a principal field: it must not collide with any predicate entry.
_OTHER_CODE = "\x00other"


def _codes(nats: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_OTHER_CODE if n == OTHER else n for n in nats)


def _residency_classes(fleet: Fleet, play: Iterable[Directive]) -> list[tuple[str, str]]:
    """(label, principal residency code) pairs."""
    listed = sorted(fleet.country_home)
    out = [(c, c) for c in listed]
    if fleet.settings.unlisted_countries is Unlisted.ANY:
        named: set[str] = set()
        for d in play:
            a = d.audience
            for s in (a.residency_in, a.residency_not_in):
                if s:
                    named |= s
        out += [(c, c) for c in sorted(named - set(listed))]
        out.append((OTHER, _OTHER_CODE))
    return out


def _nationality_classes(play: Iterable[Directive]) -> list[tuple[str, ...]]:
    named: set[str] = set()
    for d in play:
        a = d.audience
        for s in (a.nationality_in, a.nationality_not_in):
            if s:
                named |= s
    return [(), *((c,) for c in sorted(named)), (OTHER,)]


def _within_reach(
    fleet: Fleet,
    reach: tuple[Directive, ...],
    model: str,
    principal: Principal,
    before: tuple[str, ...],
    after: tuple[str, ...],
) -> bool:
    """docs/decisions.md: the change touches only sites governed by the directive (or what it
    replaces), for a model it names and a principal its audience matches."""
    touched = set(before).symmetric_difference(after)
    for site_id in touched:
        governing = fleet.sites[site_id].governing
        if not any(
            d.jurisdiction in governing
            and d.names(model)
            and (d.action is Action.WITHDRAW or audience_matches(d.audience, principal))
            for d in reach
        ):
            return False
    # the order of the sites that remain is fixed by docs/decisions.md ("Route order"), so it cannot
    # change on its own
    return [s for s in before if s not in touched] == [s for s in after if s not in touched]
