"""Route-decision benchmark: the compiled RouteTable on a large generated fleet.

Prints figures, asserts nothing (the property tests own correctness; this script only spot
checks that the table agrees with the reference rules on a sample before timing it).

    .venv/bin/python bench/route.py [--queries N] [--runs R] [--seed S]

Fleet: 30 jurisdictions, 150 sites, 200 models, 10,000 directives (suspend and withdraw, every
audience predicate, expiries, supersession). Measured: compile time, single-thread decisions
per second (median of R runs over N random queries), p50/p99 latency of single calls, and the
incremental recompile after one directive is added. Warm figures replay the same queries on one
table; cold figures use a freshly compiled table (no per-entry bit tables or memoised routes yet)
and principals it has never seen, one pass each.

Side by side, when the peers are installed (``make bench-peers``):
- Cedar (``cedarpy``): the same fleet as Cedar entities and policies at one instant (see
  bench/cedar_peer.py). Every run first checks that Cedar's allowed-site set equals the table's
  route set on ``--cedar-queries`` random queries (default 3,000) and exits non-zero if one
  differs; then times, alternating in this process, table routes/s, Cedar single decisions/s
  (on the model's policy slice, and on the whole policy set) and Cedar routes/s (all sites of
  one query in one batched call), and prints the ratios.
- LiteLLM's Router picking a deployment with region filtering (``enable_pre_call_checks=True``,
  ``allowed_model_region``) on the region-only equivalent.
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

from orchestrator.fleet.model import (
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
from orchestrator.policy import rules
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable

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
                sid,
                j,
                "local",
                sid,
                next(iter(countries[j])),
                f"op-{j}",
                governed_by,
                governed_by | {j},
            )
            own_sites[j].append(sid)
    jurisdictions = {}
    for j in jids:
        process_in = frozenset({j, *rng.sample(jids, rng.randint(0, 2))})
        failover = tuple(rng.sample(own_sites[j], 3))
        jurisdictions[j] = Jurisdiction(
            j,
            f"Jurisdiction {j}",
            countries[j],
            (),
            1,
            process_in,
            {"restricted": frozenset(rng.sample(jids, rng.randint(3, 8)))},
            frozenset(rng.sample(model_ids, int(N_MODELS * 0.6))),
            tuple(own_sites[j]),
            failover,
            1,
            f"{j.lower()}.yaml",
        )
    directives: dict[str, Directive] = {}
    by_juris: dict[str, list[str]] = {j: [] for j in jids}
    for i in range(N_DIRECTIVES):
        did = f"d{i:05d}"
        j = rng.choice(jids)
        action = Action.WITHDRAW if rng.random() < 0.1 else Action.SUSPEND
        named = (
            frozenset({ALL_MODELS})
            if rng.random() < 0.005
            else frozenset(rng.sample(model_ids, rng.randint(1, 3)))
        )
        audience = Audience()
        if action is Action.SUSPEND:
            r = rng.random()
            foreign = frozenset(rng.sample(codes[: N_JURISDICTIONS * 7], 5))
            audience = Audience(
                nationality_not_in=countries[j] if r < 0.5 else None,
                nationality_in=foreign if 0.5 <= r < 0.85 else None,
                residency_in=frozenset(rng.sample(codes[:210], 20)) if rng.random() < 0.2 else None,
                except_groups=frozenset(rng.sample(GROUPS, 1))
                if rng.random() < 0.3
                else frozenset(),
            )
        effective = START + timedelta(seconds=rng.randrange(YEAR_SECONDS))
        expires = effective + timedelta(days=rng.randint(1, 120)) if rng.random() < 0.5 else None
        earlier = by_juris[j]
        supersedes = rng.choice(earlier) if earlier and rng.random() < 0.1 else None
        if supersedes is not None and directives[supersedes].effective >= effective:
            supersedes = None
        directives[did] = Directive(
            did,
            j,
            f"{j}-authority",
            f"directive {did}",
            action,
            named,
            audience,
            effective,
            expires,
            supersedes,
            f"directives/{did}.yaml",
            "0" * 64,
        )
        by_juris[j].append(did)
    return Fleet(
        jurisdictions,
        sites,
        models,
        directives,
        settings=FleetSettings(unlisted_countries=Unlisted.DENY),
        digest=f"bench-{seed}",
    )


def generate_queries(fleet: Fleet, n: int, seed: int) -> list[tuple[str, Principal, datetime]]:
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


def timed_decisions(
    table: RouteTable, queries: list[tuple[str, Principal, datetime]], at: datetime | None
) -> tuple[float, float]:
    """(wall, CPU) decisions per second for one pass over ``queries``; ``at`` None keeps each
    query's own instant, otherwise every query is asked at ``at`` (the gateway's "now")."""
    route = table.route
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    if at is None:
        for m, p, when in queries:
            route(m, p, when)
    else:
        for m, p, _ in queries:
            route(m, p, at)
    wall, cpu = time.perf_counter_ns() - t0, time.process_time_ns() - c0
    return len(queries) / (wall / 1e9), len(queries) / (max(cpu, 1) / 1e9)


def latencies_ns(
    table: RouteTable, queries: list[tuple[str, Principal, datetime]], at: datetime
) -> list[int]:
    """Single-call latencies, minus the median cost of reading the clock twice."""
    clock = time.perf_counter_ns
    overhead = statistics.median(-(clock() - clock()) for _ in range(10_000))
    route = table.route
    out = []
    for m, p, _ in queries:
        t0 = clock()
        route(m, p, at)
        out.append(clock() - t0 - int(overhead))
    return out


def noop_call_ns() -> float:
    """What one empty Python call costs on this machine right now: the yardstick for how much
    any pure-Python decision can cost (a route is a call plus a few lookups)."""

    def noop(a: object, b: object, c: object) -> None:
        return None

    n = 1_000_000
    t0 = time.perf_counter_ns()
    for _ in range(n):
        noop(1, 2, 3)
    return (time.perf_counter_ns() - t0) / n


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def litellm_router_rate(fleet: Fleet, n: int, runs: int, seed: int) -> float | None:
    """Picks/s of LiteLLM's Router choosing a deployment with region filtering, on the
    region-only equivalent: one deployment per (model, site) where the model is offered and
    exportable, ``region_name`` = the site's jurisdiction, and the principal's home as
    ``allowed_model_region`` (so only R1-R3 by region, no nationality, groups or directives)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError:
        return None
    import asyncio
    import logging
    import warnings

    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    rng = random.Random(seed)
    model_list: list[dict[str, Any]] = []
    # The Router keeps per-deployment state; 20 models x their sites keeps construction short.
    for m in sorted(fleet.models)[:20]:
        for sid, site in fleet.sites.items():
            if rules.offered(fleet, m, sid) and rules.export_allowed(fleet, m, sid):
                model_list.append(
                    {
                        "model_name": m,
                        "litellm_params": {
                            "model": f"openai/{m}",
                            "api_base": f"http://127.0.0.1:9/{sid}",
                            "api_key": "unused",
                            "region_name": site.jurisdiction,
                        },
                        "model_info": {"id": f"{m}@{sid}"},
                    }
                )
    router = litellm.Router(model_list=model_list, enable_pre_call_checks=True)
    deployments: dict[str, set[str]] = {}
    for d in model_list:
        deployments.setdefault(d["model_name"], set()).add(d["litellm_params"]["region_name"])
    # only (model, region) pairs with a deployment: LiteLLM raises when nothing is left
    pairs = sorted((m, r) for m, regions in deployments.items() for r in regions)
    # each pick costs milliseconds (model-info lookups per deployment): a few hundred suffice
    picks = [rng.choice(pairs) for _ in range(min(n, 300))]
    messages = [{"role": "user", "content": "hi"}]

    async def one_pass(batch: list[tuple[str, str]]) -> float:
        t0 = time.perf_counter_ns()
        for model, region in batch:
            picked = await router.select(model, {"allowed_model_region": region}, messages=messages)
            assert isinstance(picked, dict) and picked["litellm_params"]["region_name"] == region
        return len(batch) / ((time.perf_counter_ns() - t0) / 1e9)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        asyncio.run(one_pass(picks[:30]))  # warm up
        rates = [asyncio.run(one_pass(picks)) for _ in range(runs)]
    return statistics.median(rates)


def cedar_side_by_side(
    fleet: Fleet,
    table: RouteTable,
    queries: list[tuple[str, Principal, datetime]],
    now: datetime,
    n_check: int,
    runs: int,
) -> None:
    """Cedar beside the table: agreement first (fatal if any query differs), then timings."""
    try:
        import cedarpy  # noqa: F401
    except ImportError:
        print("cedar: skipped, cedarpy not installed (make bench-peers)")
        return
    from cedar_peer import CedarFleet

    check = queries[:n_check]
    n_route, n_single, n_whole = 300, 3000, 100
    timed = queries[n_check : n_check + max(n_route, n_single)]
    t0 = time.perf_counter()
    cedar = CedarFleet(fleet, now, [p for _, p, _ in check + timed])
    print(
        f"cedar: {cedar.policy_count} policies at the instant (1 permit for R0-R3, one forbid "
        f"per directive in force), {len(cedar.person_ids)} principals as entities "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    t0 = time.perf_counter()
    differ = [
        (m, p) for m, p, _ in check if cedar.route_set(m, p) != frozenset(table.route(m, p, now))
    ]
    agreed = len(check) - len(differ)
    print(
        f"cedar agreement: allowed-site set == route set on {agreed}/{len(check)} queries "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    if differ:
        m, p = differ[0]
        raise SystemExit(
            f"cedar and the route table disagree on {len(differ)} queries, e.g. {m} for {p}: "
            f"cedar {sorted(cedar.route_set(m, p))}, table {sorted(table.route(m, p, now))}"
        )
    sites = cedar.sites
    table_rates, single_rates, whole_rates, route_rates = [], [], [], []
    for k in range(runs):
        # alternating: each round times every contender on the same queries
        t0 = time.perf_counter_ns()
        for m, p, _ in timed:
            table.route(m, p, now)
        table_rates.append(len(timed) / ((time.perf_counter_ns() - t0) / 1e9))
        t0 = time.perf_counter_ns()
        for i, (m, p, _) in enumerate(timed[:n_single]):
            cedar.allowed(m, p, sites[(i + k) % len(sites)])
        single_rates.append(n_single / ((time.perf_counter_ns() - t0) / 1e9))
        t0 = time.perf_counter_ns()
        for i, (m, p, _) in enumerate(timed[:n_whole]):
            cedar.allowed(m, p, sites[(i + k) % len(sites)], sliced=False)
        whole_rates.append(n_whole / ((time.perf_counter_ns() - t0) / 1e9))
        t0 = time.perf_counter_ns()
        for m, p, _ in timed[:n_route]:
            cedar.route_set(m, p)
        route_rates.append(n_route / ((time.perf_counter_ns() - t0) / 1e9))
    table_rate = statistics.median(table_rates)
    single = statistics.median(single_rates)
    whole = statistics.median(whole_rates)
    routes = statistics.median(route_rates)
    print(f"cedar side by side ({runs} alternating rounds, medians, one instant):")
    print(f"  table routes/s                        {table_rate:>12,.0f}")
    print(
        f"  cedar decisions/s (model's slice)     {single:>12,.0f}   "
        f"table routes/s is {table_rate / single:,.0f}x"
    )
    print(
        f"  cedar decisions/s (whole policy set)  {whole:>12,.1f}   "
        f"table routes/s is {table_rate / whole:,.0f}x"
    )
    print(
        f"  cedar routes/s ({len(sites)} sites, batched)   {routes:>12,.1f}   "
        f"table is {table_rate / routes:,.0f}x"
    )


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
    parser.add_argument(
        "--cedar-queries", type=int, default=3000, help="queries Cedar must agree on"
    )
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    t0 = time.perf_counter()
    fleet = generate_fleet(args.seed)
    print(
        f"fleet: {len(fleet.jurisdictions)} jurisdictions, {len(fleet.sites)} sites, "
        f"{len(fleet.models)} models, {len(fleet.directives)} directives "
        f"(generated in {time.perf_counter() - t0:.2f} s)"
    )
    compile_wall, compile_cpu = [], []
    table = RouteTable.compile(fleet)
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        table = RouteTable.compile(fleet)
        compile_wall.append(time.perf_counter() - t0)
        compile_cpu.append(time.process_time() - c0)
    print(
        f"compile: median {statistics.median(compile_wall):.2f} s wall, "
        f"{statistics.median(compile_cpu):.2f} s CPU (3 runs)"
    )

    queries = generate_queries(fleet, args.queries, args.seed)
    now = queries[0][2]
    sample = queries[:300]
    mismatches = sum(table.route(m, p, at) != rules.route(fleet, m, p, at) for m, p, at in sample)
    mismatches += sum(table.route(m, p, now) != rules.route(fleet, m, p, now) for m, p, _ in sample)
    print(f"spot check vs rules.route: {2 * len(sample) - mismatches}/{2 * len(sample)} agree")
    served = sum(bool(table.route(m, p, now)) for m, p, _ in queries[:20_000])
    print(
        f"queries: {len(queries)} random (model, principal) pairs, "
        f"{served / 200:.1f}% served at the fixed instant"
    )
    print(f"yardstick: an empty Python call costs {noop_call_ns():.0f} ns here now")

    rate = 0.0
    for label, at in (("at one instant (gateway: now)", now), ("at random instants", None)):
        timed_decisions(table, queries[:20_000], at)  # warm up
        runs = [timed_decisions(table, queries, at) for _ in range(args.runs)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"decisions/s {label}: median {wall:,.0f} wall, {cpu:,.0f} per CPU-second "
            f"({args.runs} runs, wall min {min(r[0] for r in runs):,.0f} "
            f"max {max(r[0] for r in runs):,.0f})"
        )
        if at is not None:
            rate = wall
    lat = latencies_ns(table, queries[:100_000], now)
    print(
        f"latency per decision (warm): p50 {percentile(lat, 0.5) / 1000:.2f} us, "
        f"p99 {percentile(lat, 0.99) / 1000:.2f} us, "
        f"p99.9 {percentile(lat, 0.999) / 1000:.2f} us"
    )

    # Cold: a freshly compiled table (no entry has built its bit tables or memoised a route
    # yet) asked principals it has never seen, one pass each, at the same instant.
    cold_rates, cold_lat = [], []
    for k in range(args.runs):
        fresh = generate_queries(fleet, args.queries, args.seed + 1000 + k)
        fresh_table = RouteTable.compile(fleet)
        cold_rates.append(timed_decisions(fresh_table, fresh, now)[0])
        if k < 3:
            cold_lat.extend(latencies_ns(RouteTable.compile(fleet), fresh[:100_000], now))
    print(
        f"decisions/s cold (fresh table, unseen principals, first pass): median "
        f"{statistics.median(cold_rates):,.0f} wall ({args.runs} runs, min "
        f"{min(cold_rates):,.0f} max {max(cold_rates):,.0f})"
    )
    print(
        f"latency per decision (cold, 3 fresh tables): p50 "
        f"{percentile(cold_lat, 0.5) / 1000:.2f} us, "
        f"p99 {percentile(cold_lat, 0.99) / 1000:.2f} us, "
        f"p99.9 {percentile(cold_lat, 0.999) / 1000:.2f} us"
    )

    new = fleet.directives["d00000"]
    extra = Directive(
        **{
            **{f: getattr(new, f) for f in Directive.__slots__},
            "id": "bench-new",
            "supersedes": None,
            "models": frozenset({"model-007"}),
        }
    )
    grown = fleet.with_directives({**fleet.directives, extra.id: extra})
    t0 = time.perf_counter()
    RouteTable.compile(grown, previous=table)
    print(
        f"recompile after adding one directive: {(time.perf_counter() - t0) * 1000:.0f} ms "
        f"(full compile {statistics.median(compile_wall) * 1000:.0f} ms)"
    )

    cedar_side_by_side(fleet, table, queries, now, args.cedar_queries, min(args.runs, 5))

    lite = litellm_router_rate(fleet, args.queries, 3, args.seed)
    if lite is None:
        print("litellm: skipped, not installed (make bench-peers)")
    else:
        print(
            f"LiteLLM Router (region filter, pre-call checks): median {lite:,.0f} picks/s; "
            f"Sovereign table is {rate / lite:,.0f}x faster"
        )


if __name__ == "__main__":
    main()
