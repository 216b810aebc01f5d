"""The Pulumi engine's own logic as pure functions, and ``--engine pulumi`` without the CLI.

The Pulumi CLI is not installed on these machines (and cannot be), so what runs the CLI
(``providers.pulumi.automation.Stacks``) is exercised only where it exists; everything that
decides something is tested here: the backend beside the state, stack names, reading a preview
back as what a site holds (and so the plan's changes and causes), what one change's ``up``
targets, which stacks an apply touches, and the clean refusal when the CLI is missing.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.cli.app import main
from orchestrator.errors import EngineUnavailableError, StalePlanError, UsageError
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.schema import JURISDICTION_ID
from orchestrator.planning.desired import desired_state
from orchestrator.planning.diff import CauseContext, diff
from orchestrator.planning.engine import engine_options, provider_for
from orchestrator.providers.base import Op, Resource, ResourceKind, spec_of
from orchestrator.providers.pulumi.automation import (
    INSTALL_HINT,
    find_cli,
    require_cli,
    step_of_event,
)
from orchestrator.providers.pulumi.engine import INPUT_OPTION, desired_of_input
from orchestrator.providers.pulumi.stacks import (
    PreviewStep,
    Spec,
    check_engine,
    observed_from_steps,
    parse_name,
    spec_of_inputs,
    stack_name,
    stacks_to_update,
    targets_for,
)
from orchestrator.reconcile.apply import check_fresh
from orchestrator.reconcile.session import make_plan, open_session
from orchestrator.state.url import pulumi_backend_url

REGIONS = Path(__file__).resolve().parents[2] / "regions"
AT = datetime(2026, 7, 1, tzinfo=UTC)
SITE = "aws-eu-central-1"
SITE_IDS = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}[a-z0-9]\Z")
MODEL_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")


def urn(name: str, typ: str = "aws:sagemaker/endpoint:Endpoint", stack: str = "EU") -> str:
    return f"urn:pulumi:{stack}::sovereign::sovereign:Jurisdiction$sovereign:aws:Site${typ}::{name}"


# -- backend beside the state ---------------------------------------------------------------


def test_the_default_backend_is_a_directory_beside_the_default_state(tmp_path: Path) -> None:
    url = pulumi_backend_url(None, tmp_path / "regions")
    assert url == (tmp_path / "regions" / ".sovereign" / "pulumi").as_uri()
    assert url.startswith("file:///")


@pytest.mark.parametrize(
    ("state", "backend"),
    [
        ("s3://acme-state/sovereign", "s3://acme-state/sovereign/pulumi"),
        ("s3://acme-state", "s3://acme-state/pulumi"),
        ("gs://acme-state/a/b/", "gs://acme-state/a/b/pulumi"),
    ],
)
def test_object_store_states_keep_the_stacks_under_their_prefix(state: str, backend: str) -> None:
    assert pulumi_backend_url(state, Path("regions")) == backend


@settings(max_examples=50, deadline=None)
@given(parts=st.lists(st.from_regex(r"\A[a-z0-9_]{1,8}\Z"), min_size=1, max_size=4))
def test_a_sqlite_state_keeps_the_stacks_in_its_directory(parts: list[str]) -> None:
    path = Path("/srv", *parts, "state.db")
    for state in (str(path), f"sqlite:///{path}"):
        assert pulumi_backend_url(state, Path("regions")) == f"file://{path.parent}/pulumi"


def test_a_bad_state_is_refused_before_any_backend_is_named() -> None:
    with pytest.raises(UsageError, match="invalid --state"):
        pulumi_backend_url("ftp://x/y", Path("regions"))


# -- stacks and names ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(jurisdiction=st.from_regex(JURISDICTION_ID, fullmatch=True).filter(lambda s: len(s) < 90))
def test_every_jurisdiction_id_names_its_own_stack(jurisdiction: str) -> None:
    assert stack_name(jurisdiction) == jurisdiction


@pytest.mark.parametrize("bad", ["", "EU/prod", "a b", "x" * 101])
def test_a_name_pulumi_would_refuse_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="cannot name a Pulumi stack"):
        stack_name(bad)


@settings(max_examples=100, deadline=None)
@given(site=SITE_IDS, model=MODEL_IDS, kind=st.sampled_from(list(ResourceKind)[:2]))
def test_an_address_named_resource_maps_back_to_its_address(
    site: str, model: str, kind: ResourceKind
) -> None:
    address = Resource(kind, site, model).address
    assert parse_name(address) == (site, address, True)
    assert parse_name(f"{address}/config") == (site, address, False)
    assert parse_name(f"{site}/bucket") == (site, None, False)
    assert parse_name(site) is None  # the site's component


def test_engine_names_are_checked() -> None:
    assert check_engine(None) == "builtin" and check_engine("pulumi") == "pulumi"
    with pytest.raises(UsageError, match="not an engine") as raised:
        check_engine("terraform")
    assert "valid engines: builtin, pulumi" in str(raised.value.hint)


def test_local_sites_stay_with_the_local_provider() -> None:
    assert provider_for("pulumi", "aws") == "pulumi" and provider_for("pulumi", "gcp") == "pulumi"
    assert provider_for("pulumi", "local") == "local"
    assert provider_for("builtin", "aws") == "aws"


# -- a preview read back as a plan ---------------------------------------------------------


def deployment(model: str, count: int = 1) -> Resource:
    spec = spec_of(instance_type="ml.g6e.12xlarge", instance_count=count)
    return Resource(ResourceKind.DEPLOYMENT, SITE, model, spec=spec)


def artifact(model: str) -> Resource:
    return Resource(ResourceKind.ARTIFACT, SITE, model, spec=spec_of(source=f"s3://m/{model}/"))


def steps_for(
    address: str, op: str, diffs: tuple[str, ...] = (), held: Spec = ()
) -> list[PreviewStep]:
    """The steps the program's resources of one address show (an endpoint and its helpers);
    ``held`` is what the stack's state says the resource was last given."""
    if address.startswith("artifact."):
        return [PreviewStep(op, urn(address, "pulumi-python:dynamic:Resource"), diffs, held)]
    return [
        PreviewStep(op, urn(f"{address}/model", "aws:sagemaker/model:Model")),
        PreviewStep(
            op, urn(f"{address}/config", "aws:sagemaker/endpointConfiguration:X"), diffs, held
        ),
        PreviewStep(op, urn(address)),
    ]


def test_an_unchanged_stack_plans_nothing() -> None:
    desired = {deployment("olmo-3"), artifact("olmo-3")}
    steps = [s for r in desired for s in steps_for(r.address, "same")]
    assert diff(frozenset(desired), observed_from_steps(steps, desired, SITE)) == ()


def test_creates_updates_and_deletes_map_to_changes_with_their_causes() -> None:
    desired = {deployment("olmo-3", 2), artifact("olmo-3"), deployment("mythos-5")}
    steps = [
        *steps_for(artifact("olmo-3").address, "same"),
        PreviewStep("same", urn(f"{deployment('olmo-3').address}/model")),
        PreviewStep(
            "replace", urn(f"{deployment('olmo-3').address}/config"), ("productionVariants",)
        ),
        PreviewStep("update", urn(deployment("olmo-3").address), ("endpointConfigName",)),
        *steps_for(deployment("mythos-5").address, "create"),
        *steps_for(deployment("fable-5").address, "delete"),
        *steps_for(artifact("fable-5").address, "delete"),
        PreviewStep("create", urn(f"{SITE}/bucket", "aws:s3/bucket:Bucket")),
    ]
    observed = observed_from_steps(steps, desired, SITE)
    ctx = CauseContext(withdrawn={("fable-5", SITE): "us-withdraw-1"})
    changes = {(c.op, c.address): c for c in diff(frozenset(desired), observed, ctx)}
    assert set(changes) == {
        (Op.UPDATE, deployment("olmo-3").address),
        (Op.CREATE, deployment("mythos-5").address),
        (Op.DELETE, deployment("fable-5").address),
        (Op.DELETE, artifact("fable-5").address),
    }
    update = changes[(Op.UPDATE, deployment("olmo-3").address)]
    assert update.cause == "config" and update.after == deployment("olmo-3", 2).spec
    assert "config.productionVariants" in dict(update.before or ())["pulumi"]
    assert changes[(Op.CREATE, deployment("mythos-5").address)].cause == "config"
    assert changes[(Op.DELETE, deployment("fable-5").address)].cause == "directive:us-withdraw-1"


def test_a_changed_size_is_a_config_update_from_what_the_stack_last_applied() -> None:
    was, now = deployment("olmo-3", 1), deployment("olmo-3", 2)
    steps = steps_for(now.address, "update", ("productionVariants",), held=was.spec)
    ctx = CauseContext(recorded={(was.kind, SITE, "olmo-3", ""): was.spec})
    (change,) = diff(frozenset({now}), observed_from_steps(steps, {now}, SITE), ctx)
    assert (change.op, change.cause) == (Op.UPDATE, "config")
    assert (change.before, change.after) == (was.spec, now.spec)


def test_a_difference_outside_sovereigns_spec_is_drift() -> None:
    olmo = deployment("olmo-3")  # same size, but someone changed the endpoint's tags by hand
    steps = steps_for(olmo.address, "update", ("tags",), held=olmo.spec)
    ctx = CauseContext(recorded={(olmo.kind, SITE, "olmo-3", ""): olmo.spec})
    (change,) = diff(frozenset({olmo}), observed_from_steps(steps, {olmo}, SITE), ctx)
    assert (change.op, change.cause) == (Op.UPDATE, "drift")
    assert "config.tags" in dict(change.before or ())["pulumi"]


@pytest.mark.parametrize(
    ("typ", "inputs", "spec"),
    [
        ("pulumi-python:dynamic:Resource", {"source": "s3://m/x/", "model": "x"},
         spec_of(source="s3://m/x/")),
        ("aws:sagemaker/endpointConfiguration:EndpointConfiguration",
         {"productionVariants": [{"instanceType": "ml.g5.xlarge", "initialInstanceCount": 2}]},
         spec_of(instance_type="ml.g5.xlarge", instance_count=2)),
        ("aws:sagemaker/endpoint:Endpoint", {"name": "x"}, ()),
        ("aws:sagemaker/endpointConfiguration:EndpointConfiguration", None, ()),
    ],
)  # fmt: skip
def test_a_resources_inputs_give_the_spec_it_carries(
    typ: str, inputs: dict[str, Any] | None, spec: Spec
) -> None:
    assert spec_of_inputs(typ, inputs) == spec


def test_something_sovereign_created_and_pulumi_must_recreate_is_drift() -> None:
    olmo = deployment("olmo-3")
    observed = observed_from_steps(steps_for(olmo.address, "create"), {olmo}, SITE)
    ctx = CauseContext(recorded={(olmo.kind, SITE, "olmo-3", ""): olmo.spec})
    (change,) = diff(frozenset({olmo}), observed, ctx)
    assert (change.op, change.cause) == (Op.CREATE, "drift")


OPS = st.sampled_from(["absent", "same", "update", "extra"])


@settings(max_examples=150, deadline=None)
@given(
    fates=st.dictionaries(
        st.tuples(st.sampled_from(["olmo-3", "fable-5", "a.b-1"]), st.booleans()), OPS
    )
)
def test_the_plan_from_a_preview_is_the_plan_from_the_truth(
    fates: dict[tuple[str, bool], str],
) -> None:
    """Whatever the stack holds, reading it through a preview gives the same changes as
    comparing with what it really holds."""
    desired: set[Resource] = set()
    truth: set[Resource] = set()
    steps: list[PreviewStep] = []
    for (model, is_artifact), fate in fates.items():
        r = artifact(model) if is_artifact else deployment(model)
        stale = replace(r, spec=spec_of(other="1"))
        if fate == "extra":
            truth.add(r)
            steps += steps_for(r.address, "delete")
            continue
        desired.add(r)
        if fate == "same":
            truth.add(r)
        elif fate == "update":
            truth.add(stale)
        steps += steps_for(
            r.address, {"absent": "create", "same": "same", "update": "update"}[fate]
        )
    expected = {(c.op, c.address) for c in diff(frozenset(desired), frozenset(truth))}
    observed = observed_from_steps(steps, desired, SITE)
    assert {(c.op, c.address) for c in diff(frozenset(desired), observed)} == expected


def test_pulumis_own_engine_events_become_preview_steps() -> None:
    from pulumi import automation as auto

    def event(op: auto.OpType, name: str, diffs: list[str] | None = None) -> auto.EngineEvent:
        metadata = auto.StepEventMetadata(
            op=op, urn=urn(name), type="aws:sagemaker/endpoint:Endpoint", provider="", diffs=diffs
        )
        return auto.EngineEvent(1, 0, resource_pre_event=auto.ResourcePreEvent(metadata))

    olmo = deployment("olmo-3")
    config = auto.StepEventMetadata(
        op=auto.OpType.REPLACE,
        urn=urn(f"{olmo.address}/config"),
        type="aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        provider="",
        old=auto.StepEventStateMetadata(
            type="aws:sagemaker/endpointConfiguration:EndpointConfiguration",
            urn=urn(f"{olmo.address}/config"),
            id="c",
            parent="",
            provider="",
            inputs={
                "productionVariants": [{"instanceType": "ml.g5.xlarge", "initialInstanceCount": 3}]
            },
        ),
    )
    replaced = step_of_event(
        auto.EngineEvent(3, 0, resource_pre_event=auto.ResourcePreEvent(config))
    )
    assert replaced is not None
    assert replaced.held == spec_of(instance_type="ml.g5.xlarge", instance_count=3)
    steps = [
        step_of_event(event(auto.OpType.UPDATE, olmo.address, ["tags"])),
        step_of_event(event(auto.OpType.SAME, f"{olmo.address}/model")),
        step_of_event(auto.EngineEvent(2, 0, stdout_event=auto.StdoutEngineEvent("hi", "x"))),
    ]
    assert steps[0] == PreviewStep("update", urn(olmo.address), ("tags",))
    assert steps[1] == PreviewStep("same", urn(f"{olmo.address}/model"))
    assert steps[2] is None
    (change,) = diff(frozenset({olmo}), observed_from_steps([s for s in steps if s], {olmo}, SITE))
    assert change.op is Op.UPDATE and dict(change.before or ())["pulumi"] == "resource.tags"


def test_other_sites_steps_are_not_this_sites() -> None:
    other = Resource(ResourceKind.DEPLOYMENT, "gcp-europe-west4", "olmo-3")
    steps = [PreviewStep("delete", urn(other.address))]
    assert observed_from_steps(steps, set(), SITE) == frozenset()


# -- what an up targets, which stacks an apply touches --------------------------------------


def test_a_placement_targets_its_resources_and_what_they_need() -> None:
    address = deployment("olmo-3").address
    steps = [
        *steps_for(address, "create"),
        *steps_for(deployment("fable-5").address, "create"),
        PreviewStep("create", urn(f"{SITE}/bucket", "aws:s3/bucket:Bucket")),
        PreviewStep("create", urn(SITE, "sovereign:aws:Site")),
        PreviewStep("create", urn("EU", "sovereign:Jurisdiction")),
        PreviewStep("create", urn("gcp-europe-west4/bucket", "gcp:storage/bucket:Bucket")),
    ]
    created = targets_for(address, False, steps, SITE)
    names = {u.rsplit("::", 1)[1] for u in created}
    assert names == {address, f"{address}/model", f"{address}/config", f"{SITE}/bucket", SITE, "EU"}
    deleted = targets_for(address, True, steps, SITE)
    assert {u.rsplit("::", 1)[1] for u in deleted} == {
        address,
        f"{address}/model",
        f"{address}/config",
    }


def test_only_the_stacks_of_changed_cloud_sites_are_updated() -> None:
    fleet = load_fleet(REGIONS)
    owner = {s.id: s.jurisdiction for s in fleet.sites.values()}
    provider = {s.id: s.provider for s in fleet.sites.values()}
    assert stacks_to_update([], owner, provider) == ()
    assert stacks_to_update(["aws-eu-central-1", "gcp-europe-west4"], owner, provider) == ("EU",)
    assert stacks_to_update(["table", "dns:Z1", "aws-eu-central-1"], owner, provider) == ("EU",)
    clouds = [s.id for s in fleet.sites.values() if s.provider in ("aws", "gcp")]
    expected = tuple(sorted({owner[s] for s in clouds}))
    assert stacks_to_update(clouds, owner, provider) == expected


def test_the_engine_is_handed_each_stacks_desired_state_as_the_planner_sees_it(
    tmp_path: Path,
) -> None:
    fleet = load_fleet(REGIONS)
    options = engine_options(fleet, REGIONS, AT, str(tmp_path / "state.db"))
    assert options["pulumi_backend"] == (tmp_path / "pulumi").as_uri()
    desired = desired_state(fleet, AT, fleet_digest="x", include_dns=False)
    for site in fleet.sites.values():
        if site.provider not in ("aws", "gcp"):
            continue
        stack_input = options[INPUT_OPTION + site.jurisdiction]
        assert json.loads(stack_input)["jurisdiction"] == site.jurisdiction
        wanted = {r for r in desired if r.target == site.id and r.kind is not ResourceKind.ROUTE}
        assert desired_of_input(stack_input, site.id) == wanted


# -- without the Pulumi CLI ----------------------------------------------------------------


@pytest.fixture
def no_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH and HOME where no ``pulumi`` can be found (as on these machines)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}{os.pathsep}{Path(sys.executable).parent}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PULUMI_HOME", raising=False)
    return tmp_path


def test_require_cli_says_the_cli_is_missing_and_how_to_install_it(no_pulumi: Path) -> None:
    assert find_cli() is None
    with pytest.raises(EngineUnavailableError) as raised:
        require_cli()
    assert "Pulumi CLI" in raised.value.message and "not installed" in raised.value.message
    assert raised.value.hint == INSTALL_HINT and "get.pulumi.com" in INSTALL_HINT
    assert raised.value.exit_code == 1


def test_an_installed_cli_is_found_where_the_installer_puts_it(no_pulumi: Path) -> None:
    home = no_pulumi / "pulumi-home"
    (home / "bin").mkdir(parents=True)
    cli = home / "bin" / "pulumi"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": "", "HOME": str(no_pulumi), "PULUMI_HOME": str(home)}
    assert find_cli(env) == cli
    with pytest.raises(EngineUnavailableError, match="passphrase"):
        require_cli(env)
    assert require_cli({**env, "PULUMI_CONFIG_PASSPHRASE": "p"}) == cli


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize("command", [["plan"], ["apply", "--yes"]])
def test_engine_pulumi_without_the_cli_is_exit_1_and_touches_nothing(
    no_pulumi: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    fleet = no_pulumi / "regions"
    fleet.mkdir()
    for f in REGIONS.rglob("*"):
        if f.is_file() and ".sovereign" not in f.parts:
            target = fleet / f.relative_to(REGIONS)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
    code, out, err = cli(capsys, *command, "--fleet", str(fleet), "--engine", "pulumi")
    assert code == 1 and out == ""
    assert "needs the Pulumi CLI" in err and "get.pulumi.com" in err
    assert "Traceback" not in err
    assert not (fleet / ".sovereign").exists(), "no state store, no stack, nothing was made"
    # and nothing else broke: the built-in engine still plans this fleet
    code, out, err = cli(capsys, "plan", "--fleet", str(fleet), "--sites", "local", "--json")
    assert code == 0, err
    assert json.loads(out)["engine"] is None


def test_engine_pulumi_without_the_cli_under_json_is_a_json_error(
    no_pulumi: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "plan", "--fleet", str(REGIONS), "--engine", "pulumi", "--json")
    assert code == 1
    error = json.loads(out)["error"]
    assert error["exit_code"] == 1 and error["type"] == "EngineUnavailableError"
    assert "Pulumi CLI" in error["message"] and "get.pulumi.com" in error["hint"]


def test_a_plan_made_by_one_engine_is_not_applied_by_another(tmp_path: Path) -> None:
    session = open_session(REGIONS, str(tmp_path / "state.db"), at=AT, sites_local=True)
    try:
        plan = make_plan(session, audit=False)
        check_fresh(session, plan)  # the same engine: fine
        with pytest.raises(StalePlanError, match="--engine pulumi"):
            check_fresh(session, replace(plan, engine="pulumi"))
    finally:
        session.close()
    again = type(plan).loads(replace(plan, engine="pulumi").dumps())
    assert again.engine == "pulumi"
    assert re.fullmatch(r"[0-9a-f]{64}", again.sha256())
