"""The gateway's other endpoints: ``GET /v1/models``, ``/healthz``, ``/metrics`` and
``POST /admin/reload``.

They go through Starlette's router (the hot path, model requests, does not; see ``proxy``).
``/v1/models`` lists the models this principal may be served now (a route exists); ``/healthz``
says which table is served, from where, whether the last reload failed, and which sites look
down; ``/metrics`` is Prometheus text.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.gateway.authn import Authenticator, AuthError, Caller
from orchestrator.gateway.health import HealthBook
from orchestrator.gateway.metrics import AccessLog, GatewayMetrics
from orchestrator.gateway.reload import TableKeeper
from orchestrator.gateway.responses import unauthorized_response

__all__ = ["Endpoints"]


class Endpoints:
    """Starlette endpoints over the gateway's parts."""

    def __init__(
        self,
        keeper: TableKeeper,
        authenticator: Authenticator,
        health: HealthBook,
        metrics: GatewayMetrics,
        access_log: AccessLog,
    ) -> None:
        self._keeper = keeper
        self._authenticator = authenticator
        self._health = health
        self._metrics = metrics
        self._access_log = access_log

    async def list_models(self, request: Request) -> Response:
        started = time.perf_counter()
        serving = self._keeper.serving
        assert serving is not None
        version = serving.table.version

        def log(status: int, caller: Caller | None = None) -> None:
            self._access_log.write(
                method=request.method,
                path=request.scope["path"],
                model=None,
                status=status,
                site=None,
                table=version,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                residency=caller.principal.residency if caller else None,
                auth=caller.kind if caller else None,
                caller=caller.label if caller else None,
            )

        try:
            caller = self._authenticator.authenticate(request.headers.get("authorization"))
        except AuthError as exc:
            log(401)
            return unauthorized_response(exc)
        at = datetime.now(UTC)
        fleet = serving.table.fleet
        data = [
            {"id": m, "object": "model", "owned_by": fleet.models[m].origin}
            for m in sorted(fleet.models)
            if serving.table.route(m, caller.principal, at)
        ]
        log(200, caller)
        return JSONResponse(
            {"object": "list", "data": data}, headers={"X-Sovereign-Table": version}
        )

    async def retrieve_model(self, request: Request) -> Response:
        """``GET /v1/models/{id}`` (OpenAI's ``models.retrieve``): the model, when this principal
        may be served it now; else the answer a model request would get (404 not in the fleet,
        451 refused by the law with the explanation, 503 only drained sites)."""
        started = time.perf_counter()
        serving = self._keeper.serving
        assert serving is not None
        table = serving.table
        model_id = request.path_params["model_id"]
        caller: Caller | None = None
        status = 401
        try:
            caller = self._authenticator.authenticate(request.headers.get("authorization"))
            at = datetime.now(UTC)
            verdict = table.verdict(model_id, caller.principal, at)
            headers = {"X-Sovereign-Table": table.version}
            if verdict.route:
                status = 200
                return JSONResponse(
                    {
                        "id": model_id,
                        "object": "model",
                        "created": 0,
                        "owned_by": table.fleet.models[model_id].origin,
                    },
                    headers=headers,
                )
            status = verdict.status
            return JSONResponse(
                table.refusal_body(verdict, model_id, caller.principal, at),
                status_code=status,
                headers=headers,
            )
        except AuthError as exc:
            return unauthorized_response(exc)
        finally:
            self._access_log.write(
                method=request.method,
                path=request.scope["path"],
                model=model_id if model_id in table.fleet.models else None,
                status=status,
                site=None,
                table=table.version,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                residency=caller.principal.residency if caller else None,
                auth=caller.kind if caller else None,
                caller=caller.label if caller else None,
            )

    async def healthz(self, request: Request) -> Response:
        serving = self._keeper.serving
        assert serving is not None
        sites = self._health.snapshot(serving.table.fleet.sites)
        for site_id, info in sites.items():
            info["upstream"] = site_id in serving.upstreams
        down = sorted(s for s, info in sites.items() if not info["up"])
        reload_error = self._keeper.reload_error
        return JSONResponse(
            {
                "status": "degraded" if reload_error or down else "ok",
                "pid": os.getpid(),  # which worker answered (sovereign gateway --workers N)
                "table": serving.table.version,
                # the state's serial as last read (every reload interval), and the serial the
                # served fleet was applied under: drains and records move the first only
                "serial": getattr(self._keeper.source, "state_serial", None)
                or serving.table.serial,
                "applied_serial": serving.table.serial,
                "source": serving.source,
                "loaded_at": serving.loaded_at.isoformat(),
                "reload_error": reload_error,
                "sites_up": sorted(s for s, info in sites.items() if info["up"]),
                "sites_down": down,
                "sites": sites,
            }
        )

    async def reload(self, request: Request) -> Response:
        """``POST /admin/reload``: re-read the applied fleet now (states without a change
        signal: call it after an apply). It can only make the gateway re-read and re-verify
        what was applied, never change it, so it needs no token; floods coalesce."""
        await self._keeper.reload_requested()
        serving = self._keeper.serving
        assert serving is not None
        return JSONResponse(
            {
                "table": serving.table.version,
                "serial": serving.table.serial,
                "reload_error": self._keeper.reload_error,
                "pid": os.getpid(),
            }
        )

    async def metrics(self, request: Request) -> Response:
        return Response(self._metrics.render(), media_type=CONTENT_TYPE_LATEST)
