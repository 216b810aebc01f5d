"""The epoch index: when each directive is in force, and which directives are in force when.

docs/decisions.md ("In force"): a directive is in force when ``effective <= t < expires`` and no
directive that supersedes it has ``effective <= t``. So each directive that is ever in force is in
force over one half-open interval ``[start, end)``, and the set in force changes only at those
interval bounds. The instants cut time into *epochs*; inside one epoch every "in force at t" answer
is the same. This module is the one place that computes it: the reference rules
(``rules.decide``), the compiled route table (its per-key timelines and its current window),
``Explainer``, desired state, DNS records and ``impact`` all read the same index.

The per-epoch directive tuples are built on first use and memoised (a bounded memo): a fleet
with 10,000 directives has ~20,000 epochs, and holding every epoch's set eagerly would cost
memory quadratic in the directives for answers most runs never ask for.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

from orchestrator.fleet.model import Directive, Fleet

# Epochs whose in-force tuple is memoised at once (queries cluster around "now" and a plan's
# instant, so a few suffice; the cap keeps a scan over every epoch from holding them all).
_MEMO_CAP = 64

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


class Timed(Protocol):
    """What "in force" reads of a directive: a fleet's ``Directive``, or a directive the
    state recorded as applied (``state.base.AppliedDirective``, rollback protection)."""

    @property
    def id(self) -> str: ...
    @property
    def jurisdiction(self) -> str: ...
    @property
    def effective(self) -> datetime: ...
    @property
    def expires(self) -> datetime | None: ...
    @property
    def supersedes(self) -> str | None: ...


def intervals_of(directives: Iterable[Timed]) -> dict[str, tuple[datetime, datetime | None]]:
    """For every directive that is ever in force, the half-open interval ``[start, end)`` in
    which it is (``end`` None: open-ended). ``end`` is the earlier of its expiry and its
    earliest replacement's effective instant (a replacement stays one after it expires); only
    a directive of the same jurisdiction replaces one (the loader guarantees it for a fleet;
    records of a state are held to it here)."""
    items = list(directives)
    jurisdiction = {d.id: d.jurisdiction for d in items}
    replaced_at: dict[str, datetime] = {}
    for d in items:
        if d.supersedes and jurisdiction.get(d.supersedes, d.jurisdiction) == d.jurisdiction:
            prev = replaced_at.get(d.supersedes)
            if prev is None or d.effective < prev:
                replaced_at[d.supersedes] = d.effective
    out: dict[str, tuple[datetime, datetime | None]] = {}
    for d in items:
        end = d.expires
        cut = replaced_at.get(d.id)
        if cut is not None and (end is None or cut < end):
            end = cut
        if end is not None and end <= d.effective:
            continue  # never in force
        out[d.id] = (d.effective, end)
    return out


def active_intervals(fleet: Fleet) -> dict[str, tuple[datetime, datetime | None]]:
    """``intervals_of`` the fleet's directives."""
    return intervals_of(fleet.directives.values())


def binds_at_or_after(interval: tuple[datetime, datetime | None], t: datetime) -> bool:
    """Whether a directive with this interval is in force at ``t`` or at some later instant:
    in force now, or not yet effective (rollback protection until expiry)."""
    end = interval[1]
    return end is None or t < end


class EpochIndex:
    """The directive epochs of one fleet.

    ``instants`` are the sorted bounds at which the set in force changes; epoch ``i`` (see
    ``epoch``) is ``[instants[i-1], instants[i])``, epoch 0 starting at the beginning of time.
    ``in_force(at)`` is the directives in force at ``at``, sorted by id (the order reasons are
    reported in). ``at`` must be timezone-aware.
    """

    __slots__ = ("_lock", "_memo", "directives", "instants", "intervals")

    def __init__(self, fleet: Fleet) -> None:
        self.intervals = active_intervals(fleet)
        self.directives: dict[str, Directive] = {
            did: fleet.directives[did] for did in sorted(self.intervals)
        }
        bounds: set[datetime] = set()
        for start, end in self.intervals.values():
            bounds.add(start)
            if end is not None:
                bounds.add(end)
        self.instants: tuple[datetime, ...] = tuple(sorted(bounds))
        self._memo: dict[int, tuple[Directive, ...]] = {}
        self._lock = threading.Lock()

    def epoch(self, at: datetime) -> int:
        """The number of the epoch holding ``at``."""
        return bisect_right(self.instants, at)

    def window(self, at: datetime) -> tuple[datetime, datetime]:
        """``[start, end)`` of the epoch holding ``at`` (EARLIEST / LATEST at the ends)."""
        i = bisect_right(self.instants, at)
        start = self.instants[i - 1] if i > 0 else EARLIEST
        end = self.instants[i] if i < len(self.instants) else LATEST
        return start, end

    def in_force(self, at: datetime) -> tuple[Directive, ...]:
        """Directives in force at ``at``, sorted by id."""
        i = bisect_right(self.instants, at)
        found = self._memo.get(i)
        if found is None:
            # Any instant of the epoch gives the same answer; use its start (or ``at`` in
            # epoch 0, where nothing has started yet).
            t = self.instants[i - 1] if i > 0 else at
            found = tuple(d for did, d in self.directives.items() if _holds(self.intervals[did], t))
            with self._lock:
                if len(self._memo) >= _MEMO_CAP:
                    self._memo.clear()
                self._memo[i] = found
        return found


def _holds(interval: tuple[datetime, datetime | None], t: datetime) -> bool:
    start, end = interval
    return start <= t and (end is None or t < end)


def in_force(fleet: Fleet, at: datetime) -> tuple[Directive, ...]:
    """Directives of ``fleet`` in force at ``at``, sorted by id: a one-off question (the same
    intervals as the index, without sorting every instant). Code that asks about many
    instants, or many models at one instant, keeps an ``EpochIndex``."""
    found = [fleet.directives[did] for did, iv in active_intervals(fleet).items() if _holds(iv, at)]
    found.sort(key=lambda d: d.id)
    return tuple(found)
