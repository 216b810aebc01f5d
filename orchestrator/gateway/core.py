"""What the gateway and ``sovereign authz`` share: one ``Enforcer`` each of them is built on.

An enforcer holds, for one process: the served table (``reload.TableKeeper``: loaded and
verified before the first request, reloaded on the change signal and every interval, swapped as
one reference), who is asking (``authn.Authenticator``), where each site is served (``sites``) and
how healthy it looks (``health``, fed by active ``probes`` and by real requests), metrics, the
access log, the decision log (``decisionlog``) and the background tasks that keep them
current. The gateway adds the model proxy on top (``app.Gateway``); ``sovereign authz`` adds
the decision endpoints for another proxy (``authz.Authz``). Nothing of this is copied between
the two: a directive, a drain, a site's health reach both through the same code
(docs/proxies.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.fleet.model import Fleet
from orchestrator.gateway.authn import Authenticator, KeyBook
from orchestrator.gateway.decisionlog import DecisionLog, DecisionLogSettings
from orchestrator.gateway.health import HealthBook
from orchestrator.gateway.metrics import AccessLog, GatewayMetrics
from orchestrator.gateway.probes import probe_sites
from orchestrator.gateway.reload import Serving, TableKeeper
from orchestrator.gateway.sites import SiteUpstreams
from orchestrator.gateway.sources import FleetSource
from orchestrator.gateway.tokens import TokenVerifier
from orchestrator.gateway.upstreams import UpstreamPool
from orchestrator.state.apikeys import ApiKeys
from orchestrator.stubs.upstream import StubServer

__all__ = ["Enforcer", "GatewaySettings"]


@dataclass(frozen=True)
class GatewaySettings:
    fleet_dir: Path | None = None  # local sites' stubs serve <fleet_dir>/.sovereign/sites/<id>
    reload_interval_s: float = 0.5  # the state serial is read this often; 0 disables reloads
    signal_interval_s: float = 0.01  # the source's change signal is asked this often; 0: off
    # S3/GCS state: its version is read (one HEAD / metadata request) this often; 0: no signal
    object_signal_interval_s: float = 0.05
    probe_interval_s: float = 5.0  # 0 disables active probes
    upstream_timeout_s: float = 30.0
    connect_timeout_s: float = 2.0
    probe_timeout_s: float = 2.0
    base_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
    max_connections_per_upstream: int = 128
    stub_host: str = "127.0.0.1"
    # site id -> base URL, overriding the fleet (tests and benchmarks point sites at servers
    # they run themselves); still only sites of the route are ever tried.
    upstream_overrides: Mapping[str, str] = field(default_factory=dict)
    # Demo/development: every site is served by a loopback stub, whatever its endpoint says
    # (so the example fleet can be exercised without contacting any real inference service).
    stub_all_sites: bool = False
    # One JSON line per decision (docs/evidence.md, "The decision log"); None: no log.
    decision_log: DecisionLogSettings | None = None


class Enforcer:
    """The served table, its reloads, the sites' upstreams and health, and their lifecycle.

    Subclasses set ``app`` (their ASGI app, whose lifespan is ``lifespan``) and ``name`` (the
    ``<name>.started`` event)."""

    name = "enforcer"
    app: Any

    def __init__(
        self,
        source: FleetSource,
        authenticator: Authenticator | TokenVerifier,
        settings: GatewaySettings | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.source = source
        if isinstance(authenticator, TokenVerifier):
            authenticator = Authenticator(authenticator, KeyBook())
        self.authenticator = authenticator
        self.settings = s = settings if settings is not None else GatewaySettings()
        self.access_log = access_log if access_log is not None else AccessLog()
        self.metrics = GatewayMetrics()
        self.health = HealthBook(s.base_backoff_s, s.max_backoff_s)
        self.sites = SiteUpstreams(s.fleet_dir, s.upstream_overrides, s.stub_all_sites, s.stub_host)
        self.keeper = TableKeeper(
            source,
            self.sites.for_fleet,
            self.metrics,
            self.access_log,
            s.reload_interval_s,
            s.signal_interval_s,
            self._install_identity,
        )
        if self.authenticator.issuers is not None:
            self.authenticator.issuers.set_failure_hook(self._jwks_failed)
        self._upstreams = UpstreamPool(
            max_connections=s.max_connections_per_upstream,
            timeout_s=s.upstream_timeout_s,
            connect_timeout_s=s.connect_timeout_s,
        )
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        self.decisions: DecisionLog | None = None
        if s.decision_log is not None:
            self.decisions = DecisionLog(s.decision_log, self.access_log.event)
        # Called once started (every port bound): the CLI announces the process then.
        self.on_started: Callable[[], None] | None = None

    def _jwks_failed(self, issuer: str, why: str) -> None:
        """Fail closed, loudly: a metric and a log line for every failed JWKS fetch."""
        self.metrics.jwks_failures.labels(issuer[:200]).inc()
        self.access_log.event("jwks.unavailable", level="error", issuer=issuer, error=why)

    def _install_identity(self, fleet: Fleet, keys: ApiKeys) -> None:
        """Tenants and API keys reload with the table (docs/identity.md)."""
        if self.authenticator.keys is not None:
            self.authenticator.keys.install(fleet.tenants, keys)

    # -- the served table --------------------------------------------------------------------

    @property
    def serving(self) -> Serving:
        serving = self.keeper.serving
        if serving is None:
            raise RuntimeError(f"the {self.name} has no table yet: call load_initial() first")
        return serving

    @property
    def reload_error(self) -> str | None:
        return self.keeper.reload_error

    @property
    def stubs(self) -> dict[str, StubServer]:
        return self.sites.stubs

    def load_initial(self) -> Serving:
        """Load, verify and compile the first table (blocking). Raises ``SovereignError`` when
        there is nothing valid to serve: nothing starts without a table."""
        return self.keeper.load_initial()

    async def reload_once(self) -> bool:
        """Ask the source once; install a new table if it changed and verifies."""
        return await self.keeper.reload_once()

    async def probe_once(self) -> None:
        """``GET <upstream>/healthz`` for every site with an upstream; feeds the health book."""
        if not self._started:
            return
        await probe_sites(
            self.serving.upstreams,
            self._upstreams,
            self.health,
            self.metrics,
            self.settings.probe_timeout_s,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        if self.keeper.serving is None:
            await asyncio.to_thread(self.load_initial)
        s = self.settings
        self._started = True
        if s.reload_interval_s > 0:
            self._tasks.append(asyncio.create_task(self.keeper.watch(), name=f"{self.name}-reload"))
        if s.probe_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._probe_loop(), name=f"{self.name}-probe"))
        if self.authenticator.issuers is not None:
            self._tasks.append(asyncio.create_task(self._jwks_loop(), name=f"{self.name}-jwks"))
        serving = self.serving
        self.access_log.event(
            f"{self.name}.started",
            table=serving.table.version,
            serial=serving.table.serial,
            source=serving.source,
        )
        if self.on_started is not None:
            self.on_started()

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        self._started = False
        await self._upstreams.close()
        stubs = self.sites.stop_stubs()
        await asyncio.gather(*(asyncio.to_thread(stub.stop) for stub in stubs))
        if self.decisions is not None:
            await asyncio.to_thread(self.decisions.close)  # every committed line written

    async def _jwks_loop(self) -> None:
        """Keep the issuers' key sets fresh off the event loop (docs/identity.md)."""
        issuers = self.authenticator.issuers
        assert issuers is not None
        while True:
            await asyncio.to_thread(issuers.refresh_due)
            await asyncio.sleep(1.0)

    async def _probe_loop(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self.settings.probe_interval_s)
