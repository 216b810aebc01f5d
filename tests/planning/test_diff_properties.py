"""Properties of the pure diff and of Plan values (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.planning.diff import CauseContext, diff, index
from orchestrator.planning.plan import Change, Plan
from orchestrator.providers.base import Op, Resource, ResourceKind, spec_of

TARGETS = ("site-a", "site-b", "table", "dns:Z1")
MODELS = ("m1", "m2", "m3", "*")
T0 = datetime(2026, 6, 11, tzinfo=UTC)


SPECS = (
    (),
    spec_of(source="s3://b/m/"),
    spec_of(source="file:///x y/ü"),
    spec_of(instance_count=1),
    spec_of(instance_count=2, instance_type="ml.g6e"),
    spec_of(health="artifact missing", instance_count=1),
)


def resources() -> st.SearchStrategy[Resource]:
    return st.builds(
        Resource,
        st.sampled_from(list(ResourceKind)),
        st.sampled_from(TARGETS),
        st.sampled_from(MODELS),
        st.sampled_from(("", "US")),
        st.sampled_from(SPECS),
    )


def resource_sets() -> st.SearchStrategy[frozenset[Resource]]:
    # One resource per identity, as providers report and desired state builds them.
    return st.lists(resources(), max_size=10).map(lambda rs: frozenset(index(rs).values()))


def contexts() -> st.SearchStrategy[CauseContext]:
    return st.builds(
        CauseContext,
        withdrawn=st.dictionaries(
            st.tuples(st.sampled_from(MODELS), st.sampled_from(TARGETS)),
            st.sampled_from(("w1", "w2")),
            max_size=3,
        ),
        table_cause=st.sampled_from(("config", "directive:d1")),
        jurisdiction_of=st.just({"site-a": "US", "site-b": "EU"}),
    )


def carry_out(actual: frozenset[Resource], changes: tuple[Change, ...]) -> frozenset[Resource]:
    """What a perfect apply leaves behind."""
    state = index(actual)
    for c in changes:
        r = c.to_resource_change()
        if c.op is Op.DELETE:
            assert r.before is not None
            del state[r.before.identity]
        else:
            assert r.after is not None
            state[r.after.identity] = r.after
    return frozenset(state.values())


def plan_of(changes: tuple[Change, ...]) -> Plan:
    return Plan("lineage-1", 7, "digest", T0, T0, changes)


@given(resource_sets(), resource_sets(), contexts())
def test_apply_then_plan_is_empty(
    desired: frozenset[Resource], actual: frozenset[Resource], ctx: CauseContext
) -> None:
    plan = plan_of(diff(desired, actual, ctx))
    after = carry_out(actual, plan.changes)
    assert after == desired
    assert diff(desired, after, ctx) == ()


@given(resource_sets(), resource_sets())
def test_plan_is_a_function_of_desired_and_actual(
    desired: frozenset[Resource], actual: frozenset[Resource]
) -> None:
    first = plan_of(diff(desired, actual))
    # Same sets built in another order: same plan, change for change, in the same order.
    again = plan_of(diff(frozenset(reversed(sorted(desired))), frozenset(sorted(actual))))
    assert first.changes == again.changes
    assert plan_of(tuple(reversed(first.changes))).changes == first.changes


@given(resource_sets(), resource_sets())
def test_deletes_only_undesired_creates_only_missing(
    desired: frozenset[Resource], actual: frozenset[Resource]
) -> None:
    want, have = index(desired), index(actual)
    for c in diff(desired, actual):
        ident = c.resource_before_or_after().identity
        if c.op is Op.DELETE:
            assert ident not in want and ident in have
        elif c.op is Op.CREATE:
            assert ident in want and ident not in have
        else:
            assert want[ident].spec != have[ident].spec


@given(resource_sets(), resource_sets(), contexts())
def test_json_round_trip(
    desired: frozenset[Resource], actual: frozenset[Resource], ctx: CauseContext
) -> None:
    plan = plan_of(diff(desired, actual, ctx))
    text = json.dumps(plan.to_json_with_digest())  # as `plan --out` writes it
    back = Plan.loads(text)
    assert back == plan
    assert back.to_json() == plan.to_json()
    local = Plan(plan.lineage, plan.serial, plan.fleet_digest, T0, T0, plan.changes, sites="local")
    assert Plan.loads(local.dumps()) == local


@given(resource_sets(), resource_sets())
def test_site_order_artifacts_before_deployments(
    desired: frozenset[Resource], actual: frozenset[Resource]
) -> None:
    plan = plan_of(diff(desired, actual))
    for target, changes in plan.by_target().items():
        kinds = [(c.op, c.kind) for c in changes]
        for model in MODELS:
            seq = [(c.op, c.kind) for c in changes if c.model == model]
            if (Op.CREATE, ResourceKind.ARTIFACT) in seq and (
                Op.CREATE,
                ResourceKind.DEPLOYMENT,
            ) in seq:
                assert seq.index((Op.CREATE, ResourceKind.ARTIFACT)) < seq.index(
                    (Op.CREATE, ResourceKind.DEPLOYMENT)
                ), target
            if (Op.DELETE, ResourceKind.ARTIFACT) in seq and (
                Op.DELETE,
                ResourceKind.DEPLOYMENT,
            ) in seq:
                assert seq.index((Op.DELETE, ResourceKind.DEPLOYMENT)) < seq.index(
                    (Op.DELETE, ResourceKind.ARTIFACT)
                ), target
        assert len(kinds) == len(changes)
    # Fleet-wide route resources come after every site.
    route_seen = False
    for c in plan.changes:
        if c.kind is ResourceKind.ROUTE:
            route_seen = True
        else:
            assert not route_seen


@settings(max_examples=50)
@given(resource_sets(), resource_sets())
def test_summary_counts_every_change(
    desired: frozenset[Resource], actual: frozenset[Resource]
) -> None:
    plan = plan_of(diff(desired, actual, CauseContext(jurisdiction_of={"site-a": "US"})))
    s = plan.summary()
    assert s.total == len(plan.changes) == sum(s.by_op)
    assert sum(sum(v) for v in s.by_jurisdiction.values()) == len(plan.changes)


def test_causes() -> None:
    art = Resource(ResourceKind.ARTIFACT, "site-a", "m1", spec=spec_of(source="s3://x"))
    dep = Resource(ResourceKind.DEPLOYMENT, "site-a", "m1", spec=spec_of(instance_count=1))
    dep_b = Resource(ResourceKind.DEPLOYMENT, "site-b", "m1", spec=spec_of(instance_count=1))
    table_new = Resource(ResourceKind.ROUTE, "table", "*", spec=spec_of(fleet_digest="new"))
    table_old = Resource(ResourceKind.ROUTE, "table", "*", spec=spec_of(fleet_digest="old"))
    damaged = Resource(
        ResourceKind.ARTIFACT, "site-b", "m2", spec=spec_of(source="s3://y", integrity="missing w")
    )
    ctx = CauseContext(
        withdrawn={("m1", "site-a"): "w-1"},
        table_cause="directive:d-9",
        recorded={
            dep_b.identity: dep_b.spec,
            damaged.identity: spec_of(source="s3://y"),
        },
    )
    desired = frozenset(
        {
            dep_b,
            table_new,
            Resource(ResourceKind.ARTIFACT, "site-b", "m2", spec=spec_of(source="s3://y")),
        }
    )
    actual = frozenset({art, dep, table_old, damaged})
    causes = {c.address: c.cause for c in diff(desired, actual, ctx)}
    assert causes == {
        "artifact.site-a.m1": "directive:w-1",
        "deployment.site-a.m1": "directive:w-1",
        "deployment.site-b.m1": "drift",  # recorded as created, gone now
        "route.table.*": "directive:d-9",
        "artifact.site-b.m2": "drift",  # differs from what was recorded
    }


def test_malformed_plan_files_are_usage_errors() -> None:
    import pytest

    from orchestrator.errors import UsageError

    for text in ("not json", "[]", '{"format": 2}', '{"format": 1, "lineage": "x"}'):
        with pytest.raises(UsageError):
            Plan.loads(text)
