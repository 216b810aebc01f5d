"""The foreground server's listening socket: clear errors, and no Nagle stalls."""

from __future__ import annotations

import asyncio
import socket

import pytest

from orchestrator.errors import UsageError
from orchestrator.gateway.server import bind


def test_accepted_connections_have_nodelay() -> None:
    # asyncio disables Nagle only on sockets whose proto is TCP; without it a response written
    # as headers + body waits ~40 ms for a delayed ACK.
    listener = bind("127.0.0.1", 0)
    port = listener.getsockname()[1]
    seen: list[int] = []

    async def main() -> None:
        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_busy_port_is_a_usage_error() -> None:
    first = bind("127.0.0.1", 0)
    try:
        with pytest.raises(UsageError, match="cannot listen"):
            bind("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
