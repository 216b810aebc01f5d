"""Any ASGI app under uvicorn in a background thread, on loopback only.

The stub upstreams run this way inside the gateway's process, and so do the gateway itself and
other small servers when tests, the demo or the benchmarks start them in-process.
"""

from __future__ import annotations

import ipaddress
import threading
import time

import uvicorn
from starlette.types import ASGIApp

from orchestrator.errors import UsageError

__all__ = ["BackgroundServer", "is_loopback"]

_STARTUP_TIMEOUT_S = 10.0


def is_loopback(host: str) -> bool:
    """True for names and addresses that never leave this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BackgroundServer:
    """An ASGI app under uvicorn in a daemon thread, bound to loopback.

    ``start`` returns once the socket accepts connections; ``stop`` shuts the server down
    and waits for the thread, after which the port refuses connections.
    """

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, name: str = "asgi"
    ) -> None:
        if not is_loopback(host):
            raise UsageError(
                f"refusing to bind {host}: in-process servers listen on loopback only",
                hint="use 127.0.0.1, ::1 or localhost",
            )
        self.host = host
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.host} did not start")
            time.sleep(0.005)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self._server.started
