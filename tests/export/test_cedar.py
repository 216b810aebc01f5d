"""``sovereign export --format cedar`` judged by Cedar itself (``cedarpy``).

On the example fleet (the CLI's own output, at instants on both sides of each directive's
arrival and expiry) and on the generated bench fleet (10,000 directives, 150 sites), Cedar's
allowed sites equal the route table's route on 3,000 random queries each: 3,000 of 3,000.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from bench.route import generate_fleet, generate_queries
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.policy import rules
from orchestrator.policy.cedar import CedarExport, cedar_request, person_entity
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable
from tests.cli.support import run_cli

REGIONS = Path(__file__).resolve().parents[2] / "regions"
QUERIES = 3000


def cedar_routes(
    fleet: Fleet, document: dict[str, Any], queries: list[tuple[str, Principal]]
) -> list[frozenset[str]]:
    """Cedar's allowed sites for each (model, principal), from an exported document."""
    people: dict[Principal, str] = {}
    entities = list(document["entities"])
    for _, p in queries:
        if p not in people:
            people[p] = f"p{len(people)}"
            entities.append(person_entity(fleet, p, people[p]))
    store = cedarpy.Entities.from_json_str(json.dumps(entities))
    policies = cedarpy.PolicySet.from_str(document["policies"])
    sites = sorted(fleet.sites)
    out: list[frozenset[str]] = []
    for model, p in queries:
        requests = [cedar_request(people[p], model, s) for s in sites]
        results = cedarpy.is_authorized_batch(requests, policies, store)
        for r in results:
            assert not r.diagnostics.errors, r.diagnostics.errors
        out.append(frozenset(s for s, r in zip(sites, results, strict=True) if r.allowed))
    return out


def example_principals(fleet: Fleet, rng: random.Random) -> Principal:
    countries = sorted(fleet.country_home) + ["ZZ", "BR"]  # and unlisted ones
    groups = sorted(
        {g for d in fleet.directives.values() for g in d.audience.except_groups} | {"staff"}
    )
    return Principal(
        rng.choice(countries),
        frozenset(rng.sample(countries, rng.choice((0, 1, 1, 2)))),
        frozenset(rng.sample(groups, 1)) if rng.random() < 0.3 else frozenset(),
    )


@pytest.mark.slow  # every query of the example fleet through cedarpy
def test_the_example_fleet_export_agrees_with_the_route_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fleet = load_fleet(REGIONS)
    table = RouteTable.compile(fleet)
    # Instants around every directive's arrival and expiry, and one before them all.
    bounds = sorted(
        {d.effective for d in fleet.directives.values()}
        | {d.expires for d in fleet.directives.values() if d.expires is not None}
    )
    instants = [datetime(2026, 1, 1, tzinfo=UTC)]
    for b in bounds:
        instants += [b - timedelta(seconds=1), b]
    rng = random.Random(26)
    agreed = 0
    per_instant = -(-QUERIES // len(instants))
    asked = 0
    for at in instants:
        code, out, err = run_cli(
            capsys, "export", "--format", "cedar", "--fleet", str(REGIONS), "--at", at.isoformat()
        )
        assert code == 0, err
        document = json.loads(out)
        assert document["format"] == "cedar" and document["fleet"] == fleet.digest
        n = min(per_instant, QUERIES - asked)
        queries = [
            (rng.choice(sorted(fleet.models)), example_principals(fleet, rng)) for _ in range(n)
        ]
        asked += n
        for (model, p), allowed in zip(
            queries, cedar_routes(fleet, document, queries), strict=True
        ):
            assert allowed == frozenset(table.route(model, p, at)), (model, p, at)
            agreed += 1
    assert agreed == QUERIES


@pytest.mark.slow  # about 150,000 Cedar decisions
def test_the_bench_fleet_export_agrees_with_the_route_table() -> None:
    """Cedar (cedarpy 4) costs about 0.2 ms a decision whatever the policies, and 3,000 queries
    x 150 sites would take minutes. So every query asks Cedar about each site where its model
    is offered and exportable (R1, R2), on the model's slice (the permit and the forbids
    naming the model: see test_a_slice_decides_as_the_whole_policy_set); the other sites are
    asked once per model, against the permit alone: the permit's R1 and R2 conditions read
    only the site and the model, and a forbid can only refuse, so a permit that does not hold
    there for one principal holds for none."""
    fleet = generate_fleet(7)
    table = RouteTable.compile(fleet)
    at = datetime(2026, 7, 1, tzinfo=UTC)
    export = CedarExport(fleet, at)
    assert len(export.forbids) > 100  # the generated fleet has thousands of directives
    queries = [(m, p) for m, p, _ in generate_queries(fleet, QUERIES, 7)]
    people: dict[Principal, str] = {}
    entities = list(export.entities)
    for _, p in queries:
        if p not in people:
            people[p] = f"p{len(people)}"
            entities.append(person_entity(fleet, p, people[p]))
    store = cedarpy.Entities.from_json_str(json.dumps(entities))
    permit_only = cedarpy.PolicySet.from_str(export.permit)
    sites = sorted(fleet.sites)
    # (model, whether R1 and R2 hold at the site) -> [(query index, site)], one batch each
    asks: dict[tuple[str, bool], list[tuple[int, str]]] = {}
    first_asked: set[str] = set()
    for i, (model, _) in enumerate(queries):
        for s in sites:
            lawful_place = rules.offered(fleet, model, s) and rules.export_allowed(fleet, model, s)
            if not lawful_place and model in first_asked:
                continue  # refused by the permit whoever asks: asked for the model's first query
            key = (model, lawful_place)
            asks.setdefault(key, []).append((i, s))
        first_asked.add(model)
    allowed: list[set[str]] = [set() for _ in queries]
    for (model, lawful_place), pairs in asks.items():
        policies = (
            cedarpy.PolicySet.from_str(export.policies_for(model)) if lawful_place else permit_only
        )
        requests = [cedar_request(people[queries[i][1]], model, s) for i, s in pairs]
        results = cedarpy.is_authorized_batch(requests, policies, store)
        for (i, s), r in zip(pairs, results, strict=True):
            assert not r.diagnostics.errors, r.diagnostics.errors
            if r.allowed:
                allowed[i].add(s)
    agreed = 0
    for (model, p), got in zip(queries, allowed, strict=True):
        assert got == set(table.route(model, p, at)), (model, p)
        agreed += 1
    assert agreed == QUERIES


def test_a_slice_decides_as_the_whole_policy_set() -> None:
    fleet = generate_fleet(7)
    at = datetime(2026, 7, 1, tzinfo=UTC)
    export = CedarExport(fleet, at)
    rng = random.Random(3)
    queries = [(m, p) for m, p, _ in generate_queries(fleet, 10, 11)]
    people = {p: f"p{i}" for i, (_, p) in enumerate(queries)}
    entities = list(export.entities) + [person_entity(fleet, p, i) for p, i in people.items()]
    store = cedarpy.Entities.from_json_str(json.dumps(entities))
    whole = cedarpy.PolicySet.from_str(export.policies)
    for model, p in queries:
        part = cedarpy.PolicySet.from_str(export.policies_for(model))
        for site in rng.sample(sorted(fleet.sites), 5):
            narrow = cedarpy.PolicySet.from_str(
                export.policies_for(model, fleet.sites[site].governing)
            )
            request = cedar_request(people[p], model, site)
            a = cedarpy.is_authorized(request, whole, store)
            b = cedarpy.is_authorized(request, part, store)
            c = cedarpy.is_authorized(request, narrow, store)
            assert a.allowed == b.allowed == c.allowed and not a.diagnostics.errors
