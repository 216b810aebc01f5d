"""A fault-injecting HTTP proxy on 127.0.0.1, put in front of moto or fake-gcs-server.

Each request the proxy receives is, with probability ``rate`` (from a seeded generator, so a
campaign is repeatable), answered with one fault instead of being forwarded faithfully:

    throttle   503 SlowDown (S3's throttling answer) or 429 Too Many Requests
    error      500 InternalError or 502 Bad Gateway
    reset      the connection reset (RST) before any answer
    timeout    the connection held without an answer for ``hang`` seconds, then dropped
    slow       the upstream's answer, its body trickled in small pieces
    cut        the upstream's answer with its full Content-Length, the body cut off half way

One request per client connection (the proxy answers ``Connection: close``), plain asyncio,
no dependency: the campaign owns exactly what it injects. ``counts`` says what it did.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

FAULTS = ("throttle", "error", "reset", "timeout", "slow", "cut")
_THROTTLE = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n",
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>",
)
_TOO_MANY = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nConnection: close\r\n",
    b'{"error": {"code": 429, "message": "rate limit exceeded"}}',
)
_INTERNAL = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nConnection: close\r\n",
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
    b"<Message>We encountered an internal error. Please try again.</Message></Error>",
)
_BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n",
    b"bad gateway",
)


class FaultProxy:
    """``with FaultProxy(upstream_url, seed=1, rate=0.2) as url:`` point a client at ``url``."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int,
        rate: float,
        hang: float = 1.0,
        trickle: float = 0.002,
        spare: Callable[[bytes], bool] = lambda _line: False,
    ) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rng = random.Random(seed)
        self.rate = rate
        self._hang = hang
        self._trickle = trickle
        self._spare = spare  # request lines (b"POST /path HTTP/1.1") never faulted
        self.counts: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def __enter__(self) -> str:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(10)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _choose(self) -> str:
        if self.rate > 0 and self._rng.random() < self.rate:
            return FAULTS[self._rng.randrange(len(FAULTS))]
        return "pass"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            fault = "spared" if self._spare(request.split(b"\r\n", 1)[0]) else self._choose()
            self.counts[fault] += 1
            if fault == "throttle":
                await _answer(writer, *(_THROTTLE if self._rng.random() < 0.5 else _TOO_MANY))
            elif fault == "error":
                await _answer(writer, *(_INTERNAL if self._rng.random() < 0.5 else _BAD_GATEWAY))
            elif fault == "reset":
                _reset(writer)
            elif fault == "timeout":
                await asyncio.sleep(self._hang)
                _reset(writer)
            else:
                answer = await self._forward(request)
                if fault == "cut":
                    head, _, body = answer.partition(b"\r\n\r\n")
                    writer.write(head + b"\r\n\r\n" + body[: len(body) // 2])
                    await writer.drain()
                    _reset(writer)
                elif fault == "slow":
                    for i in range(0, len(answer), 256):
                        writer.write(answer[i : i + 256])
                        await writer.drain()
                        await asyncio.sleep(self._trickle)
                else:
                    writer.write(answer)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def _forward(self, request: bytes) -> bytes:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        try:
            up_writer.write(request)
            await up_writer.drain()
            return await up_reader.read(-1)  # the upstream closes: we asked Connection: close
        finally:
            up_writer.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request, rewritten to ``Connection: close``; None when the client sent nothing."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].split(b"\r\n")
    headers = [
        ln for ln in lines[1:] if not ln.lower().startswith((b"connection:", b"keep-alive:"))
    ]
    length, chunked = 0, False
    for line in headers:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    body = await (_read_chunked(reader) if chunked else reader.readexactly(length))
    return b"\r\n".join([lines[0], *headers, b"Connection: close"]) + b"\r\n\r\n" + body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    raw = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the blank line
                trailer = await reader.readuntil(b"\r\n")
                raw += trailer
                if trailer == b"\r\n":
                    return raw
        raw += await reader.readexactly(size + 2)


async def _answer(writer: asyncio.StreamWriter, head: bytes, body: bytes) -> None:
    writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
