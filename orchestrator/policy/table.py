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

A query at an instant inside the *current window* (the interval between two directive instants
that holds the latest instant asked about: "now" for the gateway) finds its entry in a
flattened model -> residency map; other instants pick the key's interval with ``bisect``. The
entry's suspensions are not tested one by one: the entry's bit tables (built on first use) turn
the principal's nationalities, groups and residency into the set of suspensions that match them
with one dict lookup each, and the route per such set is memoised (a bounded memo per entry).
An interval no suspension can change holds its route tuple directly. Epochs are kept per key
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
from datetime import UTC, datetime

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
_RawEntry = tuple[tuple[str, ...], tuple[_Suspension, ...]]
# One distinct suspension of an entry: its audience and the sites it removes.
_Matcher = tuple[
    frozenset[str],
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str],
]
# An entry's suspensions as bit tables (bit i = matcher i), see ``_Entry``:
# (every bit, bits without nationality_in, shift, by nationality, by group, by residency or
#  None, residency default, the entry's base route, the route when every suspension matches,
#  its route memo, sites removed per bit); the routes ride along so the hot path reads one tuple
_Plan = tuple[
    int,
    int,
    int,
    dict[str, int],
    dict[str, int],
    dict[str, int] | None,
    int,
    tuple[str, ...],
    tuple[str, ...],
    dict[int, tuple[str, ...]],
    tuple[frozenset[str], ...],
]
# Routes memoised per entry: one per class of principal that occurs, capped (see _Entry.miss)
_MEMO_CAP = 256


class _Entry:
    """An interval of a key with suspensions in force that could remove sites.

    A principal's class for the entry is the set of its suspensions that match them. It is
    computed from bit tables rather than by testing each audience: for each nationality the
    suspensions whose ``nationality_in`` names it (low bits) and whose ``nationality_not_in``
    names it (high bits, ``shift`` up); for each group the suspensions it does NOT exempt; for
    each residency named by a residency predicate the suspensions it passes. The tables are
    built on first use (``plan`` None until then), so compiling stays proportional to the
    directives and only entries that are queried pay for them. The route per class is
    memoised in ``routes``, at most ``_MEMO_CAP`` classes per entry (entries belong to one
    epoch of one key, so memory is bounded by the compiled table's size times the cap).
    """

    __slots__ = ("base", "by_residency", "matchers", "plan", "routes")

    def __init__(self, base: tuple[str, ...], matchers: tuple[_Matcher, ...]) -> None:
        self.base = base
        self.matchers = matchers
        self.by_residency = any(m[3] is not None or m[4] is not None for m in matchers)
        self.plan: _Plan | None = None
        self.routes: dict[int, tuple[str, ...]] = {}

    def build_plan(self) -> _Plan:
        everyone = (1 << len(self.matchers)) - 1
        shift = len(self.matchers)
        no_nat_in = 0
        by_nat: dict[str, int] = {}
        exempted: dict[str, int] = {}
        res_named: set[str] = set()
        res_default = 0
        for i, (exempt, nat_in, nat_not_in, res_in, res_not_in, _) in enumerate(self.matchers):
            bit = 1 << i
            if nat_in is None:
                no_nat_in |= bit
            else:
                for n in nat_in:
                    by_nat[n] = by_nat.get(n, 0) | bit
            if nat_not_in is not None:
                for n in nat_not_in:
                    by_nat[n] = by_nat.get(n, 0) | bit << shift
            for g in exempt:
                exempted[g] = exempted.get(g, 0) | bit
            if res_in is None:
                res_default |= bit  # a residency no predicate names passes residency_not_in
            else:
                res_named |= res_in
            if res_not_in is not None:
                res_named |= res_not_in
        by_group = {g: everyone & ~bits for g, bits in exempted.items()}
        by_res: dict[str, int] | None = None
        if res_named:
            by_res = {
                r: sum(
                    1 << i
                    for i, m in enumerate(self.matchers)
                    if (m[3] is None or r in m[3]) and (m[4] is None or r not in m[4])
                )
                for r in res_named
            }
        removes = tuple(m[5] for m in self.matchers)
        every_site = frozenset[str]().union(*removes)
        when_all = tuple(s for s in self.base if s not in every_site)
        plan = (
            everyone,
            no_nat_in,
            shift,
            by_nat,
            by_group,
            by_res,
            res_default,
            self.base,
            when_all,
            self.routes,
            removes,
        )
        self.plan = plan  # idempotent: threads racing here store equal plans
        return plan

    def miss(self, matched: int, removes: tuple[frozenset[str], ...]) -> tuple[str, ...]:
        """The route when exactly the suspensions in ``matched`` match; memoised."""
        removed: set[str] = set()
        for i, sites in enumerate(removes):
            if matched >> i & 1:
                removed |= sites
        found = tuple(s for s in self.base if s not in removed)
        if len(self.routes) < _MEMO_CAP:
            self.routes[matched] = found
        return found


def _at_residency(slot: _Slot, residency: str) -> _Slot:
    """``slot`` as seen by residents of one country: suspensions whose residency predicates
    exclude it dropped, the others' residency predicates settled (the current window is
    flattened per country, so the hot path never tests residency there). Cheap, and only
    entries that kept residency predicates are copied (their memo restarts each window)."""
    if isinstance(slot, tuple) or not slot.by_residency:
        return slot
    kept = tuple(
        (m[0], m[1], m[2], None, None, m[5])
        for m in slot.matchers
        if (m[3] is None or residency in m[3]) and (m[4] is None or residency not in m[4])
    )
    return _Entry(slot.base, tuple(dict.fromkeys(kept))) if kept else slot.base


# What a key holds for one interval: the route itself when no suspension can change it
_Slot = tuple[str, ...] | _Entry
# (interval start instants, slots): slots[bisect_right(bounds, at)] is in force at ``at``
_Timeline = tuple[tuple[datetime, ...], tuple[_Slot, ...]]


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


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


class RouteTable:
    """SPEC 2 routes for a whole fleet, compiled once; ``route`` is the hot path.

    ``RouteTable.compile(fleet).route(model_id, principal, at)`` returns the site ids allowed
    by R0-R5 in SPEC order (empty = refused), and agrees with ``rules.route`` on every query.
    ``at`` must be timezone-aware (directive instants are UTC).
    """

    __slots__ = (
        "_by_model",
        "_changes",
        "_key_governing",
        "_routes",
        "_window",
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
        # The hot path looks up (model, residency) directly: each residency country aliases its
        # home's timeline, and the key None holds the unlisted home (only under `any`; under
        # `deny` an unlisted residency finds nothing and is refused, R0).
        self._routes: dict[str, dict[str | None, _Timeline]] = {}
        for m, per_home in by_model.items():
            per_country: dict[str | None, _Timeline] = {
                c: per_home[h] for c, h in fleet.country_home.items() if h in per_home
            }
            if None in per_home:
                per_country[None] = per_home[None]
            self._routes[m] = per_country
        instants: set[datetime] = set()
        for d in fleet.directives.values():
            instants.add(d.effective)
            if d.expires is not None:
                instants.add(d.expires)
        self._changes: tuple[datetime, ...] = tuple(sorted(instants))
        # The epoch of the latest instant asked about, flattened to model -> residency ->
        # entry: no key changes inside [start, end), so queries at "now" (the gateway's case)
        # skip the per-key bisect. Replaced as one tuple, so readers in other threads see
        # either the old or the new window, never a mix.
        self._window: tuple[datetime, datetime, dict[str, dict[str | None, _Slot]]] = (
            _LATEST,
            _EARLIEST,
            {},  # empty: the first query advances it
        )

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
        start, end, flat = self._window
        if start <= at < end:
            entries_by_country = flat.get(model_id)
            if entries_by_country is None:
                return ()  # unknown model: fail closed
            entry = entries_by_country.get(principal.residency)
            if entry is None:
                entry = entries_by_country.get(None)
                if entry is None:
                    return ()  # unlisted residency under `deny` (R0)
        else:
            if at >= end:
                self._advance(at)
            routes = self._routes.get(model_id)
            if routes is None:
                return ()
            timeline = routes.get(principal.residency)
            if timeline is None:
                timeline = routes.get(None)
                if timeline is None:
                    return ()
            bounds, entries = timeline
            entry = entries[bisect_right(bounds, at)] if bounds else entries[0]
        if isinstance(entry, tuple):
            return entry  # no suspension can remove a site here
        plan = entry.plan
        if plan is None:
            plan = entry.build_plan()
        (
            everyone,
            no_nat_in,
            shift,
            by_nat,
            by_group,
            by_res,
            res_default,
            base,
            when_all,
            memo,
            removes,
        ) = plan
        # Which suspensions match, as bits; same predicates as rules.audience_matches.
        nats = principal.nationalities
        if nats:
            seen = 0
            for n in nats:
                seen |= by_nat.get(n, 0)
            # nationality_in: some nationality named (or none given); nationality_not_in:
            # none named. Unknown nationality (no nats) matches both: fail closed.
            matched = (no_nat_in | seen) & ~(seen >> shift) & everyone
        else:
            matched = everyone
        if by_res is not None:
            matched &= by_res.get(principal.residency, res_default)
        groups = principal.groups
        if groups and matched:
            for g in groups:
                matched &= by_group.get(g, everyone)
        if matched == everyone:
            return when_all  # e.g. unknown nationality and no exemption
        if not matched:
            return base
        found = memo.get(matched)
        if found is None:
            found = entry.miss(matched, removes)
        return found

    def _advance(self, at: datetime) -> None:
        """Flatten the epoch holding ``at`` (time moved past the current window)."""
        i = bisect_right(self._changes, at)
        start = self._changes[i - 1] if i > 0 else _EARLIEST
        end = self._changes[i] if i < len(self._changes) else _LATEST
        flat: dict[str, dict[str | None, _Slot]] = {}
        for m, per_home in self._by_model.items():
            now: dict[str | None, _Slot] = {}
            for h, (bounds, entries) in per_home.items():
                now[h] = entries[bisect_right(bounds, at)] if bounds else entries[0]
            flat[m] = {
                c: _at_residency(now[h], c) for c, h in self.fleet.country_home.items() if h in now
            }
            if None in now:
                flat[m][None] = now[None]
        self._window = (start, end, flat)

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
                governing[h] = frozenset(j for s in candidates for j in fleet.sites[s].governing)
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
        home_countries = fleet.jurisdictions[home].countries if home is not None else None
        # Directives that can change this key: they name the model, their jurisdiction governs
        # a candidate site, and (for a suspension) some resident of the home can match.
        relevant: dict[str, Directive] = {}
        audiences: dict[str, _Audience] = {}
        for j in governing:
            for d in (
                *self.by_juris_model.get((j, model_id), ()),
                *self.by_juris_model.get((j, ALL_MODELS), ()),
            ):
                if d.action is Action.SUSPEND:
                    audience = _compile_audience(d, home_countries)
                    if audience is None:
                        continue
                    audiences[d.id] = audience
                relevant[d.id] = d
        if not relevant:
            return ((), (ordered,))
        sites = fleet.sites
        governed = {
            j: frozenset(s for s in ordered if j in sites[s].governing)
            for j in {d.jurisdiction for d in relevant.values()}
        }
        # (start, end, directive, suspends?, candidate sites its jurisdiction governs)
        spans = sorted(
            (
                (*self.intervals[d.id], d, d.action is Action.SUSPEND, governed[d.jurisdiction])
                for d in relevant.values()
            ),
            key=lambda x: x[0],
        )
        points: set[datetime] = set()
        for start, end, *_ in spans:
            points.add(start)
            if end is not None:
                points.add(end)
        # A suspension compiled against the full candidate list, reused while nothing is
        # withdrawn (the common case); with withdrawals in force it is compiled per base.
        plain: dict[str, _Suspension] = {}
        for _, _, d, suspends, sites_of in spans:
            if suspends:
                without = tuple(s for s in ordered if s not in sites_of)
                plain[d.id] = (*audiences[d.id], sites_of, without, d.id)
        per_base: dict[tuple[str, tuple[str, ...]], _Suspension | None] = {}
        raw: list[_RawEntry] = [(ordered, ())]  # before the first instant nothing reaches it
        bounds: list[datetime] = []
        active: list[tuple[datetime, datetime | None, Directive, bool, frozenset[str]]] = []
        upcoming = 0
        for t in sorted(points):
            active = [x for x in active if x[1] is None or t < x[1]]
            while upcoming < len(spans) and spans[upcoming][0] <= t:
                active.append(spans[upcoming])
                upcoming += 1
            withdrawn: frozenset[str] | None = None
            for x in active:
                if not x[3]:
                    withdrawn = x[4] if withdrawn is None else withdrawn | x[4]
            if withdrawn is None:
                entry: _RawEntry = (ordered, tuple(plain[x[2].id] for x in active if x[3]))
            else:
                entry = self._withdrawn_entry(ordered, withdrawn, active, audiences, per_base)
            if entry == raw[-1]:
                continue  # nothing this key can see changed at t
            bounds.append(t)
            raw.append(entry)
        return tuple(bounds), tuple(_finish(e) for e in raw)

    @staticmethod
    def _withdrawn_entry(
        ordered: tuple[str, ...],
        withdrawn: frozenset[str],
        active: list[tuple[datetime, datetime | None, Directive, bool, frozenset[str]]],
        audiences: dict[str, _Audience],
        cache: dict[tuple[str, tuple[str, ...]], _Suspension | None],
    ) -> _RawEntry:
        base = tuple(s for s in ordered if s not in withdrawn)
        suspensions: list[_Suspension] = []
        for _, _, d, suspends, sites_of in active:
            if not suspends:
                continue
            key = (d.id, base)
            if key not in cache:
                removed = sites_of - withdrawn
                cache[key] = (
                    (*audiences[d.id], removed, tuple(s for s in base if s not in removed), d.id)
                    if removed
                    else None
                )
            suspension = cache[key]
            if suspension is not None:
                suspensions.append(suspension)
        return base, tuple(suspensions)


def _finish(raw: _RawEntry) -> _Slot:
    """The hot-path form of an interval: the route itself when nothing can change it, else an
    entry with its distinct suspensions (equal audience and removed sites merged)."""
    base, suspensions = raw
    if not suspensions:
        return base
    matchers: dict[_Matcher, None] = {}
    for exempt, nat_in, nat_not_in, res_in, res_not_in, sites, _, _ in suspensions:
        matchers[(exempt, nat_in, nat_not_in, res_in, res_not_in, sites)] = None
    return _Entry(base, tuple(matchers))


_Audience = tuple[
    frozenset[str],
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str] | None,
    frozenset[str] | None,
]


def _compile_audience(d: Directive, home_countries: frozenset[str] | None) -> _Audience | None:
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
