"""Prometheus metrics and JSON access logs of the gateway.

Each gateway owns its ``CollectorRegistry`` (no process-global state, so several gateways can
run in one process, e.g. in tests). Label values are bounded: a model label is a model of the
fleet or ``unknown``, so a caller cannot blow up cardinality with invented names.

Access log lines carry what an operator needs (status, site, table, latency, the principal's
residency) and nothing a log must not hold: no prompt content, no token, and ``sub`` only as
a truncated hash.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from orchestrator.logs import JsonLines, stderr_sink

# The access log is the one structured log (``orchestrator.logs``): a line per request, events
# (reloads, start-up, probes) in the same stream and shape as the controller's.
AccessLog = JsonLines

__all__ = ["AccessLog", "GatewayMetrics", "stderr_sink"]

_MAX_CACHED_CHILDREN = 4096
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sovereign_gateway_requests",
            "Requests by model, serving site and outcome",
            ["model", "site", "outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "sovereign_gateway_refusals",
            "451 answers (empty route) by model",
            ["model"],
            registry=r,
        )
        self.failovers = Counter(
            "sovereign_gateway_failovers",
            "Upstream attempts that failed and moved on",
            ["model", "site"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "sovereign_gateway_decision_seconds",
            "Time to verify the token and route",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "sovereign_gateway_upstream_seconds",
            "Upstream response time (to headers)",
            ["site"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter(
            "sovereign_gateway_reloads",
            "Table reload attempts by result",
            ["result"],
            registry=r,
        )
        self.site_up = Gauge(
            "sovereign_gateway_site_up",
            "1 when the site is considered healthy",
            ["site"],
            registry=r,
        )
        self.jwks_failures = Counter(
            "sovereign_gateway_jwks_failures",
            "Failed fetches of an OIDC issuer's JWKS (its tokens are refused once the cache "
            "has expired)",
            ["issuer"],
            registry=r,
        )
        self.table_serial = Gauge(
            "sovereign_gateway_table_serial",
            "State serial of the table being served",
            registry=r,
        )

        # Labelled children the hot path asks for on every request, looked up once each
        # (``labels()`` takes a lock and builds a key per call). Bounded like the labels.
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._upstreams: dict[str, Any] = {}

    def request(self, model: str, site: str, outcome: str) -> Any:
        """The ``requests`` counter for these labels."""
        key = (model, site, outcome)
        child = self._requests.get(key)
        if child is None:
            if len(self._requests) > _MAX_CACHED_CHILDREN:
                self._requests.clear()
            child = self._requests[key] = self.requests.labels(model, site, outcome)
        return child

    def upstream(self, site: str) -> Any:
        """The ``upstream_seconds`` histogram of this site."""
        child = self._upstreams.get(site)
        if child is None:
            if len(self._upstreams) > _MAX_CACHED_CHILDREN:
                self._upstreams.clear()
            child = self._upstreams[site] = self.upstream_seconds.labels(site)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
