"""One interval of one route-table key, in the form the gateway's hot path reads.

A key (model, home) holds, per directive epoch, either the route itself (no suspension in force
can remove a site: the common case) or an ``Entry``: the route R0-R4 allow (``base``) and the
distinct suspensions in force that could remove some of its sites (``Matcher``). A principal's
*class* for an entry is the set of its suspensions that match them, computed from bit tables
(``BitTables``, built on first use) with one dict lookup per nationality, group and residency
instead of testing each audience; the route per class is memoised, up to ``MEMO_CAP`` classes
per entry. The records are NamedTuples, built and read by name. The two the hot path unpacks
reach it as exact tuples (``HotTables`` from ``BitTables.hot()``, and ``Timeline``): CPython
unpacks an exact tuple on a fast path and a tuple subclass through the generic iterator, which
costs about 30 ns more for 11 fields, so the names stay here and the gateway pays nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

# Routes memoised per entry: one per class of principal that occurs, capped (see Entry.miss)
MEMO_CAP = 256


class Predicates(NamedTuple):
    """A suspension's audience as match-time predicates (``None``: not constrained); see
    ``rules.audience_matches`` for their meaning."""

    except_groups: frozenset[str]
    nationality_in: frozenset[str] | None
    nationality_not_in: frozenset[str] | None
    residency_in: frozenset[str] | None
    residency_not_in: frozenset[str] | None


class Matcher(NamedTuple):
    """One distinct suspension of an entry: its audience and the sites it removes."""

    except_groups: frozenset[str]
    nationality_in: frozenset[str] | None
    nationality_not_in: frozenset[str] | None
    residency_in: frozenset[str] | None
    residency_not_in: frozenset[str] | None
    removes: frozenset[str]


# BitTables as the hot path unpacks it (same fields, same order, an exact tuple)
HotTables = tuple[
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


class BitTables(NamedTuple):
    """An entry's matchers as bit tables (bit i = matcher i). The routes ride along so the hot
    path reads one tuple."""

    everyone: int  # every bit
    no_nationality_in: int  # matchers without a nationality_in predicate
    shift: int  # nationality_not_in bits sit this far above nationality_in bits
    by_nationality: dict[str, int]
    by_group: dict[str, int]  # the matchers a group does NOT exempt
    by_residency: dict[str, int] | None  # None: no residency predicate left
    residency_default: int  # bits a residency no predicate names passes
    base: tuple[str, ...]  # the route when no matcher matches
    when_all: tuple[str, ...]  # the route when every matcher matches
    routes: dict[int, tuple[str, ...]]  # the entry's route memo, per class
    removes: tuple[frozenset[str], ...]  # sites removed, per bit

    def hot(self) -> HotTables:
        """The same fields as an exact tuple, in order, for ``RouteTable.route`` to unpack."""
        return (
            self.everyone,
            self.no_nationality_in,
            self.shift,
            self.by_nationality,
            self.by_group,
            self.by_residency,
            self.residency_default,
            self.base,
            self.when_all,
            self.routes,
            self.removes,
        )


class Entry:
    """An interval of a key with suspensions in force that could remove sites.

    The bit tables: for each nationality the matchers whose ``nationality_in`` names it (low
    bits) and whose ``nationality_not_in`` names it (high bits, ``shift`` up); for each group
    the matchers it does NOT exempt; for each residency named by a residency predicate the
    matchers it passes. They are built on first use (``tables`` None until then), so compiling
    stays proportional to the directives and only entries that are queried pay for them.
    Entries belong to one epoch of one key, so memory is bounded by the table's size times
    the memo cap.
    """

    __slots__ = ("base", "by_residency", "matchers", "routes", "tables")

    def __init__(self, base: tuple[str, ...], matchers: tuple[Matcher, ...]) -> None:
        self.base = base
        self.matchers = matchers
        self.by_residency = any(
            m.residency_in is not None or m.residency_not_in is not None for m in matchers
        )
        self.tables: HotTables | None = None
        self.routes: dict[int, tuple[str, ...]] = {}

    def build_tables(self) -> HotTables:
        matchers = self.matchers
        everyone = (1 << len(matchers)) - 1
        shift = len(matchers)
        no_nat_in = 0
        by_nat: dict[str, int] = {}
        exempted: dict[str, int] = {}
        res_named: set[str] = set()
        res_default = 0
        for i, m in enumerate(matchers):
            bit = 1 << i
            if m.nationality_in is None:
                no_nat_in |= bit
            else:
                for n in m.nationality_in:
                    by_nat[n] = by_nat.get(n, 0) | bit
            if m.nationality_not_in is not None:
                for n in m.nationality_not_in:
                    by_nat[n] = by_nat.get(n, 0) | bit << shift
            for g in m.except_groups:
                exempted[g] = exempted.get(g, 0) | bit
            if m.residency_in is None:
                res_default |= bit  # a residency no predicate names passes residency_not_in
            else:
                res_named |= m.residency_in
            if m.residency_not_in is not None:
                res_named |= m.residency_not_in
        by_res: dict[str, int] | None = None
        if res_named:
            by_res = {
                r: sum(1 << i for i, m in enumerate(matchers) if _passes_residency(m, r))
                for r in res_named
            }
        removes = tuple(m.removes for m in matchers)
        every_site = frozenset[str]().union(*removes)
        tables = BitTables(
            everyone=everyone,
            no_nationality_in=no_nat_in,
            shift=shift,
            by_nationality=by_nat,
            by_group={g: everyone & ~bits for g, bits in exempted.items()},
            by_residency=by_res,
            residency_default=res_default,
            base=self.base,
            when_all=tuple(s for s in self.base if s not in every_site),
            routes=self.routes,
            removes=removes,
        )
        hot = tables.hot()
        self.tables = hot  # idempotent: threads racing here store equal tables
        return hot

    def miss(self, matched: int, removes: tuple[frozenset[str], ...]) -> tuple[str, ...]:
        """The route when exactly the matchers in ``matched`` match; memoised."""
        removed: set[str] = set()
        for i, sites in enumerate(removes):
            if matched >> i & 1:
                removed |= sites
        found = tuple(s for s in self.base if s not in removed)
        if len(self.routes) < MEMO_CAP:
            self.routes[matched] = found
        return found


# What a key holds for one interval: the route itself when no suspension can change it
Slot = tuple[str, ...] | Entry


# A key's intervals, (bounds, slots): ``slots[bisect_right(bounds, at)]`` is in force at
# ``at``. A plain pair, not a NamedTuple: queries off the current window unpack it.
Timeline = tuple[tuple[datetime, ...], tuple[Slot, ...]]


class RawEntry(NamedTuple):
    """An interval while compiling: the sites R0-R4 allow, in route order, and the matchers
    in force that could remove some of them (equal raw entries in a row are merged)."""

    base: tuple[str, ...]
    matchers: tuple[Matcher, ...]


def _passes_residency(m: Matcher, residency: str) -> bool:
    return (m.residency_in is None or residency in m.residency_in) and (
        m.residency_not_in is None or residency not in m.residency_not_in
    )


def finish(raw: RawEntry) -> Slot:
    """The hot-path form of an interval: the route itself when nothing can change it, else an
    entry with its distinct matchers (equal audience and removed sites merged)."""
    if not raw.matchers:
        return raw.base
    return Entry(raw.base, tuple(dict.fromkeys(raw.matchers)))


def at_residency(slot: Slot, residency: str) -> Slot:
    """``slot`` as seen by residents of one country: matchers whose residency predicates
    exclude it dropped, the others' residency predicates settled (the current window is
    flattened per country, so the hot path never tests residency there). Cheap, and only
    entries that kept residency predicates are copied (their memo restarts each window)."""
    if isinstance(slot, tuple) or not slot.by_residency:
        return slot
    kept = tuple(
        m._replace(residency_in=None, residency_not_in=None)
        for m in slot.matchers
        if _passes_residency(m, residency)
    )
    return Entry(slot.base, tuple(dict.fromkeys(kept))) if kept else slot.base
