"""Benchmark: planning 100,000 desired (model, site) pairs, from scratch and after a directive.

Run: .venv/bin/python bench/plan.py [--sites 1000] [--models 100] [--repeat 3]

The fleet is synthetic and built in memory (no YAML): 10 jurisdictions x 100 sites, 100 models
offered everywhere, so every (model, site) pair is desired. Actual state is the desired state
with a little drift. "From scratch" is the full pipeline after observation: desired state
(docs/planning.md, "Desired state") -> pure diff -> Plan value. "After one directive" adds a
withdraw of two models from one jurisdiction and re-plans incrementally (only the pairs the
directive reaches), then checks the result equals a full re-plan. Targets: < 2 s from scratch, < 100
ms after one directive.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.incremental import IncrementalPlanner
from orchestrator.fleet.model import (
    Action,
    Audience,
    Directive,
    Fleet,
    Jurisdiction,
    Model,
    Site,
)
from orchestrator.planning.desired import desired_state
from orchestrator.planning.diff import CauseContext, diff, index
from orchestrator.planning.plan import Plan
from orchestrator.providers.base import Resource, ResourceKind, spec_of

T = TypeVar("T")
AT = datetime(2026, 6, 13, tzinfo=UTC)


def synthetic_fleet(n_sites: int, n_models: int, n_jurisdictions: int = 10) -> Fleet:
    jids = [f"J{i}" for i in range(n_jurisdictions)]
    models = {
        f"model-{i}": Model(f"model-{i}", jids[i % n_jurisdictions], "open", f"s3://b/model-{i}/")
        for i in range(n_models)
    }
    sites: dict[str, Site] = {}
    per = n_sites // n_jurisdictions
    site_ids: dict[str, tuple[str, ...]] = {}
    for j in jids:
        ids = tuple(f"{j.lower()}-site-{k}" for k in range(per))
        site_ids[j] = ids
        for s in ids:
            gov = (
                frozenset({"J0"})
                if j != "J0" and int(s.rsplit("-", 1)[1]) % 10 == 0
                else frozenset()
            )
            sites[s] = Site(s, j, "local", "r", f"C{j}", "op", gov, gov | {j}, instance_count=1)
    jurisdictions = {
        j: Jurisdiction(
            id=j,
            name=j,
            countries=frozenset({f"C{j}"}),
            authorities=(),
            directive_threshold=1,
            process_in=frozenset({j}),
            export={},
            models=frozenset(models),
            sites=site_ids[j],
            failover=site_ids[j][:2],
            min_sites_per_model=1,
            source=f"{j}.yaml",
        )
        for j in jids
    }
    suspend = Directive(
        "j0-suspend",
        "J0",
        "a",
        "ref",
        Action.SUSPEND,
        frozenset({"model-1"}),
        Audience(nationality_not_in=frozenset({"CJ0"})),
        datetime(2026, 6, 1, tzinfo=UTC),
        None,
        None,
        "directives/j0-suspend.yaml",
        "0" * 64,
    )
    return Fleet(jurisdictions, sites, models, {suspend.id: suspend})


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, float, T]:
    """(best wall time, best CPU time of this process, last result). CPU time is shown too
    because a shared machine's wall clock includes waiting for a core."""
    walls: list[float] = []
    cpus: list[float] = []
    result: T
    for _ in range(repeat):
        gc.collect()  # start every run from the same heap, not after another run's garbage
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    fleet = synthetic_fleet(args.sites, args.models)
    desired = desired_state(fleet, AT, fleet_digest="v1")
    pairs = sum(1 for r in desired if r.kind is ResourceKind.DEPLOYMENT)
    # Actual: everything applied, plus a little drift (one deployment gone, one damaged).
    actual_set = set(desired)
    victims = sorted(r for r in desired if r.kind is ResourceKind.DEPLOYMENT)[:2]
    actual_set.discard(victims[0])
    actual_set.discard(victims[1])
    actual_set.add(
        Resource(
            victims[1].kind,
            victims[1].target,
            victims[1].model,
            spec=spec_of(health="artifact missing", instance_count=1),
        )
    )
    actual = frozenset(actual_set)
    ctx = CauseContext(jurisdiction_of={s.id: s.jurisdiction for s in fleet.sites.values()})

    def full_plan(f: Fleet, digest: str) -> Plan:
        changes = diff(desired_state(f, AT, fleet_digest=digest), actual, ctx)
        return Plan("bench", 1, digest, AT, AT, changes)

    scratch, scratch_cpu, plan = best_of(args.repeat, lambda: full_plan(fleet, "v1"))
    initial, initial_cpu, first = best_of(
        1,
        lambda: Plan(
            "bench",
            0,
            "v1",
            AT,
            AT,
            diff(desired_state(fleet, AT, fleet_digest="v1"), frozenset(), ctx),
        ),
    )

    withdraw = Directive(
        "j3-withdraw",
        "J3",
        "a",
        "ref",
        Action.WITHDRAW,
        frozenset({"model-7", "model-8"}),
        Audience(),
        datetime(2026, 6, 12, tzinfo=UTC),
        None,
        None,
        "directives/j3-withdraw.yaml",
        "0" * 64,
    )
    after = fleet.with_directives({**fleet.directives, withdraw.id: withdraw})
    actual_index = index(actual)

    def incremental() -> Plan:
        planner = planners.pop()
        touched = planner.directives_changed(after, [withdraw], "v2")
        return Plan("bench", 1, "v2", AT, AT, planner.plan(actual_index, ctx, touched))

    planners = [IncrementalPlanner(fleet, AT, "v1") for _ in range(args.repeat)]
    inc, inc_cpu, inc_plan = best_of(args.repeat, incremental)
    reference = full_plan(after, "v2")
    # The incremental plan covers what the directive reaches; the full one adds standing drift.
    drift = {c.address for c in plan.changes if c.kind is not ResourceKind.ROUTE}
    assert {c for c in reference.changes if c.address not in drift} == set(inc_plan.changes), (
        "incremental plan differs from the full plan"
    )

    print(
        f"machine: {platform.machine()} {platform.processor() or ''} "
        f"python {platform.python_version()} ({platform.system()})"
    )
    print(f"desired pairs: {pairs:,} ({len(desired):,} resources incl. artifacts and the table)")
    print(
        f"plan from scratch (steady state, {len(plan.changes)} drift changes): "
        f"{scratch * 1000:.0f} ms wall, {scratch_cpu * 1000:.0f} ms CPU "
        f"(best of {args.repeat}; target < 2000 ms)"
    )
    print(
        f"plan from scratch (initial rollout, {len(first.changes):,} creates): "
        f"{initial * 1000:.0f} ms wall, {initial_cpu * 1000:.0f} ms CPU (no target)"
    )
    print(
        f"plan after one directive (incremental, {len(inc_plan.changes)} changes): "
        f"{inc * 1000:.1f} ms wall, {inc_cpu * 1000:.1f} ms CPU "
        f"(best of {args.repeat}; target < 100 ms)"
    )
    loadavg = os.getloadavg()
    cpus = os.cpu_count() or 1
    print(f"load average: {' '.join(f'{x:.1f}' for x in loadavg)} on {cpus} CPUs")
    wall_ok = scratch < 2.0 and inc < 0.1
    cpu_ok = scratch_cpu < 2.0 and inc_cpu < 0.1
    print(
        f"targets (wall): {'met' if wall_ok else 'MISSED'}; targets (CPU): "
        f"{'met' if cpu_ok else 'MISSED'}"
    )
    if not wall_ok and cpu_ok and loadavg[0] > cpus:
        print("note: the machine is oversubscribed; wall times include waiting for a core")
    # A CPU-time miss is a real regression; a wall-time miss on a busy machine is not.
    ok = cpu_ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
