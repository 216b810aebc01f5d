"""The routing gateway (docs/gateway.md): its parts, wired into one ASGI app.

What it shares with ``sovereign authz`` (the table and its reloads, sites, health, probes,
the authenticator, metrics, lifecycle) is ``core.Enforcer``; the parts, one module each:

- ``reload``: the served table (verified before it counts, swapped as one reference) and when
  to reload it (``changes``: a fast change signal, plus the state serial every interval);
- ``sites``: which base URL serves each site, starting loopback stubs for local sites;
- ``proxy``: model requests, the hot path (auth, route, 451, forward, fail over, relay);
- ``endpoints``: ``/v1/models``, ``/healthz``, ``/metrics``, ``/admin/reload``;
- ``probes``: active health probes; ``health``: the health book both feed;
- ``authn``: who is asking (``tokens``: signed tokens); ``upstreams``: the HTTP client pools.

Model requests go straight to ``proxy``; everything else (other paths and methods, lifespan)
through Starlette's router, whose per-request cost was a measurable share of a proxied request.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator.gateway.authn import Authenticator
from orchestrator.gateway.core import Enforcer, GatewaySettings
from orchestrator.gateway.endpoints import Endpoints
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.proxy import MODEL_PATHS, ModelRequests
from orchestrator.gateway.reload import Serving
from orchestrator.gateway.responses import not_found
from orchestrator.gateway.sources import FleetSource
from orchestrator.gateway.tokens import TokenVerifier

__all__ = ["MODEL_PATHS", "Gateway", "GatewaySettings", "Serving"]


class _Dispatch:
    """The ASGI app: model requests to ``proxy``, the rest to Starlette."""

    def __init__(self, model_requests: ModelRequests, rest: Starlette) -> None:
        self._model_requests = model_requests
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in MODEL_PATHS:
            await self._model_requests(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


class Gateway(Enforcer):
    """The routing gateway: an ASGI app (``.app``) plus its background tasks (``Enforcer``)."""

    name = "gateway"

    def __init__(
        self,
        source: FleetSource,
        authenticator: Authenticator | TokenVerifier,
        settings: GatewaySettings | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        super().__init__(source, authenticator, settings, access_log)
        s = self.settings
        model_requests = ModelRequests(
            self.keeper,
            self.authenticator,
            self._upstreams,
            self.health,
            self.metrics,
            self.access_log,
            s.max_body_bytes,
            lambda: self._started,
            self.decisions,
        )
        endpoints = Endpoints(
            self.keeper, self.authenticator, self.health, self.metrics, self.access_log
        )
        routes = [
            Route("/v1/models", endpoints.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", endpoints.retrieve_model, methods=["GET"]),
            Route("/healthz", endpoints.healthz, methods=["GET"]),
            Route("/metrics", endpoints.metrics, methods=["GET"]),
            Route("/admin/reload", endpoints.reload, methods=["POST"]),
        ]
        # Model paths answer other methods through the router too (405, not 404).
        routes += [Route(p, model_requests, methods=["POST"]) for p in sorted(MODEL_PATHS)]
        rest = Starlette(
            routes=routes,
            lifespan=self.lifespan,
            exception_handlers={404: not_found, 405: not_found},
        )
        self.app = _Dispatch(model_requests, rest)
