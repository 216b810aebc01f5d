"""Who is served where: for each model, jurisdictions x audience classes, at one instant.

This is the data behind ``sovereign report --html``: the picture a compliance reviewer reads
instead of tables. Each cell is a class of principals (a residency country, a nationality
class, a group class: the same classes ``impact`` compares, see ``policy.impact``) and says
whether they are served at a site of their own jurisdiction (``here``), only at another
jurisdiction's site (``elsewhere``), not at all by the law (``refused``) or not now because
every site the law allows them is drained (``unavailable``: an outage), and for a refusal which
directives or rules stand in the way. Countries of one jurisdiction whose cells are all alike are
merged into one row. Every cell is computed with ``Explainer``, the same code as ``explain``,
so the picture cannot disagree with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from orchestrator.fleet.model import Directive, Fleet
from orchestrator.policy.explain import Explainer
from orchestrator.policy.impact import audience_cells
from orchestrator.policy.principal import OTHER, Principal, audience_label
from orchestrator.policy.rules import Rule

__all__ = ["Audience", "CellState", "Coverage", "CoverageCell", "CoverageRow", "coverage"]


class CellState(StrEnum):
    HERE = "here"  # the first site of the route belongs to the principal's home jurisdiction
    ELSEWHERE = "elsewhere"  # served, but first by another jurisdiction's site
    REFUSED = "refused"  # the law leaves the route empty (451)
    UNAVAILABLE = "unavailable"  # the law allows sites, all of them drained (503, an outage)


@dataclass(frozen=True, slots=True)
class Audience:
    """A column: one nationality class and one group class."""

    nationalities: tuple[str, ...]  # () unknown; (OTHER,) a nationality no directive names
    groups: tuple[str, ...]

    @property
    def label(self) -> str:
        return audience_label(self.nationalities, self.groups)


@dataclass(frozen=True, slots=True)
class CoverageCell:
    state: CellState
    route: tuple[str, ...]
    directives: tuple[str, ...]  # ids of the directives that refuse or withdraw (refused only)
    rules: tuple[Rule, ...]  # the other rules that fail at some site (refused only)
    example: Principal  # a real principal of this cell, for `explain`
    drained: tuple[str, ...] = ()  # unavailable only: the legal sites operations drained


@dataclass(frozen=True, slots=True)
class CoverageRow:
    jurisdiction: str | None  # None: countries no profile lists
    countries: tuple[str, ...]
    cells: tuple[CoverageCell, ...]  # one per audience, in ``Coverage.audiences`` order


@dataclass(frozen=True, slots=True)
class Coverage:
    at: datetime
    audiences: tuple[Audience, ...]
    models: dict[str, tuple[CoverageRow, ...]]


def coverage(
    fleet: Fleet,
    at: datetime,
    play: Iterable[Directive] = (),
    drained: frozenset[str] = frozenset(),
) -> Coverage:
    """The matrix for every model of ``fleet`` at ``at``; ``play`` adds directives whose
    audiences must be told apart (e.g. one being assessed). With ``drained`` sites, a cell the
    law serves only there is ``unavailable`` (an outage), never ``refused``."""
    directives = (*fleet.directives.values(), *play)
    cells = [c for c in audience_cells(fleet, directives) if c.residency != OTHER]
    audiences: list[Audience] = []
    for c in cells:
        a = Audience(c.nationalities, c.groups)
        if a not in audiences:
            audiences.append(a)
    other = _unnamed_country(fleet, directives)
    explainer = Explainer(fleet, drained=drained)
    models: dict[str, tuple[CoverageRow, ...]] = {}
    for model in sorted(fleet.models):
        by_country: dict[str, list[CoverageCell]] = {}
        for c in cells:
            example = Principal(
                c.principal.residency,
                frozenset(other if n == OTHER else n for n in c.nationalities),
                frozenset(c.groups),
            )
            by_country.setdefault(c.residency, []).append(_cell(explainer, model, example, at))
        models[model] = _rows(fleet, by_country)
    return Coverage(at, tuple(audiences), models)


def _cell(explainer: Explainer, model: str, principal: Principal, at: datetime) -> CoverageCell:
    e = explainer.explain(model, principal, at)
    if e.route:
        owner = explainer.fleet.sites[e.route[0]].jurisdiction
        state = CellState.HERE if owner == e.home else CellState.ELSEWHERE
        return CoverageCell(state, e.route, (), (), principal)
    if e.unavailable:
        return CoverageCell(CellState.UNAVAILABLE, (), (), (), principal, e.unavailable)
    refusal = e.refusal
    assert refusal is not None  # neither served nor drained: the law refuses
    return CoverageCell(CellState.REFUSED, (), refusal.directives, refusal.rules, principal)


def _rows(fleet: Fleet, by_country: dict[str, list[CoverageCell]]) -> tuple[CoverageRow, ...]:
    """Countries of one jurisdiction with identical cells share a row."""
    rows: list[CoverageRow] = []
    homes = sorted({fleet.home_of(c) for c in by_country}, key=lambda j: (j is None, j or ""))
    for home in homes:
        groups: dict[tuple[tuple[CellState, tuple[str, ...], tuple[str, ...]], ...], list[str]]
        groups = {}
        for country, cells in sorted(by_country.items()):
            if fleet.home_of(country) != home:
                continue
            key = tuple((c.state, c.route, c.directives) for c in cells)
            groups.setdefault(key, []).append(country)
        for countries in groups.values():
            rows.append(CoverageRow(home, tuple(countries), tuple(by_country[countries[0]])))
    return tuple(rows)


def _unnamed_country(fleet: Fleet, directives: Iterable[Directive]) -> str:
    """A real country code that no nationality predicate names: an example of "other"."""
    named: set[str] = set()
    for d in directives:
        for s in (d.audience.nationality_in, d.audience.nationality_not_in):
            if s:
                named |= s
    for code in sorted(fleet.country_home):
        if code not in named:
            return code
    return "ZZ"
