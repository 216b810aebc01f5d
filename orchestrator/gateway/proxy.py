"""Model requests, the gateway's hot path: authenticate, route, forward, fail over, relay.

One request, in order: the caller is authenticated (``authn``: a token or an API key; 401
otherwise) and its credential is the *only* source of the principal; the request keeps the
table that was current when it arrived (the keeper's ``serving`` is read once; a reload swaps
that single reference, so in-flight requests are never mixed); the route comes from the
compiled table at the request's time (directive epochs need no reload); an empty route answers
451 with the explanation (503 ``site_unavailable`` when only drains empty it:
``routing.Verdict``); otherwise the route's sites are tried in health order (healthy
first, never a site outside the route) and the first answer that is not a connection error,
timeout or 5xx is passed through. Streams are passed through chunk by
chunk; failover is possible only until the first byte has been forwarded.

This is plain ASGI, not Starlette's ``Request``/``Response``: the request headers are walked
once, the token cache is asked with the header's own bytes, and a complete upstream answer is
sent as one start and one body message. Those objects were a measurable share of a proxied
request's CPU (docs/performance.md, "Gateway"). Rare answers (errors, 451, streams) still use
Starlette's response classes: there, clarity is worth more than microseconds.

Over 400 lines on purpose: the hot path stays in one module with its steps inlined
(docs/performance.md, the gateway): a helper module per step costs calls on every request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from orchestrator.gateway.authn import Authenticator, AuthError, Caller
from orchestrator.gateway.body import BodyError, parse_body
from orchestrator.gateway.decisionlog import DecisionLog, DecisionRecord, refusal_reasons
from orchestrator.gateway.health import HealthBook
from orchestrator.gateway.metrics import AccessLog, GatewayMetrics
from orchestrator.gateway.reload import Serving, TableKeeper
from orchestrator.gateway.responses import error_response, unauthorized_response
from orchestrator.gateway.routing import REFUSED, UNAVAILABLE, UNKNOWN_MODEL
from orchestrator.gateway.upstreams import UPSTREAM_ERRORS, UpstreamPool, failure_name

__all__ = ["MODEL_PATHS", "ModelRequests"]

MODEL_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
# Never passed back: connection-level headers, lengths/encodings we recompute (the client
# decodes content-encoding, streams too, so it must not be claimed again).
_DROPPED_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"date",
        b"server",
        b"content-encoding",
    }
)
# The only request headers passed upstream: never Authorization (the caller's token is for the
# gateway alone) and nothing that could pretend to carry principal attributes.
_FORWARDED_REQUEST_HEADERS = {b"content-type": "content-type", b"accept": "accept"}
_MAX_LOGGED_MODEL = 100
# verdict status -> metrics outcome
_REFUSAL_OUTCOMES = {
    UNKNOWN_MODEL: "unknown_model",
    REFUSED: "refused",
    UNAVAILABLE: "unavailable",
}


def _passthrough_headers(resp: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, value in resp.raw_headers:
        lower = name.lower()
        if lower in _DROPPED_RESPONSE_HEADERS or lower.startswith(b"x-sovereign-"):
            continue  # only the gateway speaks for the gateway
        out.append((lower, value))
    return out


class ModelRequests:
    """The ASGI handler of ``POST`` on the model paths."""

    def __init__(
        self,
        keeper: TableKeeper,
        authenticator: Authenticator,
        pool: UpstreamPool,
        health: HealthBook,
        metrics: GatewayMetrics,
        access_log: AccessLog,
        max_body_bytes: int,
        started: Callable[[], bool],
        decisions: DecisionLog | None = None,
    ) -> None:
        self._keeper = keeper
        self._authenticate = authenticator.authenticate
        self._pool = pool
        self._health = health
        self._metrics = metrics
        self._access_log = access_log
        self._max_body = max_body_bytes
        self._started = started
        self._decisions = decisions

    def _log(
        self,
        path: str,
        started: float,
        status: int,
        *,
        model: str | None = None,
        site: str | None = None,
        table: str | None = None,
        token: Caller | None = None,
        **extra: Any,
    ) -> None:
        self._access_log.write(
            method="POST",
            path=path,
            model=model[:_MAX_LOGGED_MODEL] if model else None,
            status=status,
            site=site,
            table=table,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            residency=token.principal.residency if token else None,
            auth=token.kind if token else None,
            caller=token.label if token else None,
            **extra,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        serving = self._keeper.serving  # read once: this request keeps this table to the end
        assert serving is not None, "the gateway serves only after its first table loaded"
        table = serving.table
        record = DecisionRecord(
            datetime.now(UTC), scope["path"], table.fleet.digest, table.version, table.serial
        )
        decisions = self._decisions
        if decisions is None:
            await self._decide(scope, receive, send, serving, started, record)
            return
        ticket = decisions.reserve()
        if ticket is None:
            # Fail closed: a decision that cannot be logged is not made (docs/evidence.md).
            self._metrics.request("", "", "decision_log_full").inc()
            self._log(record.path, started, 503, table=table.version, error="decision_log_full")
            await error_response(
                503,
                "decision_log_unavailable",
                "the decision log cannot take this request; retry shortly",
                {"Retry-After": "1"},
            )(scope, receive, send)
            return
        try:
            await self._decide(scope, receive, send, serving, started, record)
        except BaseException as exc:
            record.error = record.error or type(exc).__name__
            raise
        finally:
            decisions.commit(ticket, record)

    async def _decide(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        serving: Serving,
        started: float,
        record: DecisionRecord,
    ) -> None:
        table = serving.table
        version = table.version
        path: str = record.path
        authorization: bytes | None = None
        declared_length = b""
        forward_headers: dict[str, str] = {}
        for name, value in scope["headers"]:  # one pass; the first of repeated headers wins
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"content-length":
                declared_length = declared_length or value
            else:
                forwarded = _FORWARDED_REQUEST_HEADERS.get(name)
                if forwarded is not None and forwarded not in forward_headers:
                    forward_headers[forwarded] = value.decode("latin-1")
        try:
            token = self._authenticate(authorization)
        except AuthError as exc:
            record.status = 401
            self._metrics.request("", "", "unauthorized").inc()
            self._log(path, started, 401, table=version)
            await unauthorized_response(exc)(scope, receive, send)
            return
        record.principal = token.principal
        record.caller = {"kind": token.kind, "label": token.label}
        body = await self._read_body(receive, declared_length)
        if body is None:
            record.status = 413
            self._log(path, started, 413, table=version, token=token)
            await error_response(
                413,
                "invalid_request_error",
                f"request body larger than {self._max_body} bytes",
                code="request_too_large",
            )(scope, receive, send)
            return
        # The body is forwarded as received, so it is routed only when every parser reads it
        # as this one document (no duplicate keys, bounded depth, strict UTF-8 JSON).
        problem = "the body must be a JSON object with a string 'model'"
        try:
            payload = parse_body(body)
        except BodyError as exc:
            payload, problem = None, f"{exc}; {problem}"
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            record.status = 400
            self._metrics.request("", "", "bad_request").inc()
            self._log(path, started, 400, table=version, token=token)
            await error_response(400, "invalid_request_error", problem)(scope, receive, send)
            return
        principal = token.principal
        at = record.at  # the instant logged is the instant decided
        record.model = model
        verdict = table.verdict(model, principal, at)
        self._metrics.decision_seconds.observe(time.perf_counter() - started)
        route = verdict.route
        record.route = route
        if not route:
            record.status = verdict.status
            outcome = _REFUSAL_OUTCOMES[verdict.status]
            label_model = model if verdict.status != UNKNOWN_MODEL else "unknown"
            self._metrics.request(label_model, "", outcome).inc()
            if verdict.status == REFUSED:
                self._metrics.refusals.labels(model).inc()
            self._log(path, started, verdict.status, model=model, table=version, token=token)
            refusal = table.refusal_body(verdict, model, principal, at)
            record.reasons = refusal_reasons(refusal.get("explanation"))
            response = JSONResponse(
                refusal,
                status_code=verdict.status,
                headers={"X-Sovereign-Table": version},
            )
            await response(scope, receive, send)
            return
        stream = payload.get("stream") is True  # payload is a dict: it has a model
        await self._forward(
            scope,
            receive,
            send,
            body,
            forward_headers,
            model,
            route,
            serving,
            token,
            stream,
            started,
            record,
        )

    async def _read_body(self, receive: Receive, declared_length: bytes) -> bytes | None:
        """The body, or None when it exceeds the limit (checked before it is all in memory)."""
        limit = self._max_body
        if declared_length.isdigit() and int(declared_length) > limit:
            return None
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body if len(body) <= limit else None
        parts = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                break  # the caller left; whatever we answer is dropped
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        forward_headers: dict[str, str],
        model: str,
        route: tuple[str, ...],
        serving: Serving,
        token: Caller,
        stream: bool,
        started: float,
        record: DecisionRecord,
    ) -> None:
        path: str = scope["path"]
        if not self._started():
            record.status = 503
            await error_response(503, "starting", "the gateway is not started")(
                scope, receive, send
            )
            return
        version = serving.table.version
        metrics = self._metrics
        health = self._health
        tried: list[dict[str, str]] = []
        answered_5xx = False
        for site in health.order(route):
            base = serving.upstreams.get(site)
            if base is None:
                tried.append({"site": site, "error": "no endpoint configured"})
                continue
            sent = time.perf_counter()
            session = self._pool.session_for(base)
            failure: str | None = None
            resp: aiohttp.ClientResponse | None = None
            content = b""
            chunks: AsyncIterator[bytes] | None = None
            try:
                resp = await session.post(
                    self._pool.url(base, path), data=body, headers=forward_headers
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
            metrics.upstream(site).observe(time.perf_counter() - sent)
            if failure is not None:
                if resp is not None:
                    resp.close()  # an unread or broken answer: never back into the pool
                health.record_failure(site, failure)
                metrics.site_up.labels(site).set(0)
                metrics.failovers.labels(model, site).inc()
                tried.append({"site": site, "error": failure})
                continue
            assert resp is not None
            if health.record_success(site):
                metrics.site_up.labels(site).set(1)
            status = resp.status
            record.status, record.site = status, site
            metrics.request(model, site, "ok" if status < 400 else f"upstream_{status}").inc()
            headers = _passthrough_headers(resp)
            headers.append((b"x-sovereign-site", site.encode()))
            headers.append((b"x-sovereign-table", version.encode()))
            self._log(
                path,
                started,
                status,
                model=model,
                site=site,
                table=version,
                token=token,
                stream=stream,
                failed_over=[t["site"] for t in tried] or None,
            )
            if not stream:
                resp.release()  # read to the end: the connection goes back to the pool
                headers.append((b"content-length", str(len(content)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": content})
                return
            assert chunks is not None
            headers.append((b"x-accel-buffering", b"no"))  # ask proxies in front not to buffer
            relay = StreamingResponse(self._relay(resp, content, chunks, site), status_code=status)
            relay.raw_headers = headers  # as relayed; no content-length (chunked)
            await relay(scope, receive, send)
            return
        status = 502 if answered_5xx else 503
        record.status = status
        metrics.request(model, "", "upstream_failed").inc()
        self._log(
            path,
            started,
            status,
            model=model,
            table=version,
            token=token,
            tried=[t["site"] for t in tried],
        )
        await error_response(
            status,
            "upstream_unavailable",
            "every site this principal may use failed; no other site is allowed",
            {"X-Sovereign-Table": version},
            sites_tried=tried,
        )(scope, receive, send)

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
            self._health.record_failure(site, f"mid-stream: {failure_name(exc)}")
            self._access_log.event("stream.interrupted", site=site, error=failure_name(exc))
        finally:
            # A stream the caller abandoned may still be flowing: drop that connection.
            if complete:
                resp.release()
            else:
                resp.close()
