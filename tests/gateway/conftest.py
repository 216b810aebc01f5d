"""Fixtures: the identity provider's key, and a gateway with stub upstreams on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.support import Keys, Running, make_keys, running_gateway


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("idp"))


@pytest.fixture(scope="module")
def shared_gw(keys: Keys) -> Iterator[Running]:
    """A gateway shared by tests that do not change its health or table."""
    with running_gateway(keys) as running:
        yield running


@pytest.fixture
def gw(keys: Keys) -> Iterator[Running]:
    """A gateway of one's own, for tests that kill upstreams or swap tables."""
    with running_gateway(keys) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: never send loopback test traffic through an environment proxy.
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c
