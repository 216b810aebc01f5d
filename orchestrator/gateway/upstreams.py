"""The gateway's upstream HTTP client: one aiohttp connection pool per upstream base URL.

Why aiohttp and not httpx: the gateway is CPU-bound on a proxied request's client side, and
httpx/httpcore walk every pooled connection (a ``poll`` syscall per idle socket) on every
request; aiohttp's connector hands out an idle connection without scanning the pool, and its
HTTP parser is in C. Measured in ``bench/gateway.py`` (see docs/performance.md, "Gateway").

One pool per upstream: a hanging site can exhaust only its own connections, never the ones
failover needs to reach the next site of the route. Every failure is reduced to a short,
client-independent name (``ConnectError``, ``timeout``, ...) that the gateway reports in
``sites_tried`` and the health book, so no aiohttp exception escapes this module's callers.

Sessions are created lazily inside the serving event loop (aiohttp binds them to it) and
closed by ``close()`` from the same loop.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

__all__ = ["UPSTREAM_ERRORS", "UpstreamPool", "failure_name"]

# What an upstream attempt may raise; anything else is a bug and propagates.
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)


def failure_name(exc: BaseException) -> str:
    """A stable name for an upstream failure: ``timeout`` (connect, pool wait or read),
    ``ConnectError`` (refused or unreachable), else the class name."""
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts subclass it too
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError"
    return type(exc).__name__


class UpstreamPool:
    """Lazily created ``aiohttp.ClientSession`` per upstream base URL."""

    def __init__(
        self,
        *,
        max_connections: int,
        timeout_s: float,
        connect_timeout_s: float,
        keepalive_s: float = 4.0,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        # connect= bounds waiting for a pooled connection plus opening one (httpx's "pool"
        # timeout); sock_connect= the TCP connect itself; sock_read= silence between reads.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=timeout_s,
        )
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._urls: dict[tuple[str, str], URL] = {}

    def session_for(self, base: str) -> aiohttp.ClientSession:
        session = self._sessions.get(base)
        if session is None:
            # Idle connections are dropped before common servers' own keep-alive limit (uvicorn:
            # 5 s), so a request is not sent on a connection the server is just closing.
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                keepalive_timeout=self._keepalive_s,
                ttl_dns_cache=10,
            )
            session = self._sessions[base] = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,  # never route upstream calls through an environment proxy
                # Never keep an upstream's cookies: the next request is another principal's.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return session

    def url(self, base: str, path: str) -> URL:
        """``base + path`` parsed once (model paths are a fixed set; bases come from the
        table), not on every request."""
        key = (base, path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 1024:  # bases change with tables: never grow without bound
                self._urls.clear()
            url = self._urls[key] = URL(base + path)
        return url

    async def close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions))
