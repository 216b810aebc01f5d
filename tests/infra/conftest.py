"""Fixtures for the Pulumi program tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def pulumi_event_loop() -> Iterator[None]:
    """Pulumi's mock harness schedules work on ``asyncio.get_event_loop()``. A test that ran
    ``asyncio.run`` earlier in the session (the gateway's) leaves the main thread with no
    current loop, so each Pulumi test gets its own, closed afterwards."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()
