"""Route-decision benchmark: the compiled RouteTable on a large generated fleet.

Prints figures, asserts nothing (the property tests own correctness; this script only spot
checks that the table agrees with the reference rules on a sample before timing it).

    .venv/bin/python bench/route.py [--queries N] [--runs R] [--seed S]

Fleet: 30 jurisdictions, 150 sites, 200 models, 10,000 directives (suspend and withdraw, every
audience predicate, expiries, supersession). Measured: compile time, single-thread decisions
per second (median of R runs over N random queries), p50/p99 latency of single calls, and the
incremental recompile after one directive is added. Side by side, if litellm is installed
(``pip install -e '.[bench]'``): LiteLLM's Router picking a deployment with region filtering
(``enable_pre_call_checks=True``, ``allowed_model_region``) on the region-only equivalent.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import string
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.fleet.model import (  # noqa: E402
    ALL_MODELS,
    Action,
    Audience,
    Directive,
    Fleet,
    FleetSettings,
    Jurisdiction,
    Model,
    Site,
    Unlisted,
)
from orchestrator.policy import rules  # noqa: E402
from orchestrator.policy.principal import Principal  # noqa: E402
from orchestrator.policy.table import RouteTable  # noqa: E402

N_JURISDICTIONS = 30
SITES_PER_JURISDICTION = 5
N_MODELS = 200
N_DIRECTIVES = 10_000
START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_SECONDS = 365 * 24 * 3600
GROUPS = ("trusted-partners", "researchers", "staff", "government")


def _countries() -> list[str]:
    """Two-letter codes: 7 per jurisdiction, plus unlisted ones."""
    codes = [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase]
    return codes


def generate_fleet(seed: int) -> Fleet:
    rng = random.Random(seed)
    codes = _countries()
    rng.shuffle(codes)
    jids = [f"J{i:02d}" for i in range(N_JURISDICTIONS)]
    countries = {j: frozenset(codes[i * 7 : i * 7 + 7]) for i, j in enumerate(jids)}
    model_ids = [f"model-{i:03d}" for i in range(N_MODELS)]
    models = {
        m: Model(
            m,
            origin=rng.choice(jids),
            export_control="open" if rng.random() < 0.3 else "restricted",
            artifact=f"s3://models/{m}/",
        )
        for m in model_ids
    }
    sites: dict[str, Site] = {}
    own_sites: dict[str, list[str]] = {}
    for j in jids:
        own_sites[j] = []
        for k in range(SITES_PER_JURISDICTION):
            sid = f"{j.lower()}-site-{k}"
            governed_by = frozenset({rng.choice(jids)} - {j}) if rng.random() < 0.2 else frozenset()
            sites[sid] = Site(
                sid, j, "local", sid, next(iter(countries[j])), f"op-{j}",
                governed_by, governed_by | {j},
            )
            own_sites[j].append(sid)
    jurisdictions = {}
    for j in jids:
        process_in = frozenset({j, *rng.sample(jids, rng.randint(0, 2))})
        failover = tuple(rng.sample(own_sites[j], 3))
        jurisdictions[j] = Jurisdiction(
            j, f"Jurisdiction {j}", countries[j], (), 1, process_in,
            {"restricted": frozenset(rng.sample(jids, rng.randint(3, 8)))},
            frozenset(rng.sample(model_ids, int(N_MODELS * 0.6))),
            tuple(own_sites[j]), failover, 1, f"{j.lower()}.yaml",
        )
    directives: dict[str, Directive] = {}
    by_juris: dict[str, list[str]] = {j: [] for j in jids}
    for i in range(N_DIRECTIVES):
        did = f"d{i:05d}"
        j = rng.choice(jids)
        action = Action.WITHDRAW if rng.random() < 0.1 else Action.SUSPEND
        named = (
            frozenset({ALL_MODELS}) if rng.random() < 0.005
            else frozenset(rng.sample(model_ids, rng.randint(1, 3)))
        )
        audience = Audience()
        if action is Action.SUSPEND:
            r = rng.random()
            foreign = frozenset(rng.sample(codes[: N_JURISDICTIONS * 7], 5))
            audience = Audience(
                nationality_not_in=countries[j] if r < 0.5 else None,
                nationality_in=foreign if 0.5 <= r < 0.85 else None,
                residency_in=frozenset(rng.sample(codes[:210], 20)) if rng.random() < 0.2
                else None,
                except_groups=frozenset(rng.sample(GROUPS, 1)) if rng.random() < 0.3
                else frozenset(),
            )
        effective = START + timedelta(seconds=rng.randrange(YEAR_SECONDS))
        expires = (
            effective + timedelta(days=rng.randint(1, 120)) if rng.random() < 0.5 else None
        )
        earlier = by_juris[j]
        supersedes = rng.choice(earlier) if earlier and rng.random() < 0.1 else None
        if supersedes is not None and directives[supersedes].effective >= effective:
            supersedes = None
        directives[did] = Directive(
            did, j, f"{j}-authority", f"directive {did}", action, named, audience,
            effective, expires, supersedes, f"directives/{did}.yaml", "0" * 64,
        )
        by_juris[j].append(did)
    return Fleet(
        jurisdictions, sites, models, directives,
        settings=FleetSettings(unlisted_countries=Unlisted.DENY),
        digest=f"bench-{seed}",
    )


def generate_queries(
    fleet: Fleet, n: int, seed: int
) -> list[tuple[str, Principal, datetime]]:
    rng = random.Random(seed + 1)
    listed = sorted(fleet.country_home)
    everyone = _countries()
    model_ids = sorted(fleet.models)
    out = []
    for _ in range(n):
        residency = rng.choice(listed) if rng.random() < 0.97 else rng.choice(everyone)
        nats = frozenset(rng.sample(listed, rng.choice((0, 1, 1, 1, 2))))
        groups = frozenset(rng.sample(GROUPS, 1)) if rng.random() < 0.2 else frozenset()
        at = START + timedelta(seconds=rng.randrange(YEAR_SECONDS))
        out.append((rng.choice(model_ids), Principal(residency, nats, groups), at))
    return out


def timed_decisions(table: RouteTable, queries: list[tuple[str, Principal, datetime]]) -> float:
    """Decisions per second for one pass over ``queries``."""
    route = table.route
    t0 = time.perf_counter_ns()
    for m, p, at in queries:
        route(m, p, at)
    return len(queries) / ((time.perf_counter_ns() - t0) / 1e9)


def latencies_ns(
    table: RouteTable, queries: list[tuple[str, Principal, datetime]]
) -> list[int]:
    """Single-call latencies, minus the median cost of reading the clock twice."""
    clock = time.perf_counter_ns
    overhead = statistics.median(-(clock() - clock()) for _ in range(10_000))
    route = table.route
    out = []
    for m, p, at in queries:
        t0 = clock()
        route(m, p, at)
        out.append(clock() - t0 - int(overhead))
    return out


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def litellm_router_rate(fleet: Fleet, n: int, runs: int, seed: int) -> float | None:
    """Deployments/s for LiteLLM's Router choosing a deployment with region filtering, on the
    region-only equivalent (one deployment per (model, site) where the model is offered and
    exportable; the principal's allowed region is its home)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    import asyncio
    import logging

    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    litellm.suppress_debug_info = True
    rng = random.Random(seed)
    # LiteLLM knows regions as "eu"/"us"-style labels; map each site's owner to a label.
    model_list: list[dict[str, Any]] = []
    for m in sorted(fleet.models)[:50]:  # the Router builds per-deployment state: keep it sane
        for sid, site in fleet.sites.items():
            if rules.offered(fleet, m, sid) and rules.export_allowed(fleet, m, sid):
                model_list.append({
                    "model_name": m,
                    "litellm_params": {
                        "model": f"openai/{m}", "api_base": f"http://127.0.0.1:9/{sid}",
                        "api_key": "x", "region_name": "eu" if site.jurisdiction < "J15" else "us",
                    },
                    "model_info": {"id": f"{m}@{sid}"},
                })
    router = litellm.Router(model_list=model_list, enable_pre_call_checks=True)
    names = sorted({d["model_name"] for d in model_list})
    picks = [(rng.choice(names), rng.choice(("eu", "us"))) for _ in range(min(n, 20_000))]

    async def one_pass() -> float:
        t0 = time.perf_counter_ns()
        for model, region in picks:
            await router.async_get_available_deployment(
                model=model,
                messages=[{"role": "user", "content": "hi"}],
                request_kwargs={"allowed_model_region": region},
            )
        return len(picks) / ((time.perf_counter_ns() - t0) / 1e9)

    rates = [asyncio.run(one_pass()) for _ in range(runs)]
    return statistics.median(rates)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    t0 = time.perf_counter()
    fleet = generate_fleet(args.seed)
    print(
        f"fleet: {len(fleet.jurisdictions)} jurisdictions, {len(fleet.sites)} sites, "
        f"{len(fleet.models)} models, {len(fleet.directives)} directives "
        f"(generated in {time.perf_counter() - t0:.2f} s)"
    )
    compile_times = []
    table = RouteTable.compile(fleet)
    for _ in range(3):
        t0 = time.perf_counter()
        table = RouteTable.compile(fleet)
        compile_times.append(time.perf_counter() - t0)
    print(f"compile: median {statistics.median(compile_times):.3f} s of 3")

    queries = generate_queries(fleet, args.queries, args.seed)
    sample = queries[:300]
    mismatches = sum(table.route(m, p, at) != rules.route(fleet, m, p, at) for m, p, at in sample)
    print(f"spot check vs rules.route: {len(sample) - mismatches}/{len(sample)} agree")
    served = sum(bool(table.route(m, p, at)) for m, p, at in queries[:20_000])
    print(f"queries: {len(queries)} random principals/models/instants, "
          f"{served / 200:.1f}% served")

    timed_decisions(table, queries[:20_000])  # warm up
    rates = [timed_decisions(table, queries) for _ in range(args.runs)]
    rate = statistics.median(rates)
    print(f"decisions/s (single thread): median {rate:,.0f} of {args.runs} runs "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    lat = latencies_ns(table, queries[:100_000])
    print(f"latency per decision: p50 {percentile(lat, 0.5) / 1000:.2f} us, "
          f"p99 {percentile(lat, 0.99) / 1000:.2f} us, "
          f"p99.9 {percentile(lat, 0.999) / 1000:.2f} us")

    new = fleet.directives["d00000"]
    extra = Directive(**{
        **{f: getattr(new, f) for f in Directive.__slots__},
        "id": "bench-new", "supersedes": None, "models": frozenset({"model-007"}),
    })
    grown = fleet.with_directives({**fleet.directives, extra.id: extra})
    t0 = time.perf_counter()
    RouteTable.compile(grown, previous=table)
    print(f"recompile after adding one directive: {(time.perf_counter() - t0) * 1000:.0f} ms "
          f"(full compile {statistics.median(compile_times) * 1000:.0f} ms)")

    lite = litellm_router_rate(fleet, args.queries, 3, args.seed)
    if lite is None:
        print("litellm not installed: pip install -e '.[bench]'")
    else:
        print(f"LiteLLM Router (region filter, pre-call checks): median {lite:,.0f} picks/s; "
              f"Sovereign table is {rate / lite:,.0f}x faster")


if __name__ == "__main__":
    main()
