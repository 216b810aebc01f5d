"""``sovereign authz``: the gateway's decision, answered to a proxy people already run.

nginx (``auth_request``) and Envoy (HTTP ``ext_authz``: any method and path; gRPC
``envoy.service.auth.v3.Authorization/Check``) ask before they forward a model request. The
answer is the gateway's own, from the same parts (``core.Enforcer``: the verified table, its
reloads and change signal, drains, the token verifier, the sites' upstreams and their health
from the same probes), never a copy:

- ``200`` with ``X-Sovereign-Route`` (the legal sites, in route order, drained ones left out),
  ``X-Sovereign-Upstream`` (the base URL of the first healthy site of the route, the one to
  send the request to), ``X-Sovereign-Site`` (that site), ``X-Sovereign-Upstreams`` (the base
  URLs of the route's sites in the order to try them: healthy first; a proxy fails over along
  these and nowhere else) and ``X-Sovereign-Cluster`` (Envoy: the cluster of that site);
- ``451`` with the explanation when the law leaves the route empty, ``503 site_unavailable``
  when only drains do, ``404`` for a model the fleet does not know, ``401`` for a missing or
  bad credential, ``400`` without a model; ``503 upstream_unavailable`` when no site of the
  route has an upstream.

The model comes from ``X-Sovereign-Model`` (or ``x-gateway-model-name``, which Envoy AI
Gateway's body-to-header routing sets); the principal only from the ``Authorization`` header.

nginx's ``auth_request`` turns any answer but 2xx, 401 and 403 into a 500, so a request that
carries ``X-Sovereign-Proxy: nginx`` (the exported configuration sets it) gets every refusal as
``403`` with the real status in ``X-Sovereign-Status`` and the exact body in
``X-Sovereign-Body``; the configuration answers the client with those, unchanged
(docs/proxies.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator.gateway.authn import Authenticator, AuthError, Caller
from orchestrator.gateway.core import Enforcer, GatewaySettings
from orchestrator.gateway.decisionlog import DecisionRecord, refusal_reasons
from orchestrator.gateway.endpoints import Endpoints
from orchestrator.gateway.metrics import AccessLog
from orchestrator.gateway.reload import Serving
from orchestrator.gateway.responses import unauthorized
from orchestrator.gateway.routing import ALLOWED, REFUSED, UNKNOWN_MODEL
from orchestrator.gateway.sources import FleetSource
from orchestrator.gateway.tokens import TokenVerifier

__all__ = ["MANAGEMENT_PATHS", "Authz", "AuthzAnswer", "cluster_name"]

# The only paths that are not a decision (every other method and path is one).
MANAGEMENT_PATHS = {"/healthz": "GET", "/metrics": "GET", "/admin/reload": "POST"}
_MAX_MODEL = 200
_JSON = (b"content-type", b"application/json")


def cluster_name(site_id: str) -> str:
    """The Envoy cluster of a site in ``export --format envoy`` and ``X-Sovereign-Cluster``."""
    return f"sovereign-site-{site_id}"


@dataclass(frozen=True, slots=True)
class AuthzAnswer:
    """One decision: the status, the headers for the proxy, and for a refusal its JSON body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: dict[str, Any] | None = None

    def body_bytes(self) -> bytes:
        if self.body is None:
            return b""
        # ASCII and on one line: it must also fit in a header (nginx, X-Sovereign-Body)
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=True).encode()


def _error(status: int, kind: str, message: str, **extra: Any) -> AuthzAnswer:
    return AuthzAnswer(status, (), {"error": {"type": kind, "message": message, **extra}})


def _unauthorized(exc: AuthError) -> AuthzAnswer:
    challenge, body = unauthorized(exc)  # the gateway's 401, word for word
    return AuthzAnswer(exc.status, (("www-authenticate", challenge),), body)


class Authz(Enforcer):
    """``sovereign authz``: decisions over HTTP (``.app``) and gRPC (``grpc_servicer``)."""

    name = "authz"

    def __init__(
        self,
        source: FleetSource,
        authenticator: Authenticator | TokenVerifier,
        settings: GatewaySettings | None = None,
        access_log: AccessLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        grpc_port: int | None = None,
        grpc_host: str = "127.0.0.1",
    ) -> None:
        super().__init__(source, authenticator, settings, access_log)
        self._clock = clock
        self.grpc_port = grpc_port  # None: no gRPC; 0: any free port (the bound one after start)
        self.grpc_host = grpc_host
        self._grpc_server: Any = None
        endpoints = Endpoints(
            self.keeper, self.authenticator, self.health, self.metrics, self.access_log
        )
        rest = Starlette(
            routes=[
                Route("/healthz", endpoints.healthz, methods=["GET"]),
                Route("/metrics", endpoints.metrics, methods=["GET"]),
                Route("/admin/reload", endpoints.reload, methods=["POST"]),
            ],
            lifespan=self.lifespan,
        )
        self.app = _AuthzHTTP(self, rest)

    # -- the decision (HTTP and gRPC alike) --------------------------------------------------

    def decide(self, authorization: str | bytes | None, model: str | None) -> AuthzAnswer:
        """The answer for one request's ``Authorization`` header and model name, logged in the
        decision log when there is one (a decision it cannot log is refused: 503)."""
        serving = self.keeper.serving
        assert serving is not None, "authz answers only after its first table loaded"
        table = serving.table
        record = DecisionRecord(
            self._clock(), "authz", table.fleet.digest, table.version, table.serial
        )
        decisions = self.decisions
        if decisions is None:
            return self._decide(serving, authorization, model, record)
        ticket = decisions.reserve()
        if ticket is None:
            self.metrics.request("", "", "decision_log_full").inc()
            return _error(
                503,
                "decision_log_unavailable",
                "the decision log cannot take this request; retry shortly",
            )
        try:
            answer = self._decide(serving, authorization, model, record)
            record.status = answer.status
            return answer
        except BaseException as exc:
            record.error = type(exc).__name__
            raise
        finally:
            decisions.commit(ticket, record)

    def _decide(
        self,
        serving: Serving,
        authorization: str | bytes | None,
        model: str | None,
        record: DecisionRecord,
    ) -> AuthzAnswer:
        started = time.perf_counter()
        table = serving.table
        version = table.version
        try:
            token = self.authenticator.authenticate(authorization)
        except AuthError as exc:
            self.metrics.request("", "", "unauthorized").inc()
            self._log(started, 401, None, None, version, None)
            return _unauthorized(exc)
        record.principal = token.principal
        record.caller = {"kind": token.kind, "label": token.label}
        if not model:
            self.metrics.request("", "", "bad_request").inc()
            self._log(started, 400, None, None, version, token)
            return _error(
                400,
                "invalid_request_error",
                "no model: the proxy must send it in X-Sovereign-Model (or x-gateway-model-name)",
            )
        principal = token.principal
        at = record.at  # the instant logged is the instant decided
        record.model = model
        verdict = table.verdict(model, principal, at)
        record.route = verdict.route
        self.metrics.decision_seconds.observe(time.perf_counter() - started)
        table_header = ("x-sovereign-table", version)
        if verdict.status != ALLOWED:
            known = verdict.status != UNKNOWN_MODEL
            outcome = {UNKNOWN_MODEL: "unknown_model", REFUSED: "refused"}.get(
                verdict.status, "unavailable"
            )
            self.metrics.request(model if known else "unknown", "", outcome).inc()
            if verdict.status == REFUSED:
                self.metrics.refusals.labels(model).inc()
            self._log(started, verdict.status, model, None, version, token)
            body = table.refusal_body(verdict, model, principal, at)
            record.reasons = refusal_reasons(body.get("explanation"))
            return AuthzAnswer(verdict.status, (table_header,), body)
        order = self.health.order(verdict.route)
        upstreams = serving.upstreams
        tries = [(s, upstreams[s]) for s in order if s in upstreams]
        if not tries:
            self.metrics.request(model, "", "upstream_failed").inc()
            self._log(started, 503, model, None, version, token)
            answer = _error(
                503,
                "upstream_unavailable",
                "no site this principal may use has an upstream; no other site is allowed",
                sites_tried=[{"site": s, "error": "no endpoint configured"} for s in order],
            )
            return AuthzAnswer(503, (table_header,), answer.body)
        site, base = tries[0]
        record.site = site  # the site the proxy is sent to first (it may fail over in route)
        self.metrics.request(model, site, "ok").inc()
        self._log(started, 200, model, site, version, token)
        return AuthzAnswer(
            200,
            (
                ("x-sovereign-route", ",".join(verdict.route)),
                ("x-sovereign-upstream", base),
                ("x-sovereign-site", site),
                ("x-sovereign-upstreams", ",".join(b for _, b in tries)),
                ("x-sovereign-cluster", cluster_name(site)),
                table_header,
            ),
        )

    def _log(
        self,
        started: float,
        status: int,
        model: str | None,
        site: str | None,
        table: str,
        token: Caller | None,
    ) -> None:
        self.access_log.write(
            kind="authz",
            model=model[:_MAX_MODEL] if model else None,
            status=status,
            site=site,
            table=table,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            residency=token.principal.residency if token else None,
            auth=token.kind if token else None,
            caller=token.label if token else None,
        )

    # -- gRPC ------------------------------------------------------------------------------

    async def startup(self) -> None:
        if self.grpc_port is not None:
            from orchestrator.gateway.authz_grpc import serve_grpc, servicer_for

            if self.keeper.serving is None:
                await asyncio.to_thread(self.load_initial)
            self._grpc_server, self.grpc_port = await serve_grpc(
                servicer_for(self.decide), self.grpc_host, self.grpc_port
            )
        await super().startup()

    async def shutdown(self) -> None:
        if self._grpc_server is not None:
            await self._grpc_server.stop(grace=2)
            self._grpc_server = None
        await super().shutdown()


def http_answer(
    authz: Authz, headers: Iterable[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The HTTP answer (status, headers, body) to a decision request with these headers
    (lower-case names, as received): the one translation both HTTP servers use."""
    authorization: bytes | None = None
    model: bytes | None = None
    gateway_model: bytes | None = None
    nginx = False
    for name, value in headers:  # one pass; the first of repeated headers wins
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"x-sovereign-model":
            if model is None:
                model = value
        elif name == b"x-gateway-model-name":
            if gateway_model is None:
                gateway_model = value
        elif name == b"x-sovereign-proxy":
            nginx = value.strip().lower() == b"nginx"
    named = model or gateway_model
    answer = authz.decide(
        authorization, named.decode("utf-8", "replace").strip() if named else None
    )
    out = [(k.encode(), v.encode("latin-1", "replace")) for k, v in answer.headers]
    body = answer.body_bytes()
    status = answer.status
    if status != 200 and nginx:
        # auth_request passes only 2xx, 401 and 403: the real answer rides in headers
        out.append((b"x-sovereign-status", str(status).encode()))
        out.append((b"x-sovereign-body", body))
        status = 403
    if body:
        out.append(_JSON)
    return status, out, body


class _AuthzHTTP:
    """The ASGI app: the management paths to Starlette, every other request is a decision."""

    def __init__(self, authz: Authz, rest: Starlette) -> None:
        self._authz = authz
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or MANAGEMENT_PATHS.get(scope["path"]) == scope["method"]:
            await self.rest(scope, receive, send)
            return
        status, headers, body = http_answer(self._authz, scope["headers"])
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
