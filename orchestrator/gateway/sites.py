"""Where each site's requests go: its endpoint, an override, or a loopback stub upstream.

docs/gateway.md: a request goes to the site's ``endpoint``; ``local`` sites without one are served
by stub upstreams that the gateway starts on loopback (``orchestrator.stubs``). A local stub serves
only what the local provider deployed under ``<fleet>/.sovereign/sites/<id>`` (fail closed);
``--stub-upstreams`` (development) stubs every site, whatever its endpoint says.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from orchestrator.fleet.model import Fleet, ProviderName
from orchestrator.stubs.upstream import StubServer, start_stub

__all__ = ["SiteUpstreams"]


class SiteUpstreams:
    """Base URL per site for a fleet; owns the stub upstreams it started."""

    def __init__(
        self,
        fleet_dir: Path | None,
        overrides: Mapping[str, str],
        stub_all_sites: bool,
        stub_host: str,
    ) -> None:
        self.fleet_dir = fleet_dir
        self.overrides = overrides
        self.stub_all_sites = stub_all_sites
        self.stub_host = stub_host
        self.stubs: dict[str, StubServer] = {}

    def _site_dir(self, site_id: str) -> Path | None:
        if self.fleet_dir is None:
            return None
        path = self.fleet_dir / ".sovereign" / "sites" / site_id
        if path.is_dir() or not self.stub_all_sites:
            # Fail closed: a local site where nothing was deployed serves nothing. Only the
            # explicit demo/development mode (--stub-upstreams) stubs any model there.
            return path
        return None

    def for_fleet(self, fleet: Fleet) -> dict[str, str]:
        """Base URL per site (no trailing slash); starts the stubs that are missing. Sites
        without an endpoint or stub have no entry: tried and reported, never used."""
        upstreams: dict[str, str] = {}
        for site in fleet.sites.values():
            override = self.overrides.get(site.id)
            if override is not None:
                upstreams[site.id] = override.rstrip("/")
            elif site.endpoint and not self.stub_all_sites:
                upstreams[site.id] = site.endpoint.rstrip("/")
            elif site.provider == ProviderName.LOCAL or self.stub_all_sites:
                stub = self.stubs.get(site.id)
                if stub is None or not stub.running:
                    stub = start_stub(site.id, self.stub_host, site_dir=self._site_dir(site.id))
                    self.stubs[site.id] = stub
                upstreams[site.id] = stub.url
        return upstreams

    def stop_stubs(self) -> list[StubServer]:
        """Forget the stubs and return them, for the caller to stop off the event loop."""
        stubs = list(self.stubs.values())
        self.stubs.clear()
        return stubs
