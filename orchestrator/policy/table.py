"""The compiled route table: SPEC 2 answered with a few dict lookups per request.

``rules`` decides one (model, site, principal, time) at a time and re-derives everything on
every call; the gateway cannot afford that. Almost all of a decision depends only on the model
and the principal's home jurisdiction (R0-R3), and directives change only at their effective
and expiry instants (supersession takes hold at the replacement's effective instant). So the
fleet is compiled once:

* per ``(model, home)`` key (home is a jurisdiction id, or ``None`` for unlisted countries
  under ``unlisted_countries: any``) the candidate sites passing R1-R3, in route order;
* per key a *timeline*: the instants at which a directive reaching that key starts or stops
  being in force, and for each interval between them an entry holding the sites that survive
  R4 (withdrawals) plus the suspensions in force that could remove sites, their audiences
  precompiled to frozensets and residency predicates pre-simplified against the home.

A query picks the key's interval with ``bisect`` (most keys have a single interval) and filters
the base sites by the suspensions whose audience matches the principal. Epochs are kept per key
rather than globally: a global epoch list for 10,000 directives would hold 20,000 copies of
every key, while per key the work and memory are proportional to the directives that reach it.
For the same reason recompiling after a directive change (``compile(fleet, previous=table)``)
rebuilds only the keys a changed directive reaches and reuses the others by identity.

Fail-closed choices: an unknown model, or a residency outside every jurisdiction under
``unlisted_countries: deny``, routes nowhere (empty tuple = refused).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

from orchestrator.fleet.model import ALL_MODELS, Action, Directive, Fleet, Unlisted
from orchestrator.policy.principal import Principal
from orchestrator.policy.rules import export_allowed, offered, order_route

# One precompiled suspension, as a plain tuple to keep the hot path free of attribute lookups:
# (except_groups, nationality_in, nationality_not_in, residency_in, residency_not_in,
#  removed site ids, base minus removed (the route when only this one matches), directive id)
_Suspension = tuple[
    frozenset[str],
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str],
    tuple[str, ...],
    str,
]
# (sites allowed by R0-R4 in route order, suspensions in force that could remove some of them)
_Entry = tuple[tuple[str, ...], tuple[_Suspension, ...]]
# (interval start instants, entries): entries[bisect_right(bounds, at)] is in force at ``at``
_Timeline = tuple[tuple[datetime, ...], tuple[_Entry, ...]]

# Home key for residencies outside every jurisdiction when unlisted countries are denied: it is
# never a key of the table, so such principals route nowhere (R0).
_DENIED: Final = "\x00denied"


def active_intervals(fleet: Fleet) -> dict[str, tuple[datetime, datetime | None]]:
    """For every directive that is ever in force, the half-open interval ``[start, end)`` in
    which it is (``end`` None: open-ended). A directive is in force when effective <= t <
    expires and no directive superseding it is effective yet, so ``end`` is the earlier of its
    expiry and its earliest replacement's effective instant."""
    replaced_at: dict[str, datetime] = {}
    for d in fleet.directives.values():
        if d.supersedes:
            prev = replaced_at.get(d.supersedes)
            if prev is None or d.effective < prev:
                replaced_at[d.supersedes] = d.effective
    out: dict[str, tuple[datetime, datetime | None]] = {}
    for d in fleet.directives.values():
        end = d.expires
        cut = replaced_at.get(d.id)
        if cut is not None and (end is None or cut < end):
            end = cut
        if end is not None and end <= d.effective:
            continue  # never in force
        out[d.id] = (d.effective, end)
    return out


def fleet_version(fleet: Fleet) -> str:
    """A stable short id of the compiled fleet (for X-Sovereign-Table and logs)."""
    if fleet.digest:
        basis = fleet.digest
    else:  # fleets built in memory (tests) carry no file digest: hash their content instead
        basis = repr(
            (
                sorted(fleet.jurisdictions.items()),
                sorted(fleet.sites.items()),
                sorted(fleet.models.items()),
                sorted(fleet.directives.items()),
                fleet.settings,
            )
        )
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


class RouteTable:
    """SPEC 2 routes for a whole fleet, compiled once; ``route`` is the hot path.

    ``RouteTable.compile(fleet).route(model_id, principal, at)`` returns the site ids allowed
    by R0-R5 in SPEC order (empty = refused), and agrees with ``rules.route`` on every query.
    ``at`` must be timezone-aware (directive instants are UTC).
    """

    __slots__ = (
        "_by_model",
        "_changes",
        "_home_key",
        "_key_governing",
        "_unlisted_key",
        "fleet",
        "version",
    )

    def __init__(
        self,
        fleet: Fleet,
        by_model: dict[str, dict[str | None, _Timeline]],
        key_governing: dict[str, dict[str | None, frozenset[str]]],
    ) -> None:
        self.fleet = fleet
        self.version = fleet_version(fleet)
        self._by_model = by_model
        self._key_governing = key_governing
        self._home_key: dict[str, str | None] = dict(fleet.country_home)
        self._unlisted_key: str | None = (
            None if fleet.settings.unlisted_countries is Unlisted.ANY else _DENIED
        )
        instants: set[datetime] = set()
        for d in fleet.directives.values():
            instants.add(d.effective)
            if d.expires is not None:
                instants.add(d.expires)
        self._changes: tuple[datetime, ...] = tuple(sorted(instants))

    # -- compiling ---------------------------------------------------------------------------

    @classmethod
    def compile(cls, fleet: Fleet, previous: RouteTable | None = None) -> RouteTable:
        """Compile ``fleet``. With ``previous`` (a table of the same fleet before some
        directives were added, changed or removed) only the keys those directives reach are
        rebuilt; every other key's timeline is reused as is."""
        return _Compiler(fleet).build(previous)

    # -- queries -----------------------------------------------------------------------------

    def route(self, model_id: str, principal: Principal, at: datetime) -> tuple[str, ...]:
        """Sites that may serve ``model_id`` to ``principal`` at ``at``, in SPEC 2 order."""
        by_home = self._by_model.get(model_id)
        if by_home is None:
            return ()
        timeline = by_home.get(self._home_key.get(principal.residency, self._unlisted_key))
        if timeline is None:
            return ()
        bounds, entries = timeline
        base, suspensions = entries[bisect_right(bounds, at)] if bounds else entries[0]
        if not suspensions:
            return base
        nats = principal.nationalities
        groups = principal.groups
        residency = principal.residency
        removed: frozenset[str] | None = None
        only: tuple[str, ...] | None = base
        for exempt, nat_in, nat_not_in, res_in, res_not_in, sites, without, _ in suspensions:
            # Same predicates as rules.audience_matches; unknown nationality matches both
            # nationality predicates (fail closed).
            if exempt and not exempt.isdisjoint(groups):
                continue
            if nat_in is not None and nats and nat_in.isdisjoint(nats):
                continue
            if nat_not_in is not None and nats and not nat_not_in.isdisjoint(nats):
                continue
            if res_in is not None and residency not in res_in:
                continue
            if res_not_in is not None and residency in res_not_in:
                continue
            if removed is None:
                removed = sites
                only = without
            else:  # several match: their union is filtered out below
                removed = removed | sites
                only = None
        if removed is None:
            return base
        if only is not None:
            return only
        return tuple(s for s in base if s not in removed)

    def next_change_after(self, at: datetime) -> datetime | None:
        """The next directive effective or expiry instant strictly after ``at``, if any."""
        i = bisect_right(self._changes, at)
        return self._changes[i] if i < len(self._changes) else None

    def models(self) -> tuple[str, ...]:
        return tuple(self._by_model)

    def timeline_of(self, model_id: str, home: str | None) -> object:
        """The compiled timeline object of one key (identity is what reuse tests compare)."""
        return self._by_model[model_id][home]


class _Compiler:
    """Builds the per-key timelines of one fleet."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.intervals = active_intervals(fleet)
        sites = fleet.sites
        # R1 and R2 depend on (model, site) only
        self.placeable: dict[str, frozenset[str]] = {
            m: frozenset(
                s for s in sites if offered(fleet, m, s) and export_allowed(fleet, m, s)
            )
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
        # directives by (jurisdiction, model named), with '*' kept under ALL_MODELS
        self.by_juris_model: dict[tuple[str, str], list[Directive]] = defaultdict(list)
        for d in fleet.directives.values():
            if d.id not in self.intervals:
                continue
            for m in d.models:
                self.by_juris_model[(d.jurisdiction, m)].append(d)

    def build(self, previous: RouteTable | None) -> RouteTable:
        fleet = self.fleet
        reuse: dict[str, dict[str | None, _Timeline]] | None = None
        stale: set[tuple[str, str | None]] = set()
        if previous is not None and _same_geography(previous.fleet, fleet):
            reuse = previous._by_model
            stale = _reached_keys(previous, _changed_directives(previous.fleet, fleet))
        by_model: dict[str, dict[str | None, _Timeline]] = {}
        key_governing: dict[str, dict[str | None, frozenset[str]]] = {}
        for m in fleet.models:
            per_home: dict[str | None, _Timeline] = {}
            governing: dict[str | None, frozenset[str]] = {}
            for h, r3 in self.homes.items():
                candidates = self.placeable[m] & r3
                governing[h] = frozenset(
                    j for s in candidates for j in fleet.sites[s].governing
                )
                if reuse is not None and (m, h) not in stale:
                    per_home[h] = reuse[m][h]
                else:
                    per_home[h] = self.timeline(m, h, candidates, governing[h])
            by_model[m] = per_home
            key_governing[m] = governing
        return RouteTable(fleet, by_model, key_governing)

    def timeline(
        self, model_id: str, home: str | None, candidates: frozenset[str], governing: frozenset[str]
    ) -> _Timeline:
        fleet = self.fleet
        ordered = order_route(fleet, candidates, home)
        relevant: list[Directive] = []
        for j in governing:
            relevant.extend(self.by_juris_model.get((j, model_id), ()))
            relevant.extend(self.by_juris_model.get((j, ALL_MODELS), ()))
        if not relevant:
            return ((), ((ordered, ()),))
        points: set[datetime] = set()
        for d in relevant:
            start, end = self.intervals[d.id]
            points.add(start)
            if end is not None:
                points.add(end)
        bounds = tuple(sorted(points))
        home_countries = fleet.jurisdictions[home].countries if home is not None else None
        entries: list[_Entry] = [(ordered, ())]  # before the first instant nothing reaches it
        spans = [(d, *self.intervals[d.id]) for d in relevant]
        for t in bounds:
            active = [d for d, start, end in spans if start <= t and (end is None or t < end)]
            entries.append(self.entry(ordered, active, home_countries))
        return bounds, tuple(entries)

    def entry(
        self,
        ordered: tuple[str, ...],
        active: Iterable[Directive],
        home_countries: frozenset[str] | None,
    ) -> _Entry:
        sites = self.fleet.sites
        active = sorted(active, key=lambda d: d.id)
        withdrawn = {
            s
            for d in active
            if d.action is Action.WITHDRAW
            for s in ordered
            if d.jurisdiction in sites[s].governing
        }
        base = tuple(s for s in ordered if s not in withdrawn) if withdrawn else ordered
        suspensions: list[_Suspension] = []
        for d in active:
            if d.action is not Action.SUSPEND:
                continue
            removed = frozenset(s for s in base if d.jurisdiction in sites[s].governing)
            if not removed:
                continue
            compiled = _compile_audience(d, home_countries)
            if compiled is None:
                continue  # its residency predicates exclude every resident of this home
            exempt, nat_in, nat_not_in, res_in, res_not_in = compiled
            without = tuple(s for s in base if s not in removed)
            suspensions.append(
                (exempt, nat_in, nat_not_in, res_in, res_not_in, removed, without, d.id)
            )
        return base, tuple(suspensions)


def _compile_audience(
    d: Directive, home_countries: frozenset[str] | None
) -> (
    tuple[
        frozenset[str],
        frozenset[str] | None,
        frozenset[str] | None,
        frozenset[str] | None,
        frozenset[str] | None,
    ]
    | None
):
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
    return a.except_groups, a.nationality_in, a.nationality_not_in, res_in, res_not_in


def _same_geography(old: Fleet, new: Fleet) -> bool:
    """Everything but the directives is unchanged, so unreached keys can be reused."""
    return (
        old.jurisdictions == new.jurisdictions
        and old.sites == new.sites
        and old.models == new.models
        and old.settings == new.settings
        and old.country_home == new.country_home
    )


def _changed_directives(old: Fleet, new: Fleet) -> list[Directive]:
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


def _reached_keys(
    table: RouteTable, directives: Iterable[Directive]
) -> set[tuple[str, str | None]]:
    """The (model, home) keys whose candidate sites a directive's jurisdiction governs."""
    keys: set[tuple[str, str | None]] = set()
    governing: Mapping[str, Mapping[str | None, frozenset[str]]] = table._key_governing
    for d in directives:
        models = governing.keys() if ALL_MODELS in d.models else d.models & governing.keys()
        for m in models:
            for h, gov in governing[m].items():
                if d.jurisdiction in gov:
                    keys.add((m, h))
    return keys
