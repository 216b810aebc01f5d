"""Which upstream sites look healthy, and in which order to try a route's sites.

Health is an optimisation, never a permission: ``order`` only reorders the sites of a route
(down sites go last, and are still tried when everything else fails); it cannot add a site.
A failure marks a site down for a backoff period that doubles on each consecutive failure up
to a cap; a success clears it. Active probes and real requests feed the same book.

Everything here runs on the gateway's event loop, so no locking is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["HealthBook", "SiteHealth"]


@dataclass
class SiteHealth:
    down_until: float = 0.0  # monotonic seconds; 0 = never failed or cleared
    backoff_s: float = 0.0  # length of the current down period (0 when up)
    consecutive_failures: int = 0
    last_error: str | None = None


class HealthBook:
    """Passive and active health of upstream sites, keyed by site id."""

    def __init__(
        self,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._sites: dict[str, SiteHealth] = {}

    def _entry(self, site_id: str) -> SiteHealth:
        entry = self._sites.get(site_id)
        if entry is None:
            entry = self._sites[site_id] = SiteHealth()
        return entry

    def is_up(self, site_id: str) -> bool:
        entry = self._sites.get(site_id)
        return entry is None or entry.down_until <= self._clock()

    def record_failure(self, site_id: str, error: str) -> float:
        """Mark the site down; returns the backoff applied (doubling up to the cap)."""
        entry = self._entry(site_id)
        entry.consecutive_failures += 1
        if entry.backoff_s <= 0:
            entry.backoff_s = self.base_backoff_s
        else:
            entry.backoff_s = min(self.max_backoff_s, entry.backoff_s * 2)
        entry.down_until = self._clock() + entry.backoff_s
        entry.last_error = error
        return entry.backoff_s

    def record_success(self, site_id: str) -> bool:
        """Clear the site's failures; True when it was marked failing before."""
        entry = self._sites.get(site_id)
        if entry is not None and (entry.consecutive_failures or entry.down_until):
            self._sites[site_id] = SiteHealth()
            return True
        return False

    def order(self, route: Sequence[str]) -> tuple[str, ...]:
        """The route's own sites, up ones first; relative order kept within each group."""
        if not any(s in self._sites for s in route):
            return tuple(route)
        up = [s for s in route if self.is_up(s)]
        if len(up) == len(route):
            return tuple(route)
        down = [s for s in route if not self.is_up(s)]
        return (*up, *down)

    def snapshot(self, sites: Iterable[str]) -> dict[str, dict[str, object]]:
        """Per site: up flag, consecutive failures and last error (for /healthz)."""
        out: dict[str, dict[str, object]] = {}
        now = self._clock()
        for s in sorted(sites):
            entry = self._sites.get(s, SiteHealth())
            up = entry.down_until <= now
            out[s] = {
                "up": up,
                "consecutive_failures": entry.consecutive_failures,
                "last_error": entry.last_error,
                "retry_in_s": 0.0 if up else round(entry.down_until - now, 3),
            }
        return out
