"""The routing matrix of the demo: principals x models -> the serving site, or 451.

Six principals tell the story of the June 2026 directives: who loses a model, who is rerouted,
and who is untouched. The collateral count compares Sovereign with the blunt response of
switching the named models off everywhere: a cell is collateral when it loses service although
the law still allows serving it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console

from orchestrator.fleet.model import Fleet
from orchestrator.layout import print_table
from orchestrator.policy.principal import Principal
from orchestrator.policy.rules import route
from orchestrator.policy.table import RouteTable

REFUSED = "451"


@dataclass(frozen=True, slots=True)
class DemoPrincipal:
    label: str
    principal: Principal


PRINCIPALS: tuple[DemoPrincipal, ...] = (
    DemoPrincipal("US national in US", Principal.of("US", ["US"])),
    DemoPrincipal("German national in US", Principal.of("US", ["DE"])),
    DemoPrincipal("German in Germany", Principal.of("DE", ["DE"])),
    DemoPrincipal("Japanese in Japan", Principal.of("JP", ["JP"])),
    DemoPrincipal("Unknown nationality in US", Principal.of("US")),
    DemoPrincipal("German trusted partner in US", Principal.of("US", ["DE"], ["trusted-partners"])),
)
MODELS: tuple[str, ...] = ("fable-5", "mythos-5", "olmo-3")

Matrix = dict[tuple[str, str], str]  # (principal label, model) -> first site or "451"


def routing_matrix(
    fleet: Fleet,
    at: datetime,
    principals: Iterable[DemoPrincipal] = PRINCIPALS,
    models: Iterable[str] = MODELS,
) -> Matrix:
    table = RouteTable.compile(fleet)
    out: Matrix = {}
    models = tuple(models)
    for p in principals:
        for m in models:
            route = table.route(m, p.principal, at)
            out[(p.label, m)] = route[0] if route else REFUSED
    return out


def print_matrix(
    console: Console, title: str, matrix: Matrix, previous: Matrix | None = None
) -> None:
    """The matrix as a table (a list when the console is too narrow); cells that changed
    since ``previous`` are highlighted and starred. A site id is never split or cut."""
    rows = []
    for p in PRINCIPALS:
        cells = [p.label]
        for m in MODELS:
            value = matrix[(p.label, m)]
            text = "[red]451[/]" if value == REFUSED else value
            if previous is not None and previous.get((p.label, m)) != value:
                text = f"[bold yellow]{value} *[/]"
            cells.append(text)
        rows.append(cells)
    print_table(console, ("principal", *MODELS), rows, title=title)


def changed_cells(before: Matrix, after: Matrix) -> list[tuple[str, str, str, str]]:
    return [
        (p, m, before[(p, m)], after[(p, m)])
        for (p, m) in before
        if before[(p, m)] != after[(p, m)]
    ]


@dataclass(frozen=True)
class Collateral:
    cells: int  # (model, principal class) cells compared
    required: int  # cells the law refuses after the directive (and served before)
    sovereign: int  # cells Sovereign refuses although the law allows them
    switch_off: int  # cells "switch the models off everywhere" refuses although allowed


def principal_classes(fleet: Fleet, groups: Iterable[str]) -> list[Principal]:
    """Every country of the fleet x nationality {unknown, own country, each other
    jurisdiction's first country} x groups {none, each given group}."""
    reps = sorted({sorted(j.countries)[0] for j in fleet.jurisdictions.values() if j.countries})
    out: list[Principal] = []
    for country in sorted(fleet.country_home):
        nats: list[tuple[str, ...]] = [(), (country,), *((r,) for r in reps if r != country)]
        for n in nats:
            for g in [(), *((x,) for x in groups)]:
                out.append(Principal.of(country, n, g))
    return out


def collateral(
    law_before: Fleet,
    law_after: Fleet,
    at_before: datetime,
    at_after: datetime,
    models: Iterable[str],
    principals: Iterable[Principal],
    served: Callable[[str, Principal], bool],
) -> Collateral:
    """Count refusals beyond what the law requires, for Sovereign and for a global switch-off.

    The law is the reference semantics (``policy.rules.route``, rule by rule); ``served`` says
    whether Sovereign really serves the cell now (the applied route table, and a healthy
    deployment at a site of the route). Switching off refuses every cell of ``models``."""
    principals = tuple(principals)
    cells = required = sovereign = switch_off = 0
    for m in models:
        for p in principals:
            cells += 1
            was_served = bool(route(law_before, m, p, at_before))
            lawful = bool(route(law_after, m, p, at_after))
            if was_served and not lawful:
                required += 1
            if lawful and not served(m, p):
                sovereign += 1
            if lawful:
                switch_off += 1
    return Collateral(cells, required, sovereign, switch_off)
