"""Running the gateway: in-process on a loopback thread (tests, demo, bench) or in the
foreground under uvicorn (``sovereign gateway``).

Both paths load and verify the first table *before* the server binds, so a gateway with nothing
valid to serve never accepts a connection: it fails with the reason and a hint instead.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

from orchestrator.errors import UsageError
from orchestrator.gateway.core import Enforcer
from orchestrator.stubs.server import BackgroundServer

__all__ = ["GatewayApp", "bind", "event_loop_factory", "run", "serve"]


class GatewayApp:
    """A gateway (or ``sovereign authz``: any ``Enforcer``) on a loopback port in a background
    thread: ``start()`` returns its URL."""

    def __init__(self, gateway: Enforcer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.gateway = gateway
        self._server = BackgroundServer(gateway.app, host, port, name=gateway.name)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> str:
        self.gateway.load_initial()
        return self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> GatewayApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Bind the listening socket up front, so a busy port is a clear error, not a log line.

    ``reuse_port``: several processes may each bind the same port (``SO_REUSEPORT``; the
    kernel spreads connections over those listening). ``listen=False`` only reserves it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio disables Nagle (TCP_NODELAY) only on sockets that do, and
    # with Nagle on, a response written as headers + body stalls ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        if not hasattr(socket, "SO_REUSEPORT"):
            sock.close()
            raise UsageError(
                "--workers needs SO_REUSEPORT, which this platform lacks",
                hint="run one worker (--workers 1), several behind a load balancer",
            )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --port, or stop what is listening there",
        ) from None
    if listen:
        sock.listen(2048)
    return sock


async def serve(
    gateway: Enforcer, host: str = "127.0.0.1", port: int = 8080, sock: socket.socket | None = None
) -> None:
    """Serve in the foreground until interrupted (SIGINT/SIGTERM stop it gracefully)."""
    gateway.load_initial()
    listener = sock if sock is not None else bind(host, port)
    config = uvicorn.Config(
        gateway.app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # httptools parses HTTP/1.1 in C when installed (h11 otherwise); the gateway reads no
        # client address, so X-Forwarded-* rewriting would be work for nothing.
        http="auto",
        proxy_headers=False,
    )
    await uvicorn.Server(config).serve(sockets=[listener])


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (a cheaper event loop: the gateway is CPU-bound per
    request), else None (asyncio's default)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(
    gateway: Enforcer, host: str = "127.0.0.1", port: int = 8080, sock: socket.socket | None = None
) -> None:
    """``serve`` in the foreground on a fresh event loop (uvloop when installed)."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(gateway, host, port, sock))
