"""Active health probes: ``GET <upstream>/healthz`` for every site with an upstream.

Probes feed the same ``HealthBook`` as real requests; they only reorder routes (health is an
optimisation, never a permission).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from orchestrator.gateway.health import HealthBook
from orchestrator.gateway.metrics import GatewayMetrics
from orchestrator.gateway.upstreams import UPSTREAM_ERRORS, UpstreamPool, failure_name

__all__ = ["probe_sites"]


async def probe_sites(
    upstreams: Mapping[str, str],
    pool: UpstreamPool,
    health: HealthBook,
    metrics: GatewayMetrics,
    timeout_s: float,
) -> None:
    """Probe every site concurrently; a 5xx, timeout or connection error marks it down."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def probe(site_id: str, base: str) -> None:
        session = pool.session_for(base)
        try:
            async with session.get(f"{base}/healthz", timeout=timeout) as resp:
                await resp.read()
                status = resp.status
        except UPSTREAM_ERRORS as exc:
            health.record_failure(site_id, f"probe: {failure_name(exc)}")
        else:
            if status >= 500:
                health.record_failure(site_id, f"probe: HTTP {status}")
            else:
                health.record_success(site_id)
        metrics.site_up.labels(site_id).set(1 if health.is_up(site_id) else 0)

    await asyncio.gather(*(probe(s, b) for s, b in upstreams.items()))
