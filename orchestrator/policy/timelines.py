"""Compiling a fleet into per-key timelines: what ``RouteTable.compile`` does.

Almost all of a decision depends only on the model and the principal's home jurisdiction
(R0-R3), so the fleet is compiled per ``(model, home)`` key (home ``None``: unlisted countries
under ``unlisted_countries: any``): the candidate sites passing R1-R3 in route order, and a
``Timeline`` of the key's intervals between the instants at which a directive reaching it
starts or stops being in force (read from the fleet's ``EpochIndex``, the one definition of
"in force"). Each interval holds the sites that survive R4 plus the suspensions in force that
could remove some, their audiences precompiled against the home (``entries``).

Epochs are kept per key rather than globally: a global epoch list for 10,000 directives would
hold 20,000 copies of every key, while per key the work and memory are proportional to the
directives that reach it. For the same reason recompiling after a directive change rebuilds
only the keys a changed directive reaches (``reached_keys``) and reuses the others by identity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from orchestrator.fleet.model import ALL_MODELS, Action, Directive, Fleet, Unlisted
from orchestrator.policy.entries import Matcher, Predicates, RawEntry, Timeline, finish
from orchestrator.policy.epochs import EpochIndex
from orchestrator.policy.rules import export_allowed, offered, order_route

# model -> home -> what the key holds
PerKey = dict[str, dict[str | None, Timeline]]
# model -> home -> jurisdictions governing some candidate site of the key
Governing = Mapping[str, Mapping[str | None, frozenset[str]]]


class _Span(NamedTuple):
    """A directive reaching a key, while compiling that key."""

    start: datetime
    end: datetime | None
    directive: Directive
    suspends: bool
    governed: frozenset[str]  # the key's candidate sites its jurisdiction governs


class Compiled(NamedTuple):
    by_model: PerKey
    governing: dict[str, dict[str | None, frozenset[str]]]


class Compiler:
    """Builds the per-key timelines of one fleet."""

    def __init__(self, fleet: Fleet, epochs: EpochIndex) -> None:
        self.fleet = fleet
        self.intervals = epochs.intervals
        sites = fleet.sites
        # R1 and R2 depend on (model, site) only
        self.placeable: dict[str, frozenset[str]] = {
            m: frozenset(s for s in sites if offered(fleet, m, s) and export_allowed(fleet, m, s))
            for m in fleet.models
        }
        # R3 depends on (home, site) only; None is the unlisted home under `any`
        self.homes: dict[str | None, frozenset[str]] = {}
        for j in fleet.jurisdictions.values():
            self.homes[j.id] = frozenset(
                s for s, site in sites.items() if site.jurisdiction in j.process_in
            )
        if fleet.settings.unlisted_countries is Unlisted.ANY:
            self.homes[None] = frozenset(sites)
        # directives ever in force, by (jurisdiction, model named), '*' kept under ALL_MODELS
        self.by_juris_model: dict[tuple[str, str], list[Directive]] = defaultdict(list)
        for d in epochs.directives.values():
            for m in d.models:
                self.by_juris_model[(d.jurisdiction, m)].append(d)

    def build(self, reuse: PerKey | None, stale: set[tuple[str, str | None]]) -> Compiled:
        """Every key's timeline; with ``reuse``, keys not in ``stale`` are taken from it."""
        fleet = self.fleet
        by_model: PerKey = {}
        key_governing: dict[str, dict[str | None, frozenset[str]]] = {}
        for m in fleet.models:
            per_home: dict[str | None, Timeline] = {}
            governing: dict[str | None, frozenset[str]] = {}
            for h, r3 in self.homes.items():
                candidates = self.placeable[m] & r3
                governing[h] = frozenset(j for s in candidates for j in fleet.sites[s].governing)
                if reuse is not None and (m, h) not in stale:
                    per_home[h] = reuse[m][h]
                else:
                    per_home[h] = self.timeline(m, h, candidates, governing[h])
            by_model[m] = per_home
            key_governing[m] = governing
        return Compiled(by_model, key_governing)

    def timeline(
        self, model_id: str, home: str | None, candidates: frozenset[str], governing: frozenset[str]
    ) -> Timeline:
        fleet = self.fleet
        ordered = order_route(fleet, candidates, home)
        home_countries = fleet.jurisdictions[home].countries if home is not None else None
        # Directives that can change this key: they name the model, their jurisdiction governs
        # a candidate site, and (for a suspension) some resident of the home can match. A
        # lift names no model: it only ends what it supersedes (the epoch index's intervals).
        relevant: dict[str, Directive] = {}
        audiences: dict[str, Predicates] = {}
        for j in governing:
            for d in (
                *self.by_juris_model.get((j, model_id), ()),
                *self.by_juris_model.get((j, ALL_MODELS), ()),
            ):
                if d.action is not Action.SUSPEND and d.action is not Action.WITHDRAW:
                    continue
                if d.action is Action.SUSPEND:
                    audience = compile_audience(d, home_countries)
                    if audience is None:
                        continue
                    audiences[d.id] = audience
                relevant[d.id] = d
        if not relevant:
            return (), (ordered,)
        sites = fleet.sites
        governed = {
            j: frozenset(s for s in ordered if j in sites[s].governing)
            for j in {d.jurisdiction for d in relevant.values()}
        }
        spans = sorted(
            (
                _Span(
                    *self.intervals[d.id], d, d.action is Action.SUSPEND, governed[d.jurisdiction]
                )
                for d in relevant.values()
            ),
            key=lambda x: x.start,
        )
        points: set[datetime] = set()
        for span in spans:
            points.add(span.start)
            if span.end is not None:
                points.add(span.end)
        # A suspension's matcher against the full candidate list, reused while nothing is
        # withdrawn (the common case); with withdrawals in force it is built per base.
        plain = {
            s.directive.id: Matcher(*audiences[s.directive.id], s.governed)
            for s in spans
            if s.suspends
        }
        per_base: dict[tuple[str, tuple[str, ...]], Matcher | None] = {}
        raw: list[RawEntry] = [RawEntry(ordered, ())]  # before the first instant: nothing
        bounds: list[datetime] = []
        active: list[_Span] = []
        upcoming = 0
        for t in sorted(points):
            active = [x for x in active if x.end is None or t < x.end]
            while upcoming < len(spans) and spans[upcoming].start <= t:
                active.append(spans[upcoming])
                upcoming += 1
            withdrawn: frozenset[str] | None = None
            for x in active:
                if not x.suspends:
                    withdrawn = x.governed if withdrawn is None else withdrawn | x.governed
            if withdrawn is None:
                entry = RawEntry(
                    ordered, tuple(plain[x.directive.id] for x in active if x.suspends)
                )
            else:
                entry = _withdrawn_entry(ordered, withdrawn, active, audiences, per_base)
            if entry == raw[-1]:
                continue  # nothing this key can see changed at t
            bounds.append(t)
            raw.append(entry)
        return tuple(bounds), tuple(finish(e) for e in raw)


def _withdrawn_entry(
    ordered: tuple[str, ...],
    withdrawn: frozenset[str],
    active: list[_Span],
    audiences: dict[str, Predicates],
    cache: dict[tuple[str, tuple[str, ...]], Matcher | None],
) -> RawEntry:
    base = tuple(s for s in ordered if s not in withdrawn)
    matchers: list[Matcher] = []
    for span in active:
        if not span.suspends:
            continue
        key = (span.directive.id, base)
        if key not in cache:
            removed = span.governed - withdrawn
            cache[key] = Matcher(*audiences[span.directive.id], removed) if removed else None
        matcher = cache[key]
        if matcher is not None:
            matchers.append(matcher)
    return RawEntry(base, tuple(matchers))


def compile_audience(d: Directive, home_countries: frozenset[str] | None) -> Predicates | None:
    """The audience as match-time predicates; residency predicates that are settled for every
    resident of the home are dropped (always true) or rule the suspension out (None)."""
    a = d.audience
    res_in, res_not_in = a.residency_in, a.residency_not_in
    if home_countries is not None:
        if res_in is not None:
            if home_countries.isdisjoint(res_in):
                return None
            if home_countries <= res_in:
                res_in = None
        if res_not_in is not None:
            if home_countries <= res_not_in:
                return None
            if home_countries.isdisjoint(res_not_in):
                res_not_in = None
    return Predicates(a.except_groups, a.nationality_in, a.nationality_not_in, res_in, res_not_in)


def same_geography(old: Fleet, new: Fleet) -> bool:
    """Everything but the directives is unchanged, so unreached keys can be reused."""
    return (
        old.jurisdictions == new.jurisdictions
        and old.sites == new.sites
        and old.models == new.models
        and old.settings == new.settings
        and old.country_home == new.country_home
    )


def changed_directives(old: Fleet, new: Fleet) -> list[Directive]:
    """Directives added, removed or changed, in both versions, plus those whose supersession
    changed because a replacement came or went."""
    changed: list[Directive] = []
    for did in old.directives.keys() | new.directives.keys():
        before, after = old.directives.get(did), new.directives.get(did)
        if before == after:
            continue
        for d in (before, after):
            if d is None:
                continue
            changed.append(d)
            if d.supersedes:
                for fleet in (old, new):
                    replaced = fleet.directives.get(d.supersedes)
                    if replaced is not None:
                        changed.append(replaced)
    return changed


def reached_keys(
    governing: Governing, directives: Iterable[Directive]
) -> set[tuple[str, str | None]]:
    """The (model, home) keys whose candidate sites a directive's jurisdiction governs."""
    keys: set[tuple[str, str | None]] = set()
    for d in directives:
        models = governing.keys() if ALL_MODELS in d.models else d.models & governing.keys()
        for m in models:
            for h, gov in governing[m].items():
                if d.jurisdiction in gov:
                    keys.add((m, h))
    return keys
