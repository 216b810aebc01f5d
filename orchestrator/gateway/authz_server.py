"""The HTTP server of ``sovereign authz``: decisions answered straight from the parser.

A proxy asks authz once per model request, so authz's cost per decision is added to every
request the proxy serves (docs/performance.md, "Proxies"). Under uvicorn most of that cost was
the server, not the decision: a task, an ASGI scope and two messages per request. Here each
connection is an ``asyncio.Protocol`` fed to ``httptools`` (C); a decision request is answered
synchronously in the parser's callback (``authz.http_answer``: the same answer as the ASGI
app), in order, on the same connection (keep-alive, pipelining). The few management requests
(``GET /healthz``, ``GET /metrics``, ``POST /admin/reload``) go to authz's Starlette app
through a minimal ASGI call, with reading paused until each is answered so answers keep their
order. ``AuthzServer`` runs it in the foreground (``sovereign authz``) or on a loopback thread
(tests, benchmarks); both run ``Authz.startup``/``shutdown`` around it (reloads, probes, gRPC).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import httptools

from orchestrator.gateway.authz import MANAGEMENT_PATHS, Authz, http_answer

__all__ = ["AuthzServer"]

# method, path, headers (lower-case names), body, close after answering
_Request = tuple[str, str, list[tuple[bytes, bytes]], bytes, bool]

_MAX_HEADERS_BYTES = 64 * 1024
_MAX_BODY_BYTES = 1024 * 1024  # a decision needs no body; Envoy may send one (with_request_body)


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {s: _status_line(s) for s in (200, 400, 401, 403, 404, 413, 451, 500, 503)}


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool) -> bytes:
    parts = [_STATUS_LINES.get(status) or _status_line(status)]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
    if close:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One client connection (nginx keeps a few open and sends request after request)."""

    def __init__(
        self, authz: Authz, loop: asyncio.AbstractEventLoop, open_: set[_Connection]
    ) -> None:
        self._authz = authz
        self._loop = loop
        self._open = open_
        self._parser = httptools.HttpRequestParser(self)
        self._transport: Any = None  # asyncio's or uvloop's transport
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._busy: asyncio.Task[None] | None = None  # a management request being answered
        self._queued: list[bytes] = []  # data that arrived while it was
        self._waiting: list[_Request] = []  # requests parsed while it was

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._open.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._open.discard(self)
        if self._busy is not None:
            self._busy.cancel()

    def data_received(self, data: bytes) -> None:
        if self._busy is not None:
            self._queued.append(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not served")
        except httptools.HttpParserError:
            self._fail(400, "malformed HTTP request")

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > _MAX_HEADERS_BYTES:
            raise httptools.HttpParserError("headers too large")
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > _MAX_BODY_BYTES:
            raise httptools.HttpParserError("body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        close = not self._parser.should_keep_alive()
        path = httptools.parse_url(self._url).path.decode("latin-1")
        method = self._parser.get_method().decode("latin-1")
        self._handle((method, path, self._headers, b"".join(self._body), close))

    def _handle(self, request: _Request) -> None:
        """Answer in arrival order: behind a management request, the next ones wait."""
        if self._busy is not None:
            self._waiting.append(request)
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        method, path, headers, body, close = request
        if MANAGEMENT_PATHS.get(path) == method:
            self._busy = self._loop.create_task(self._management(request))
            transport.pause_reading()
            return
        try:
            status, out, answer = http_answer(self._authz, headers)
        except Exception:  # noqa: BLE001 - a bug must refuse (fail closed), not drop the proxy
            status, out, answer = 500, [], b'{"error":{"type":"internal_error"}}'
        transport.write(_response(status, out, answer, close))
        if close:
            transport.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- the rest ----------------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None:
            error = {"type": "invalid_request_error", "message": message}
            body = json.dumps({"error": error}).encode()
            self._transport.write(_response(status, [], body, True))
            self._transport.close()

    async def _management(self, request: _Request) -> None:
        method, path, request_headers, body, close = request
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                chunks.append(message.get("body", b""))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": request_headers,
            "client": None,
            "server": None,
        }
        try:
            await self._authz.app.rest(scope, receive, send)
            headers = [
                (k, v) for k, v in started.get("headers", []) if k.lower() != b"content-length"
            ]
            answer = _response(started.get("status", 500), headers, b"".join(chunks), close)
        except Exception:  # noqa: BLE001 - answered as a 500, the connection goes on
            answer = _response(500, [], b'{"error":{"type":"internal_error"}}', close)
        transport = self._transport
        self._busy = None
        if transport is None:
            return
        transport.write(answer)
        if close:
            transport.close()
            return
        waiting, self._waiting = self._waiting, []
        for i, queued in enumerate(waiting):
            self._handle(queued)
            if self._busy is not None:  # another management request: the rest wait again
                self._waiting = waiting[i + 1 :] + self._waiting
                return
        transport.resume_reading()
        data, self._queued = self._queued, []
        for chunk in data:
            self.data_received(chunk)


class AuthzServer:
    """authz's HTTP server on a bound socket: in the foreground (``serve_forever``) or on a
    background thread (``start``/``stop``, loopback only, like ``GatewayApp``)."""

    def __init__(self, authz: Authz, sock: socket.socket) -> None:
        self.authz = authz
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self._sock.getsockname()[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def _serve(self, on_ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        await self.authz.startup()
        connections: set[_Connection] = set()
        server = await loop.create_server(
            lambda: _Connection(self.authz, loop, connections), sock=self._sock
        )
        try:
            if on_ready is not None:
                on_ready()
            await self._stop.wait()
        finally:
            server.close()
            # kept-alive connections too: a proxy must see authz gone, not a silent peer
            for connection in list(connections):
                connection.close()
            await server.wait_closed()
            await self.authz.shutdown()

    def serve_forever(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
        """Serve until SIGINT/SIGTERM (the table is loaded first: ``load_initial``)."""
        self.authz.load_initial()
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            loop = runner.get_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_stop)
            runner.run(self._serve())

    def request_stop(self) -> None:
        loop = self._loop
        if loop is not None and self._stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop.set)

    def start(self) -> str:
        self.authz.load_initial()

        def main() -> None:
            try:
                asyncio.run(self._serve(self._ready.set))
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=main, name="authz", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"authz did not start: {self._error!r}")
        return self.url

    def stop(self) -> None:
        """Stop serving and wait for it (idempotent); the port then refuses connections."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._sock.close()
