"""The compiled route table: docs/decisions.md answered with a few dict lookups per request.

``rules`` decides one (model, site, principal, time) at a time and re-derives everything on
every call; the gateway cannot afford that. The fleet is compiled once (``timelines``): per
``(model, home)`` key, the candidate sites passing R1-R3 in route order and a timeline of the
key's directive intervals, each holding the route itself or an ``entries.Entry`` (the route
R0-R4 allow plus the suspensions in force that could remove sites).

A query at an instant inside the *current window* (the directive epoch, from the fleet's
``EpochIndex``, that holds the latest instant asked about: "now" for the gateway) finds its
entry in a flattened model -> residency map; other instants pick the key's interval with
``bisect``. An entry's suspensions are not tested one by one: its bit tables (built on first
use) turn the principal's nationalities, groups and residency into the set of suspensions that
match them with one dict lookup each, and the route per such set is memoised (a bounded memo
per entry). ``compile(fleet, previous=table)`` rebuilds only the keys a changed directive
reaches and reuses the others by identity.

Fail-closed choices: an unknown model, or a residency outside every jurisdiction under
``unlisted_countries: deny``, routes nowhere (empty tuple = refused).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from datetime import datetime

from orchestrator.fleet.model import Fleet
from orchestrator.policy.entries import Slot, Timeline, at_residency
from orchestrator.policy.epochs import EARLIEST, LATEST, EpochIndex
from orchestrator.policy.principal import Principal
from orchestrator.policy.timelines import (
    Compiler,
    PerKey,
    changed_directives,
    reached_keys,
    same_geography,
)


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
    """docs/decisions.md routes for a whole fleet, compiled once; ``route`` is the hot path.

    ``RouteTable.compile(fleet).route(model_id, principal, at)`` returns the site ids allowed
    by R0-R5 in route order (empty = refused), and agrees with ``rules.route`` on every query.
    ``at`` must be timezone-aware (directive instants are UTC).
    """

    __slots__ = (
        "_key_governing",
        "_routes",
        "_window",
        "epochs",
        "fleet",
        "timelines",
        "version",
    )

    def __init__(
        self,
        fleet: Fleet,
        epochs: EpochIndex,
        by_model: PerKey,
        key_governing: dict[str, dict[str | None, frozenset[str]]],
    ) -> None:
        self.fleet = fleet
        self.epochs = epochs  # the fleet's directive epochs, for whoever reads this table
        self.version = fleet_version(fleet)
        # model -> home -> the key's timeline (read, never changed, by compile(previous=))
        self.timelines = by_model
        self._key_governing = key_governing
        # The hot path looks up (model, residency) directly: each residency country aliases its
        # home's timeline, and the key None holds the unlisted home (only under `any`; under
        # `deny` an unlisted residency finds nothing and is refused, R0).
        self._routes: dict[str, dict[str | None, Timeline]] = {}
        for m, per_home in by_model.items():
            per_country: dict[str | None, Timeline] = {
                c: per_home[h] for c, h in fleet.country_home.items() if h in per_home
            }
            if None in per_home:
                per_country[None] = per_home[None]
            self._routes[m] = per_country
        # The epoch of the latest instant asked about, flattened to model -> residency ->
        # entry: no key changes inside [start, end), so queries at "now" (the gateway's case)
        # skip the per-key bisect. Replaced as one tuple, so readers in other threads see
        # either the old or the new window, never a mix.
        self._window: tuple[datetime, datetime, dict[str, dict[str | None, Slot]]] = (
            LATEST,
            EARLIEST,
            {},  # empty: the first query advances it
        )

    # -- compiling ---------------------------------------------------------------------------

    @classmethod
    def compile(cls, fleet: Fleet, previous: RouteTable | None = None) -> RouteTable:
        """Compile ``fleet``. With ``previous`` (a table of the same fleet before some
        directives were added, changed or removed) only the keys those directives reach are
        rebuilt; every other key's timeline is reused as is."""
        epochs = EpochIndex(fleet)
        compiler = Compiler(fleet, epochs)
        if previous is not None and same_geography(previous.fleet, fleet):
            changed = changed_directives(previous.fleet, fleet)
            stale = reached_keys(previous._key_governing, changed)
            compiled = compiler.build(previous.timelines, stale)
        else:
            compiled = compiler.build(None, set())
        return cls(fleet, epochs, compiled.by_model, compiled.governing)

    # -- queries -----------------------------------------------------------------------------

    def route(self, model_id: str, principal: Principal, at: datetime) -> tuple[str, ...]:
        """Sites that may serve ``model_id`` to ``principal`` at ``at``, in docs/decisions.md's
        route order."""
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
        tables = entry.tables
        if tables is None:
            tables = entry.build_tables()
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
        ) = tables
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
        start, end = self.epochs.window(at)
        flat: dict[str, dict[str | None, Slot]] = {}
        for m, per_home in self.timelines.items():
            now: dict[str | None, Slot] = {}
            for h, (bounds, entries) in per_home.items():
                now[h] = entries[bisect_right(bounds, at)] if bounds else entries[0]
            flat[m] = {
                c: at_residency(now[h], c) for c, h in self.fleet.country_home.items() if h in now
            }
            if None in now:
                flat[m][None] = now[None]
        self._window = (start, end, flat)
