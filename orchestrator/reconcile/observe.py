"""Actual state: what the providers report the sites hold, plus the published routing table.

The I/O beside planning, which stays pure (a function of desired and actual): it lives here,
in reconcile, with the sessions that call it. Every site is observed through its own provider (or,
with ``--sites local``, through the local provider with offline artifacts), concurrently because
cloud observation is network-bound. The routing table's actual value is the digest of the
fleet the state recorded as applied. A site that cannot be observed is never planned against
an unknown actual state (that could delete or duplicate things): ``reconcile.session``
observes site by site, plans every other site and records that one as unobservable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.fleet.model import Fleet, Site
from orchestrator.planning.desired import table_resource
from orchestrator.planning.engine import provider_for
from orchestrator.providers import create_provider
from orchestrator.providers.base import (
    Provider,
    ProviderContext,
    Resource,
    RouteProvider,
)
from orchestrator.state.base import StateReader

# pseudo-target prefix -> provider that owns such ROUTE resources
ROUTE_PROVIDERS: dict[str, str] = {"dns": "route53"}


@dataclass
class Providers:
    """The provider for each site and for each fleet-wide route target, created once per run."""

    context: ProviderContext
    sites_local: bool = False
    engine: str = "builtin"  # "pulumi": aws and gcp sites go to their jurisdiction's stack
    _by_name: dict[str, Provider | RouteProvider] = field(default_factory=dict)
    # Sites are observed and applied from worker threads: create each provider once.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_fleet(
        cls,
        fleet: Fleet,
        fleet_dir: Path,
        *,
        sites_local: bool,
        engine: str = "builtin",
        engine_options: Mapping[str, str] | None = None,
    ) -> Providers:
        context = ProviderContext(
            state_dir=fleet_dir / ".sovereign",
            models=dict(fleet.models),
            offline_artifacts=sites_local,
            options={"fleet_dir": str(fleet_dir), **(engine_options or {})},
        )
        return cls(context, sites_local, engine)

    def _named(self, name: str) -> Provider | RouteProvider:
        with self._lock:
            if name not in self._by_name:
                self._by_name[name] = create_provider(name, self.context)
            return self._by_name[name]

    def for_site(self, fleet: Fleet, site_id: str) -> Provider:
        return self.for_site_value(fleet.sites[site_id])

    def for_site_value(self, site: Site) -> Provider:
        """The provider of ``site``, also of a site that has left the fleet."""
        name = "local" if self.sites_local else provider_for(self.engine, site.provider)
        provider = self._named(name)
        assert isinstance(provider, Provider), f"provider {name} cannot hold sites"
        return provider

    def for_route(self, target: str) -> RouteProvider:
        prefix = target.partition(":")[0]
        name = ROUTE_PROVIDERS.get(prefix, prefix)
        provider = self._named(name)
        assert isinstance(provider, RouteProvider), f"provider {name} cannot hold routes"
        return provider


def applied_table(store: StateReader) -> frozenset[Resource]:
    applied = store.applied_fleet()
    if applied is None:
        return frozenset()
    return frozenset({table_resource(applied.digest)})


def observe_sites(
    fleet: Fleet,
    providers: Providers,
    *,
    concurrency: int = 8,
    site_ids: Iterable[str] | None = None,
) -> frozenset[Resource]:
    """What every site (or every one of ``site_ids``) holds now, observed concurrently."""
    site_ids = sorted(fleet.sites if site_ids is None else site_ids)

    def one(site_id: str) -> frozenset[Resource]:
        return providers.for_site(fleet, site_id).observe(fleet.sites[site_id])

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(site_ids) or 1))) as pool:
        results = list(pool.map(one, site_ids))
    found: set[Resource] = set()
    for r in results:
        found |= r
    return frozenset(found)
