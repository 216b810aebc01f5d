"""Clock-skew tolerance around directive instants: restrictions start early and end late.

A directive takes effect at ``effective`` and ends at ``expires``, to the second. The machine
that carries a change out has a clock that may be off by a few seconds or minutes (NTP
hiccups, a laptop, a container that was paused). Where that matters for the law, Sovereign
judges over the window ``[now - CLOCK_SKEW, now + CLOCK_SKEW]`` instead of the instant ``now``,
and fails closed: a withdraw or a directive protected against rollback counts as in force when
it is in force anywhere in that window. So a withdraw that starts in two minutes already blocks
new placements, and one that ended a minute ago still does, until the window has passed.

``instants_within`` lists the instants at which "in force" must be evaluated so that every
state the window spans is seen: the window's start and every epoch boundary inside it (the set
of directives in force only changes at those instants; they come from ``policy.epochs``).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta

from orchestrator.fleet.model import Fleet
from orchestrator.policy.epochs import EpochIndex

__all__ = ["CLOCK_SKEW", "instants_within"]

CLOCK_SKEW = timedelta(minutes=5)


def instants_within(
    fleet: Fleet, at: datetime, skew: timedelta = CLOCK_SKEW, epochs: EpochIndex | None = None
) -> tuple[datetime, ...]:
    """Instants that see every 'directives in force' state of ``[at - skew, at + skew]``: its
    start and the epoch index's instants inside it (``epochs``: the fleet's index, if held)."""
    start, end = at - skew, at + skew
    instants = (epochs if epochs is not None else EpochIndex(fleet)).instants
    return (start, *instants[bisect_right(instants, start) : bisect_right(instants, end)])
