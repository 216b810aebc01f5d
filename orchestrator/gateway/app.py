"""The gateway's ASGI application: verify the principal, route, forward, fail over, explain.

One request, in order: the bearer token is verified (401 otherwise) and is the *only* source of
the principal; the request keeps the table that was current when it arrived (``self._serving``
is read once; a reload swaps that single reference, so in-flight requests are never mixed); the
route comes from the compiled table at the request's time (directive epochs need no reload);
an empty route answers 451 with the SPEC 5 explanation; otherwise the route's sites are tried
in health order (healthy first, never a site outside the route) and the first answer that is
not a connection error, timeout or 5xx is passed through. Streams are passed through chunk by
chunk; failover is possible only until the first byte has been forwarded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator.errors import FleetError, SignatureError
from orchestrator.fleet.model import Fleet, ProviderName
from orchestrator.gateway.health import HealthBook
from orchestrator.gateway.metrics import AccessLog, GatewayMetrics
from orchestrator.gateway.routing import ServingTable
from orchestrator.gateway.sources import FleetSource
from orchestrator.gateway.tokens import TokenError, TokenVerifier, VerifiedToken
from orchestrator.gateway.upstreams import UPSTREAM_ERRORS, UpstreamPool, failure_name
from orchestrator.providers.stub_upstream import StubServer, start_stub

__all__ = ["Gateway", "GatewaySettings", "Serving"]

MODEL_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
_MODEL_PATHS = frozenset(MODEL_PATHS)
# Never forwarded either way: connection-level headers, and lengths/encodings we recompute.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)
# The only request headers passed upstream: never Authorization (the caller's token is for the
# gateway alone) and nothing that could pretend to carry principal attributes.
_FORWARDED_REQUEST_HEADERS = ("content-type", "accept")
_MAX_LOGGED_MODEL = 100


@dataclass(frozen=True)
class GatewaySettings:
    fleet_dir: Path | None = None  # local sites' stubs serve <fleet_dir>/.sovereign/sites/<id>
    reload_interval_s: float = 0.5  # 0 disables the reload task
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


@dataclass(frozen=True)
class Serving:
    """What one request is served from: swapped as a whole, never mutated."""

    table: ServingTable
    upstreams: Mapping[str, str]  # site id -> base URL without trailing slash
    loaded_at: datetime
    source: str


def _error(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": kind, "message": message, **extra}},
        status_code=status,
        headers=dict(headers or {}),
    )


def _passthrough_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in resp.headers.items():
        lower = name.lower()
        # The client decodes content-encoding (streams too), so it must not be claimed again.
        if lower in _HOP_BY_HOP or lower == "content-encoding":
            continue
        if lower.startswith("x-sovereign-"):
            continue  # only the gateway speaks for the gateway
        out[name] = value
    return out


class _FastPath:
    """The ASGI app. Model requests, the hot path, go straight to their handler; the rest
    (other paths and methods, lifespan) through Starlette's router and middleware, whose
    per-request cost was a measurable share of a proxied request's CPU."""

    def __init__(
        self, model_request: Callable[[Request], Awaitable[Response]], rest: Starlette
    ) -> None:
        self._model_request = model_request
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in _MODEL_PATHS and scope["method"] == "POST":
            response = await self._model_request(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


class Gateway:
    """The routing gateway: an ASGI app (``.app``) plus its background tasks."""

    def __init__(
        self,
        source: FleetSource,
        verifier: TokenVerifier,
        settings: GatewaySettings | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.source = source
        self.verifier = verifier
        self.settings = settings if settings is not None else GatewaySettings()
        self.access_log = access_log if access_log is not None else AccessLog()
        self.metrics = GatewayMetrics()
        self.health = HealthBook(self.settings.base_backoff_s, self.settings.max_backoff_s)
        self.stubs: dict[str, StubServer] = {}
        self.reload_error: str | None = None
        self._serving: Serving | None = None
        self._marker: Hashable = None
        self._failed: tuple[Hashable, float] | None = None
        s = self.settings
        self._upstreams = UpstreamPool(
            max_connections=s.max_connections_per_upstream,
            timeout_s=s.upstream_timeout_s,
            connect_timeout_s=s.connect_timeout_s,
        )
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        routes = [Route(p, self._model_request, methods=["POST"]) for p in MODEL_PATHS]
        routes += [
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        self.app = _FastPath(self._model_request, Starlette(routes=routes, lifespan=self._lifespan))

    # -- the served table --------------------------------------------------------------------

    @property
    def serving(self) -> Serving:
        if self._serving is None:
            raise RuntimeError("the gateway has no table yet: call load_initial() first")
        return self._serving

    def load_initial(self) -> Serving:
        """Load, verify and compile the first table (blocking). Raises ``SovereignError`` when
        there is nothing valid to serve: the gateway does not start without a table."""
        if self._serving is None:
            marker = self.source.marker()
            fleet, serial = self.source.load()
            table = ServingTable.compile(fleet, serial)
            self._install(table, marker)
        return self.serving

    def _install(
        self, table: ServingTable, marker: Hashable, upstreams: dict[str, str] | None = None
    ) -> None:
        if upstreams is None:
            upstreams = self._upstreams_for(table.fleet)
        # The one reference swap: requests that already read the old value keep it.
        self._serving = Serving(
            table, MappingProxyType(upstreams), datetime.now(UTC), self.source.label
        )
        self._marker = marker
        self._failed = None
        self.reload_error = None
        if table.serial is not None:
            self.metrics.table_serial.set(table.serial)

    def _site_dir(self, site_id: str) -> Path | None:
        if self.settings.fleet_dir is None:
            return None
        path = self.settings.fleet_dir / ".sovereign" / "sites" / site_id
        if path.is_dir() or not self.settings.stub_all_sites:
            # Fail closed: a local site where nothing was deployed serves nothing. Only the
            # explicit demo/development mode (--stub-upstreams) stubs any model there.
            return path
        return None

    def _upstreams_for(self, fleet: Fleet) -> dict[str, str]:
        """Base URL per site; starts loopback stubs for local sites without an endpoint."""
        upstreams: dict[str, str] = {}
        for site in fleet.sites.values():
            override = self.settings.upstream_overrides.get(site.id)
            if override is not None:
                upstreams[site.id] = override.rstrip("/")
            elif site.endpoint and not self.settings.stub_all_sites:
                upstreams[site.id] = site.endpoint.rstrip("/")
            elif site.provider == ProviderName.LOCAL or self.settings.stub_all_sites:
                stub = self.stubs.get(site.id)
                if stub is None or not stub.running:
                    stub = start_stub(
                        site.id, self.settings.stub_host, site_dir=self._site_dir(site.id)
                    )
                    self.stubs[site.id] = stub
                upstreams[site.id] = stub.url
            # other sites without an endpoint have no upstream: tried and reported, never used
        return upstreams

    async def reload_once(self) -> bool:
        """Poll the source once; install a new table if it changed and verifies. Returns
        whether a new table was installed. A failure keeps the old table (fail closed: never an
        unverified table; the last verified one stays in force) and is reported."""
        try:
            marker = await asyncio.to_thread(self.source.marker)
        except Exception as exc:  # noqa: BLE001 - the reload loop must outlive any source error
            self._reload_failed(None, f"cannot read {self.source.label}: {exc}")
            return False
        if marker == self._marker:
            return False
        if self._failed is not None and self._failed[0] == marker:
            # Do not re-verify the same broken input every interval; retry now and then.
            if time.monotonic() - self._failed[1] < max(5.0, self.settings.reload_interval_s):
                return False
        current = self._serving
        try:
            fleet, serial = await asyncio.to_thread(self.source.load)
            previous = current.table if current is not None else None
            table = await asyncio.to_thread(ServingTable.compile, fleet, serial, previous)
            if current is not None and table.version == current.table.version:
                if table.serial is not None:
                    self.metrics.table_serial.set(table.serial)
                # Same verified content under a newer serial: keep the compiled table.
                self._serving = Serving(
                    ServingTable(current.table.table, serial),
                    current.upstreams,
                    current.loaded_at,
                    current.source,
                )
                self._marker = marker
                self._failed = None
                self.reload_error = None
                return False
            upstreams = await asyncio.to_thread(self._upstreams_for, fleet)
        except Exception as exc:  # noqa: BLE001 - any failure must keep the old table
            # Invalid input stays invalid until it changes: remember it. Anything else (the
            # store unreachable, a busy database) is retried on the next tick.
            invalid = isinstance(exc, FleetError | SignatureError)
            self._reload_failed(
                marker if invalid else None, str(exc).splitlines()[0] if str(exc) else repr(exc)
            )
            return False
        old = current.table.version if current is not None else None
        self._install(table, marker, upstreams)
        self.metrics.reloads.labels("ok").inc()
        self.access_log.event("table.reloaded", table=table.version, previous=old, serial=serial)
        return True

    def _reload_failed(self, marker: Hashable, message: str) -> None:
        if marker is not None:
            self._failed = (marker, time.monotonic())
        self.reload_error = message
        self.metrics.reloads.labels("failed").inc()
        self.access_log.event(
            "table.reload_failed",
            level="error",
            error=message,
            table=self._serving.table.version if self._serving else None,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        if self._serving is None:
            await asyncio.to_thread(self.load_initial)
        s = self.settings
        self._started = True
        if s.reload_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._reload_loop(), name="gateway-reload"))
        if s.probe_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._probe_loop(), name="gateway-probe"))
        serving = self.serving
        self.access_log.event(
            "gateway.started",
            table=serving.table.version,
            serial=serving.table.serial,
            source=serving.source,
        )

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
        stubs = list(self.stubs.values())
        self.stubs.clear()
        await asyncio.gather(*(asyncio.to_thread(stub.stop) for stub in stubs))

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            await self.reload_once()

    async def _probe_loop(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self.settings.probe_interval_s)

    async def probe_once(self) -> None:
        """``GET <upstream>/healthz`` for every site with an upstream; feeds the health book."""
        serving = self.serving
        if not self._started:
            return

        timeout = aiohttp.ClientTimeout(total=self.settings.probe_timeout_s)

        async def probe(site_id: str, base: str) -> None:
            session = self._upstreams.session_for(base)
            try:
                async with session.get(f"{base}/healthz", timeout=timeout) as resp:
                    await resp.read()
                    status = resp.status
            except UPSTREAM_ERRORS as exc:
                self.health.record_failure(site_id, f"probe: {failure_name(exc)}")
            else:
                if status >= 500:
                    self.health.record_failure(site_id, f"probe: HTTP {status}")
                else:
                    self.health.record_success(site_id)
            self.metrics.site_up.labels(site_id).set(1 if self.health.is_up(site_id) else 0)

        await asyncio.gather(*(probe(s, b) for s, b in serving.upstreams.items()))

    # -- request handlers --------------------------------------------------------------------

    def _authenticate(self, request: Request) -> VerifiedToken | JSONResponse:
        try:
            return self.verifier.verify_header(request.headers.get("authorization"))
        except TokenError as exc:
            # The reason may quote attacker-chosen text (an alg name): keep the header valid.
            reason = "".join(c for c in exc.reason if c.isprintable() and c not in '"\\')
            challenge = (
                f'Bearer realm="sovereign", error="{exc.error}", error_description="{reason}"'
            )
            return _error(401, exc.error, exc.reason, {"WWW-Authenticate": challenge})

    def _log(
        self,
        request: Request,
        started: float,
        status: int,
        *,
        model: str | None = None,
        site: str | None = None,
        table: str | None = None,
        token: VerifiedToken | None = None,
        **extra: Any,
    ) -> None:
        self.access_log.write(
            method=request.method,
            path=request.scope["path"],
            model=model[:_MAX_LOGGED_MODEL] if model else None,
            status=status,
            site=site,
            table=table,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            residency=token.principal.residency if token else None,
            sub_hash=token.subject_hash if token else None,
            **extra,
        )

    async def _model_request(self, request: Request) -> Response:
        started = time.perf_counter()
        serving = self.serving  # read once: this request keeps this table to the end
        table = serving.table
        version = table.version
        token = self._authenticate(request)
        if isinstance(token, JSONResponse):
            self.metrics.requests.labels("", "", "unauthorized").inc()
            self._log(request, started, 401, table=version)
            return token
        body = await self._read_body(request)
        if body is None:
            self._log(request, started, 413, table=version, token=token)
            return _error(
                413,
                "request_too_large",
                f"request body larger than {self.settings.max_body_bytes} bytes",
            )
        try:
            payload = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            self.metrics.requests.labels("", "", "bad_request").inc()
            self._log(request, started, 400, table=version, token=token)
            return _error(
                400, "invalid_request_error", "the body must be a JSON object with a string 'model'"
            )
        principal = token.principal
        at = datetime.now(UTC)
        route = table.route(model, principal, at)
        decided = time.perf_counter()
        self.metrics.decision_seconds.observe(decided - started)
        headers = {"X-Sovereign-Table": version}
        if not table.knows(model):
            self.metrics.requests.labels("unknown", "", "unknown_model").inc()
            self._log(request, started, 404, model=model, table=version, token=token)
            return _error(404, "model_not_found", f"model {model!r} is not in the fleet", headers)
        if not route:
            self.metrics.requests.labels(model, "", "refused").inc()
            self.metrics.refusals.labels(model).inc()
            explanation = table.explain_json(model, principal, at)
            self._log(request, started, 451, model=model, table=version, token=token)
            return JSONResponse(
                {
                    "error": {
                        "type": "unavailable_for_legal_reasons",
                        "message": f"{model} may not be served to this principal at any site",
                        "model": model,
                        "table": version,
                    },
                    "explanation": explanation,
                },
                status_code=451,
                headers=headers,
            )
        stream = isinstance(payload, dict) and payload.get("stream") is True
        return await self._forward(request, body, model, route, serving, token, stream, started)

    async def _read_body(self, request: Request) -> bytes | None:
        """The body, or None when it exceeds the limit (checked before it is all in memory)."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def _forward(
        self,
        request: Request,
        body: bytes,
        model: str,
        route: tuple[str, ...],
        serving: Serving,
        token: VerifiedToken,
        stream: bool,
        started: float,
    ) -> Response:
        if not self._started:
            return _error(503, "starting", "the gateway is not started")
        version = serving.table.version
        path = request.scope["path"]
        forward_headers = {
            k: v for k in _FORWARDED_REQUEST_HEADERS if (v := request.headers.get(k)) is not None
        }
        tried: list[dict[str, str]] = []
        answered_5xx = False
        for site in self.health.order(route):
            base = serving.upstreams.get(site)
            if base is None:
                tried.append({"site": site, "error": "no endpoint configured"})
                continue
            sent = time.perf_counter()
            session = self._upstreams.session_for(base)
            failure: str | None = None
            resp: aiohttp.ClientResponse | None = None
            content = b""
            chunks: AsyncIterator[bytes] | None = None
            try:
                resp = await session.post(
                    self._upstreams.url(base, path), data=body, headers=forward_headers
                )
                if resp.status >= 500:
                    answered_5xx = True
                    failure = f"HTTP {resp.status}"
                elif stream:
                    # Hold the response until its first byte: until then we may still fail over.
                    chunks = resp.content.iter_any()
                    content = await anext(chunks, b"")
                else:
                    content = await resp.read()
            except UPSTREAM_ERRORS as exc:
                failure = failure_name(exc)
            self.metrics.upstream_seconds.labels(site).observe(time.perf_counter() - sent)
            if failure is not None:
                if resp is not None:
                    resp.close()  # an unread or broken answer: never back into the pool
                self.health.record_failure(site, failure)
                self.metrics.site_up.labels(site).set(0)
                self.metrics.failovers.labels(model, site).inc()
                tried.append({"site": site, "error": failure})
                continue
            assert resp is not None
            if self.health.record_success(site):
                self.metrics.site_up.labels(site).set(1)
            status = resp.status
            outcome = "ok" if status < 400 else f"upstream_{status}"
            self.metrics.requests.labels(model, site, outcome).inc()
            headers = _passthrough_headers(resp)
            headers["X-Sovereign-Site"] = site
            headers["X-Sovereign-Table"] = version
            failed_over = [t["site"] for t in tried]
            self._log(
                request,
                started,
                status,
                model=model,
                site=site,
                table=version,
                token=token,
                stream=stream,
                failed_over=failed_over or None,
            )
            if not stream:
                resp.release()  # read to the end: the connection goes back to the pool
                return Response(content, status, headers)
            assert chunks is not None
            headers["X-Accel-Buffering"] = "no"  # ask reverse proxies in front not to buffer
            return StreamingResponse(
                self._relay(resp, content, chunks, site),
                status_code=status,
                headers=headers,
            )
        status = 502 if answered_5xx else 503
        self.metrics.requests.labels(model, "", "upstream_failed").inc()
        self._log(
            request,
            started,
            status,
            model=model,
            table=version,
            token=token,
            tried=[t["site"] for t in tried],
        )
        return _error(
            status,
            "upstream_unavailable",
            "every site this principal may use failed; no other site is allowed",
            {"X-Sovereign-Table": version},
            sites_tried=tried,
        )

    async def _relay(
        self, resp: aiohttp.ClientResponse, first: bytes, chunks: AsyncIterator[bytes], site: str
    ) -> AsyncIterator[bytes]:
        complete = False
        try:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk
            complete = True
        except UPSTREAM_ERRORS as exc:
            # Bytes are already with the client: the stream ends short, it cannot fail over.
            self.health.record_failure(site, f"mid-stream: {failure_name(exc)}")
            self.access_log.event("stream.interrupted", site=site, error=failure_name(exc))
        finally:
            # A stream the caller abandoned may still be flowing: drop that connection.
            if complete:
                resp.release()
            else:
                resp.close()

    async def _list_models(self, request: Request) -> Response:
        started = time.perf_counter()
        serving = self.serving
        token = self._authenticate(request)
        if isinstance(token, JSONResponse):
            self._log(request, started, 401, table=serving.table.version)
            return token
        at = datetime.now(UTC)
        fleet = serving.table.fleet
        data = [
            {"id": m, "object": "model", "owned_by": fleet.models[m].origin}
            for m in sorted(fleet.models)
            if serving.table.route(m, token.principal, at)
        ]
        self._log(request, started, 200, table=serving.table.version, token=token)
        return JSONResponse(
            {"object": "list", "data": data}, headers={"X-Sovereign-Table": serving.table.version}
        )

    async def _healthz(self, request: Request) -> Response:
        serving = self.serving
        sites = self.health.snapshot(serving.table.fleet.sites)
        for site_id, info in sites.items():
            info["upstream"] = site_id in serving.upstreams
        down = sorted(s for s, info in sites.items() if not info["up"])
        status = "degraded" if self.reload_error or down else "ok"
        return JSONResponse(
            {
                "status": status,
                "table": serving.table.version,
                "serial": serving.table.serial,
                "source": serving.source,
                "loaded_at": serving.loaded_at.isoformat(),
                "reload_error": self.reload_error,
                "sites_up": sorted(s for s, info in sites.items() if info["up"]),
                "sites_down": down,
                "sites": sites,
            }
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)
