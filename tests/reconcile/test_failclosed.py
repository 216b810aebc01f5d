"""Fail closed at the point of action (issue 9.3, 9.4, 9.7): real local sites, real SQLite state.

- the reconciler refuses a placement R1, R2 or R4 forbid, whoever put it in the plan: nothing
  lands on any provider, the refusal is audited;
- a saved plan is applied only when it is exactly the recomputed plan (Hypothesis edits it at
  random: values changed, changes added, removed, retargeted);
- ``apply --at`` is for local sites only; the clock-skew window makes restrictions start early.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli.app import main
from orchestrator.errors import RefusedError
from orchestrator.planning.plan import Change, Plan
from orchestrator.policy.clock import CLOCK_SKEW, instants_within
from orchestrator.providers.base import Op, ResourceKind
from orchestrator.reconcile.apply import apply_plan
from orchestrator.reconcile.law import forbidden_placement
from orchestrator.reconcile.retry import RetryPolicy
from orchestrator.reconcile.session import Session, make_plan, open_session
from orchestrator.reconcile.verify import verify_saved_plan
from tests.fleet.builder import FleetFactory, sign
from tests.reconcile.conftest import WITHDRAW_YAML, LocalFleet, write_artifacts

AT = datetime(2026, 6, 13, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
# US no longer lets its restricted model m-us be placed in the EU (R2 fails at eu-1 and eu-2).
# (EU keeps listing it; its guarantee goes to 0 so that the interlock does not get in the way.)
NO_EXPORT = {
    "us.yaml": [("restricted: [EU]", "restricted: []")],
    "eu.yaml": [("min_sites_per_model: 1", "min_sites_per_model: 0")],
}


def observed_everywhere(session: Session) -> set[tuple[str, str, str]]:
    """What every site really holds, read back from the providers."""
    out: set[tuple[str, str, str]] = set()
    for site_id in session.fleet.sites:
        provider = session.providers.for_site(session.fleet, site_id)
        for r in provider.observe(session.fleet.sites[site_id]):
            out.add((r.kind.value, r.target, r.model))
    return out


def forged(session: Session, kind: ResourceKind, site: str, model: str) -> Change:
    """A create the planner would never make, built from what it makes for another site."""
    like = next(
        c
        for c in make_plan(session, audit=False).changes
        if c.kind is kind and c.model == "m-open" and c.op is Op.CREATE
    )
    after = tuple((k, v.replace("m-open", model)) for k, v in like.after or ())
    return replace(like, target=site, model=model, after=after, jurisdiction="EU")


def test_the_reconciler_refuses_a_forbidden_placement_and_nothing_lands(
    local_fleet: LocalFleet,
) -> None:
    root = local_fleet(mutate=NO_EXPORT)
    session = open_session(root, None, at=AT, sites_local=True)
    try:
        before = observed_everywhere(session)
        plan = make_plan(session)
        assert not any(c.model == "m-us" and c.target.startswith("eu-") for c in plan.changes)
        bad = [
            forged(session, ResourceKind.ARTIFACT, "eu-1", "m-us"),
            forged(session, ResourceKind.DEPLOYMENT, "eu-1", "m-us"),
        ]
        evil = replace(plan, changes=(*plan.changes, *bad))
        with session.store.lock("test") as lease:
            result = apply_plan(session, evil, lease, retry=FAST)
        assert result.refused_targets == ("eu-1",)
        assert "R2 export" in (result.results["eu-1"].error or "")
        after = observed_everywhere(session)
        assert not {x for x in after if x[2] == "m-us" and x[1].startswith("eu-")}
        assert not {x for x in after - before if x[1] == "eu-1" and x[2] == "m-us"}
        # every other site went ahead: one jurisdiction's trouble holds back no other
        assert result.results["us-1"].ok and result.results["eu-2"].ok
        refused = [e for e in session.store.audit.entries() if e.kind == "change.refused"]
        assert [e.payload["address"] for e in refused] == ["artifact.eu-1.m-us"]
        assert "R2 export" in str(refused[0].payload["law"])
        recorded = {r["address"] for r in session.store.recorded_resources()}
        assert "artifact.eu-1.m-us" not in recorded and "deployment.eu-1.m-us" not in recorded
    finally:
        session.close()


def test_law_judges_r1_r2_r4_and_never_a_removal(local_fleet: LocalFleet) -> None:
    root = local_fleet(files={"directives/us-d1.yaml": WITHDRAW_YAML})
    session = open_session(root, None, at=AT, sites_local=True)
    try:
        fleet = session.fleet
        deploy = forged(session, ResourceKind.DEPLOYMENT, "eu-1", "m-open")
        at = (AT,)
        assert forbidden_placement(fleet, deploy, at) is None
        withdrawn = replace(deploy, target="us-1", model="m-us")
        assert "R4 withdrawn" in (forbidden_placement(fleet, withdrawn, at) or "")
        assert forbidden_placement(fleet, replace(withdrawn, op=Op.DELETE), at) is None
        unknown = replace(deploy, model="m-nowhere")
        assert "not in the model catalog" in (forbidden_placement(fleet, unknown, at) or "")
        elsewhere = replace(deploy, target="mars-1")
        assert "not in the fleet" in (forbidden_placement(fleet, elsewhere, at) or "")
    finally:
        session.close()
    root = local_fleet(mutate={"eu.yaml": [("models: [m-us, m-open]", "models: [m-open]")]})
    session = open_session(root, None, at=AT, sites_local=True)
    try:
        not_offered = forged(session, ResourceKind.ARTIFACT, "eu-1", "m-us")
        assert "R1 not_offered" in (forbidden_placement(session.fleet, not_offered, (AT,)) or "")
    finally:
        session.close()


def test_a_withdraw_about_to_start_already_blocks_placements(local_fleet: LocalFleet) -> None:
    soon = AT + CLOCK_SKEW / 2
    text = WITHDRAW_YAML.replace("2026-01-01T00:00:00Z", soon.isoformat().replace("+00:00", "Z"))
    root = local_fleet(files={"directives/us-d1.yaml": text})
    session = open_session(root, None, at=AT, sites_local=True)
    try:
        assert soon in instants_within(session.fleet, AT)
        deploy = replace(
            forged(session, ResourceKind.DEPLOYMENT, "us-1", "m-us"), jurisdiction="US"
        )
        assert forbidden_placement(session.fleet, deploy, (AT,)) is None
        refusal = forbidden_placement(session.fleet, deploy, instants_within(session.fleet, AT))
        assert refusal is not None and "R4 withdrawn" in refusal
        later = AT - 2 * CLOCK_SKEW
        assert (
            forbidden_placement(session.fleet, deploy, instants_within(session.fleet, later))
            is None
        )
    finally:
        session.close()


# ------------------------------------------------------------------ saved plans


def saved_and_session(root: Path) -> tuple[Plan, Session]:
    session = open_session(root, None, at=AT, sites_local=True)
    return Plan.loads(make_plan(session).dumps()), session


def test_an_unedited_saved_plan_is_verified(local_fleet: LocalFleet) -> None:
    saved, session = saved_and_session(local_fleet())
    try:
        with session.store.lock("test"):
            verified = verify_saved_plan(session, saved).plan
        assert verified.changes == saved.changes
        assert verified.sha256() == saved.sha256()
    finally:
        session.close()


def test_an_edited_value_is_refused_naming_the_change(local_fleet: LocalFleet) -> None:
    saved, session = saved_and_session(local_fleet())
    try:
        first = next(c for c in saved.changes if c.kind is ResourceKind.DEPLOYMENT)
        spec = tuple((k, "9" if k == "replicas" else v) for k, v in first.after or ())
        if spec == first.after:
            spec = (*spec, ("instance_count", "9"))
        edited = replace(
            saved,
            changes=tuple(replace(c, after=spec) if c == first else c for c in saved.changes),
        )
        with session.store.lock("test"), pytest.raises(RefusedError) as caught:
            verify_saved_plan(session, edited)
        assert first.address in caught.value.message
        assert "recomputed" in caught.value.message
    finally:
        session.close()


CHANGE_EDITS = st.sampled_from(["value", "add", "remove", "retarget", "cause", "op"])


# Fleets (and states) the saved plans are made from: creates only, export rules that keep a
# model away, deletes caused by a withdraw after an apply, updates after instance_count changed.
FLEETS = ["fresh", "no-export", "withdrawn-after-apply", "resized-after-apply"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fleet=st.sampled_from(FLEETS),
    edits=st.lists(st.tuples(CHANGE_EDITS, st.integers(0, 1000)), min_size=1, max_size=3),
)
def test_a_randomly_edited_saved_plan_is_refused_or_exactly_the_recomputed_one(
    saved_sessions: SavedSessions, fleet: str, edits: list[tuple[str, int]]
) -> None:
    saved, session = saved_sessions(fleet)
    changes = list(saved.changes)
    sites = sorted(session.fleet.sites)
    for what, n in edits:
        i = n % len(changes) if changes else 0
        if what == "remove" and changes:
            changes.pop(i)
        elif what == "add" and changes:
            changes.append(replace(changes[i], target=sites[n % len(sites)], key=f"k{n}"))
        elif what == "retarget" and changes:
            changes[i] = replace(changes[i], target=sites[n % len(sites)])
        elif what == "value" and changes:
            changes[i] = replace(changes[i], after=(("x", str(n)),))
        elif what == "cause" and changes:
            changes[i] = replace(changes[i], cause="drift")
        elif what == "op" and changes:
            changes[i] = replace(
                changes[i], op=Op.UPDATE if changes[i].op is Op.CREATE else Op.CREATE
            )
    edited = Plan.loads(replace(saved, changes=tuple(changes)).dumps())
    recomputed = make_plan(session, audit=False)
    try:
        with session.store.lock("test"):
            verified = verify_saved_plan(session, edited).plan
    except RefusedError:
        assert edited.changes != recomputed.changes  # a refusal is never spurious
    else:
        assert verified.changes == recomputed.changes


SavedSessions = Callable[[str], tuple[Plan, Session]]


def _prepare(root: Path, fleet: str) -> None:
    """Bring ``root`` (the builder's fleet) and its state to the named situation."""
    if fleet in ("fresh", "no-export"):
        return
    session = open_session(root, None, at=AT, sites_local=True)
    try:
        with session.store.lock("test") as lease:
            assert apply_plan(session, make_plan(session), lease, retry=FAST).ok
    finally:
        session.close()
    if fleet == "withdrawn-after-apply":
        path = root / "directives" / "us-w1.yaml"
        path.write_text(WITHDRAW_YAML.replace("id: us-d1", "id: us-w1"))
        sign(path, "us-gov")
    else:
        profile = root / "us.yaml"
        profile.write_text(
            profile.read_text().replace(
                "operator: op-us\n", "operator: op-us\n    instance_count: 2\n"
            )
        )


@pytest.fixture(scope="module")
def saved_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SavedSessions]:
    """``saved_sessions(name)``: a saved plan of that fleet and a session to verify it in,
    made once per module."""
    made: dict[str, tuple[Plan, Session]] = {}

    def get(fleet: str) -> tuple[Plan, Session]:
        if fleet not in made:
            factory = FleetFactory(tmp_path_factory.mktemp(fleet))
            root = factory(mutate=NO_EXPORT if fleet == "no-export" else None)
            write_artifacts(root)
            _prepare(root, fleet)
            made[fleet] = saved_and_session(root)
        return made[fleet]

    yield get
    for _, session in made.values():
        session.close()


# ------------------------------------------------------------------ the CLI


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def plan_argv(root: Path, out: Path) -> list[str]:
    return ["plan", "--fleet", str(root), "--sites", "local", "--out", str(out)]


def test_plan_prints_its_sha256_and_apply_audits_it(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = local_fleet()
    out = tmp_path / "plan.json"
    code, stdout, _ = cli(
        ["plan", "--fleet", str(root), "--sites", "local", "--out", str(out)], capsys
    )
    assert code == 0
    plan = Plan.loads(out.read_bytes())
    assert f"Plan SHA-256: {plan.sha256()}" in stdout  # a result: on stdout, never cut
    assert json.loads(out.read_text())["sha256"] == plan.sha256()
    code, _, err = cli(["apply", str(out), "--fleet", str(root), "--sites", "local"], capsys)
    assert code == 0, err
    session = open_session(root, None, sites_local=True)
    try:
        started = [e for e in session.store.audit.entries() if e.kind == "apply.started"]
        assert started[-1].payload["plan_sha256"] == plan.sha256()
    finally:
        session.close()


def test_apply_of_an_edited_plan_file_exits_1_and_writes_nothing(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = local_fleet(mutate=NO_EXPORT)
    out = tmp_path / "plan.json"
    assert (
        cli(["plan", "--fleet", str(root), "--sites", "local", "--out", str(out)], capsys)[0] == 0
    )
    data = json.loads(out.read_text())
    copied = [
        dict(c, target="eu-1", address=c["address"].replace("us-1", "eu-1"), jurisdiction="EU")
        for c in data["changes"]
        if c["target"] == "us-1" and c["model"] == "m-us"
    ]
    assert copied
    data["changes"] += copied
    out.write_text(json.dumps(data))
    code, _, err = cli(["apply", str(out), "--fleet", str(root), "--sites", "local"], capsys)
    assert code == 1 and "sha256" in err  # edited without its digest: refused on loading
    data["sha256"] = Plan.from_json(data).sha256()  # a forger recomputes the digest too
    out.write_text(json.dumps(data))
    code, _, err = cli(["apply", str(out), "--fleet", str(root), "--sites", "local"], capsys)
    assert code == 1
    assert "artifact.eu-1.m-us" in err and "not in the recomputed plan" in err
    session = open_session(root, None, sites_local=True)
    try:
        assert not observed_everywhere(session)
        assert session.store.serial() == 0
    finally:
        session.close()


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 4, b"[" * 100_000, b'{"format": 1, "at": "2026-01-01T00:00:00"}'],
    ids=["random-bytes", "deep-nesting", "naive-instant"],
)
def test_a_plan_file_that_is_not_a_plan_is_a_clear_error(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    root = local_fleet()
    bad = tmp_path / "plan.json"
    bad.write_bytes(content)
    code, _, err = cli(["apply", str(bad), "--fleet", str(root), "--sites", "local"], capsys)
    assert code == 1
    assert "plan file" in err and "Traceback" not in err


def test_apply_at_is_refused_for_sites_that_are_not_local(
    signed_fleet_factory: FleetFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = signed_fleet_factory()  # eu-2 is an aws site
    code, _, err = cli(
        ["apply", "--yes", "--fleet", str(root), "--at", "2026-06-13T00:00:00Z"], capsys
    )
    assert code == 1
    assert "not local" in err and "eu-2" in err
    session = open_session(root, None)
    try:
        assert session.store.serial() == 0
        assert "change.applied" not in {e.kind for e in session.store.audit.entries()}
    finally:
        session.close()


def test_apply_at_on_local_sites_is_a_rehearsal(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    root = local_fleet()
    argv = ["apply", "--yes", "--fleet", str(root), "--sites", "local", "--at"]
    code, _, err = cli([*argv, (datetime.now(UTC) + timedelta(days=30)).isoformat()], capsys)
    assert code == 0, err


def test_apply_at_with_a_plan_file_is_ambiguous(
    local_fleet: LocalFleet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = local_fleet()
    out = tmp_path / "plan.json"
    assert (
        cli(["plan", "--fleet", str(root), "--sites", "local", "--out", str(out)], capsys)[0] == 0
    )
    code, _, err = cli(
        ["apply", str(out), "--fleet", str(root), "--sites", "local", "--at", "2026-06-13"], capsys
    )
    assert code == 1 and "--at cannot be combined with PLANFILE" in err
