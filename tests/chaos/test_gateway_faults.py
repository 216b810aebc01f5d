"""The gateway under upstream faults fails over inside the route only.

Every site's upstream is a stub behind its own fault proxy (throttling, 5xx, resets, hangs,
slow and cut bodies, at random with a seed). Requests go one at a time over real HTTP, so the
proxies' counters say exactly which sites each request touched: every site tried, failed or
not, is in ``rules.route`` for the token's principal, a 200 names a site of the route, and an
empty route is a 451 that touched no site at all. ``SOVEREIGN_CHAOS_RUNS`` x 5 requests under
``make chaos``, 30 in the default run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from orchestrator.fleet.model import Fleet
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from orchestrator.stubs.upstream import start_stub
from tests.chaos.conftest import count, runs
from tests.chaos.proxy import FaultProxy
from tests.gateway.support import make_fleet, make_keys, running_gateway

pytestmark = pytest.mark.slow


@pytest.fixture
def faulty_fleet() -> Iterator[tuple[Fleet, dict[str, FaultProxy]]]:
    base = make_fleet()
    seed = int(os.environ.get("SOVEREIGN_CHAOS_SEED", "13"))
    with ExitStack() as stack:
        proxies: dict[str, FaultProxy] = {}
        sites = {}
        for i, (sid, site) in enumerate(sorted(base.sites.items())):
            stub = start_stub(sid, models=base.models)
            stack.callback(stub.stop)
            proxy = FaultProxy(f"http://127.0.0.1:{stub.port}", seed=seed + i, rate=0.3, hang=0.3)
            sites[sid] = replace(site, endpoint=stack.enter_context(proxy))
            proxies[sid] = proxy
        yield replace(base, sites=sites), proxies


def test_failover_stays_inside_the_route(
    faulty_fleet: tuple[Fleet, dict[str, FaultProxy]], tmp_path: Path
) -> None:
    fleet, proxies = faulty_fleet
    keys = make_keys(tmp_path)
    rng = random.Random(int(os.environ.get("SOVEREIGN_CHAOS_SEED", "13")))
    requests = 30 if runs() <= 3 else runs() * 5
    with running_gateway(keys, fleet, upstream_timeout_s=0.5, base_backoff_s=0.05) as gw:
        with httpx.Client(trust_env=False, timeout=30) as client:
            for _ in range(requests):
                residency = rng.choice(["US", "DE", "FR", "JP"])
                nationality = rng.choice(["US", "DE", "JP"])
                model = rng.choice(["fable-5", "olmo-3", "mistral"])
                route = rules.route(
                    fleet,
                    model,
                    Principal(residency, frozenset({nationality}), frozenset()),
                    datetime.now(UTC),
                )
                before = {sid: sum(p.counts.values()) for sid, p in proxies.items()}
                answer = client.post(
                    f"{gw.url}/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                    headers=keys.headers(residency, [nationality]),
                )
                touched = {
                    sid for sid, p in proxies.items() if sum(p.counts.values()) > before[sid]
                }
                assert touched <= set(route), (model, residency, route, touched)
                if not route:
                    assert answer.status_code == 451 and not touched
                    count("gateway upstream faults", "451 (empty route, no site touched)")
                elif answer.status_code == 200:
                    assert answer.headers["x-sovereign-site"] in route
                    outcome = "200 after failover" if len(touched) > 1 else "200"
                    count("gateway upstream faults", f"{outcome} inside the route")
                else:
                    # a throttling upstream's 429 is relayed (the client backs off); 5xx when
                    # every site of the route failed
                    assert answer.status_code in (429, 500, 502, 503, 504), answer.text[:300]
                    assert touched, "an error without trying any site of a non-empty route"
                    count(
                        "gateway upstream faults", f"{answer.status_code} (upstream's or exhausted)"
                    )
    for proxy in proxies.values():
        for fault, n in proxy.counts.items():
            count("gateway upstream faults: requests through the proxies", fault, n)
