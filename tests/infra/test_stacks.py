"""The Pulumi program under ``pulumi.runtime.set_mocks``: a jurisdiction's stack declares what
its export says (its own sites, in their regions, with the providers' names and tags) and
nothing else.

The mocks are installed BEFORE the program is imported, and every program test is decorated
with ``@pulumi.runtime.test`` and RETURNS an Output whose ``apply`` holds the assertions: a test
that returned nothing would finish before Pulumi resolved anything, and assert nothing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi
import pytest


class Recorder(pulumi.runtime.Mocks):
    """Records every resource the program declares; the cloud is never contacted."""

    def __init__(self) -> None:
        self.resources: list[tuple[str, str, dict[str, Any]]] = []
        self.declared = 0  # stacks run by this test
        self.checked = 0  # of those, how many had their assertions run
        self.imported: dict[str, str | None] = {}  # logical name -> id it was imported by

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append((args.typ, args.name, dict(args.inputs)))
        self.imported[args.name] = args.resource_id or None
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


RECORDER = Recorder()
# One loop for the module: set_mocks creates the root stack resource on it, and every test's
# resources are registered under that root (a per-test loop would orphan them).
LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
pulumi.runtime.set_mocks(RECORDER, project="sovereign", stack="test", preview=False)

# The program, imported only now that the mocks are in place.
from infra.components.gcp_site import labels_of  # noqa: E402
from infra.components.jurisdiction import JurisdictionStack  # noqa: E402
from infra.components.settings import StackSettings  # noqa: E402
from orchestrator.cli.app import main  # noqa: E402
from orchestrator.errors import UsageError  # noqa: E402
from orchestrator.fleet.loader import load_fleet  # noqa: E402
from orchestrator.fleet.model import EVERYONE, Action, Directive, Fleet  # noqa: E402
from orchestrator.planning.desired import desired_pairs  # noqa: E402
from orchestrator.planning.export import StackInput, export_stack_input  # noqa: E402
from orchestrator.policy.rules import export_allowed  # noqa: E402
from orchestrator.providers.aws.naming import bucket_name, sagemaker_base_name  # noqa: E402
from orchestrator.providers.gcp.storage import gcs_bucket_name  # noqa: E402

REGIONS = Path(__file__).resolve().parents[2] / "regions"
AT = datetime(2026, 7, 1, tzinfo=UTC)
FLEET = load_fleet(REGIONS)
JURISDICTIONS = tuple(sorted(FLEET.jurisdictions))
ARTIFACT = "pulumi-python:dynamic:Resource"
BUCKETS = {"aws:s3/bucket:Bucket", "gcp:storage/bucket:Bucket"}
Declared = list[tuple[str, str, dict[str, Any]]]


@pytest.fixture(autouse=True)
def pulumi_event_loop() -> Iterator[None]:
    """Overrides conftest's per-test loop: this module's root stack lives on ``LOOP``. Each
    test starts with an empty record."""
    asyncio.set_event_loop(LOOP)
    RECORDER.resources.clear()
    RECORDER.declared = RECORDER.checked = 0
    RECORDER.imported.clear()
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
    # A program test whose Output was not returned would pass without asserting anything.
    assert RECORDER.checked == RECORDER.declared, "a stack's assertions never ran"


def declare(
    stack_input: StackInput, check: Any, settings: StackSettings | None = None
) -> pulumi.Output[Any]:
    """Run the stack of ``stack_input`` under the mocks; ``check(resources)`` once every
    resource is registered (the Output the test returns)."""
    stack = JurisdictionStack(
        stack_input.jurisdiction,
        stack_input,
        settings=settings or StackSettings(bucket_suffix="t"),
    )
    RECORDER.declared += 1

    def run_check(_: Any) -> None:
        check(list(RECORDER.resources))
        RECORDER.checked += 1

    return pulumi.Output.all(stack.urn, *(r.urn for r in stack.leaves)).apply(run_check)


def input_of(fleet: Fleet, jurisdiction: str) -> StackInput:
    return StackInput.from_json(export_stack_input(fleet, AT, jurisdiction), stack=jurisdiction)


def site_of(inputs: dict[str, Any]) -> str | None:
    """The site a resource says it belongs to (its tags, labels or placement)."""
    if isinstance(inputs.get("site"), dict):  # an artifact placement
        return str(inputs["site"]["id"])
    tags = inputs.get("tags") or {}
    labels = inputs.get("labels") or {}
    return tags.get("sovereign:site") or labels.get("sovereign-site")


def named_site(name: str) -> str:
    """The site in a logical name: ``<site>/<part>`` or ``<kind>.<site>.<model>[/<part>]``."""
    head = name.split("/", maxsplit=1)[0]
    return head.split(".")[1] if "." in head else head


def cloud(resources: Declared) -> Declared:
    return [(t, n, i) for t, n, i in resources if not t.startswith("sovereign:")]


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
@pulumi.runtime.test
def test_resources_land_in_their_sites_regions(jurisdiction: str) -> pulumi.Output[Any]:
    def check(resources: Declared) -> None:
        own = FLEET.jurisdictions[jurisdiction].sites
        declared = cloud(resources)
        assert declared, "the stack declares something"
        for typ, name, inputs in declared:
            site = site_of(inputs) or named_site(name)
            assert site in own and site == named_site(name), (typ, name, site)
            region = inputs.get("region") or inputs.get("location")
            if typ == ARTIFACT:
                region = inputs["site"]["region"]
            assert str(region).lower() == FLEET.sites[site].region, (typ, name, region)

    return declare(input_of(FLEET, jurisdiction), check)


@pulumi.runtime.test
def test_the_eu_stack_holds_only_eu_owned_sites() -> pulumi.Output[Any]:
    eu = set(FLEET.jurisdictions["EU"].sites)
    cloud_sites = {s for s in eu if FLEET.sites[s].provider in ("aws", "gcp")}

    def check(resources: Declared) -> None:
        declared = cloud(resources)
        assert {named_site(n) for _, n, _ in declared} == cloud_sites
        components = {n for t, n, _ in resources if t.startswith("sovereign:") and "Site" in t}
        assert components == cloud_sites
        buckets = {i.get("bucket") or i.get("name") for t, _, i in declared if t in BUCKETS}
        assert buckets == {
            bucket_name(s, "t") if FLEET.sites[s].provider == "aws" else gcs_bucket_name(s, "t")
            for s in cloud_sites
        }

    return declare(input_of(FLEET, "EU"), check)


def _withdraw(fleet: Fleet, model: str, jurisdiction: str) -> Fleet:
    withdraw = Directive(
        id="test-withdraw",
        jurisdiction=jurisdiction,
        issuer="test",
        reference="test",
        action=Action.WITHDRAW,
        models=frozenset({model}),
        audience=EVERYONE,
        effective=datetime(2026, 6, 1, tzinfo=UTC),
        expires=None,
        supersedes=None,
        source="directives/test-withdraw.yaml",
        sha256="0" * 64,
    )
    return fleet.with_directives({**fleet.directives, withdraw.id: withdraw})


@pulumi.runtime.test
def test_a_withdrawn_model_has_no_resources() -> pulumi.Output[Any]:
    before = input_of(FLEET, "US")
    assert any(d.model == "fable-5" for d in before.deployments), "fable-5 is served in the US"
    withdrawn = input_of(_withdraw(FLEET, "fable-5", "US"), "US")

    def check(resources: Declared) -> None:
        declared = cloud(resources)
        assert declared
        for typ, name, inputs in declared:
            assert "fable-5" not in name, (typ, name)
            assert (inputs.get("tags") or {}).get("sovereign:model") != "fable-5"
            assert inputs.get("model") != "fable-5"
        assert any(i.get("model") == "mythos-5" for t, _, i in declared if t == ARTIFACT)

    return declare(withdrawn, check)


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
@pulumi.runtime.test
def test_restricted_weights_are_placed_only_where_export_rules_allow(
    jurisdiction: str,
) -> pulumi.Output[Any]:
    restricted = {m for m, model in FLEET.models.items() if model.export_control != "open"}
    assert restricted, "the shipped fleet has restricted models"

    def check(resources: Declared) -> None:
        placements = [(i["model"], i["site"]["id"]) for t, _, i in resources if t == ARTIFACT]
        for model, site in placements:
            if model in restricted:
                assert export_allowed(FLEET, model, site), (model, site)
        expected = {
            (m, s)
            for m, s in desired_pairs(FLEET, AT)
            if FLEET.sites[s].jurisdiction == jurisdiction
            and FLEET.sites[s].provider in ("aws", "gcp")
        }
        assert set(placements) == expected

    return declare(input_of(FLEET, jurisdiction), check)


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
@pulumi.runtime.test
def test_every_resource_carries_the_managed_tags(jurisdiction: str) -> pulumi.Output[Any]:
    def check(resources: Declared) -> None:
        for typ, name, inputs in cloud(resources):
            if typ in {"aws:s3/bucketVersioning:BucketVersioning",
                       "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"}:  # fmt: skip
                continue  # settings of a bucket, not taggable resources of their own
            # each cloud's own form: GCP labels `sovereign-site`, AWS tags `sovereign:site`
            marks = {
                k.replace("-", ":"): v
                for k, v in (inputs["labels"] if typ.startswith("gcp:") else inputs["tags"]).items()
            }
            assert marks["sovereign:managed"] == "true", (typ, name)
            assert site_of(inputs) == named_site(name), (typ, name)
            assert named_site(name) in FLEET.jurisdictions[jurisdiction].sites
            if "." in name:  # a deployment's or an artifact's resource names its model
                model = name.split("/")[0].split(".", 2)[2]
                assert model == marks.get("sovereign:model")

    return declare(input_of(FLEET, jurisdiction), check)


@pulumi.runtime.test
def test_sagemaker_names_are_the_aws_providers() -> pulumi.Output[Any]:
    jp = FLEET.jurisdictions["JP"].sites
    wanted = {
        sagemaker_base_name(s, m)
        for m, s in desired_pairs(FLEET, AT)
        if s in jp and FLEET.sites[s].provider == "aws"
    }
    assert wanted

    def check(resources: Declared) -> None:
        endpoints = {i["name"] for t, _, i in resources if t == "aws:sagemaker/endpoint:Endpoint"}
        assert endpoints == wanted

    return declare(input_of(FLEET, "JP"), check)


@pulumi.runtime.test
def test_gcp_buckets_are_private_and_labelled() -> pulumi.Output[Any]:
    def check(resources: Declared) -> None:
        buckets = [i for t, _, i in resources if t == "gcp:storage/bucket:Bucket"]
        assert buckets
        for inputs in buckets:
            assert inputs["labels"]["sovereign-managed"] == "true"
            assert inputs["publicAccessPrevention"] == "enforced"
            assert inputs["uniformBucketLevelAccess"] is True

    return declare(input_of(FLEET, "EU"), check)


@pulumi.runtime.test
def test_adopting_imports_what_the_built_in_providers_made_by_their_names() -> pulumi.Output[Any]:
    """Moving from the built-in providers: each resource they create is declared with the id
    they gave it, so `pulumi up` with sovereign:adopt takes it over instead of recreating it."""

    def check(resources: Declared) -> None:
        adopted = 0
        for typ, name, inputs in cloud(resources):
            imported = RECORDER.imported.get(name)
            if typ.startswith("aws:s3/") or typ == "gcp:storage/bucket:Bucket":
                site = named_site(name)
                expected = (bucket_name if site.startswith("aws") else gcs_bucket_name)(site, "t")
                assert imported == expected, (typ, name, imported)
                adopted += 1
            elif typ.startswith("aws:sagemaker/"):
                assert imported == inputs["name"], (typ, name, imported)
                adopted += 1
            else:  # weights are placed again (an idempotent copy); Vertex endpoints are new
                assert imported is None, (typ, name)
        assert adopted

    return declare(input_of(FLEET, "EU"), check, StackSettings(bucket_suffix="t", adopt=True))


@pulumi.runtime.test
def test_without_adopt_nothing_is_imported() -> pulumi.Output[Any]:
    def check(resources: Declared) -> None:
        assert resources
        assert not any(RECORDER.imported.get(n) for _, n, _ in resources)

    return declare(input_of(FLEET, "EU"), check)


@pulumi.runtime.test
def test_the_dynamic_provider_host_can_rebuild_the_artifact_provider(
    tmp_path: Path,
) -> pulumi.Output[Any]:
    """Pulumi runs a dynamic resource's provider in another process, from its serialized form:
    a fresh interpreter (elsewhere, nothing imported) must get the same provider back."""

    def check(resources: Declared) -> None:
        # The provider travels as a secret: {<secret signature>: ..., "value": <base64>}.
        serialized = {
            p["value"] if isinstance(p, dict) else p
            for p in (i["__provider"] for t, _, i in resources if t == ARTIFACT)
        }
        assert serialized
        script = (
            "import base64, sys, dill\n"
            "p = dill.loads(base64.b64decode(sys.stdin.read()))\n"
            "print(type(p).__module__, type(p).__name__)\n"
        )
        for text in serialized:
            done = subprocess.run(
                [sys.executable, "-c", script],
                input=text,
                capture_output=True,
                text=True,
                cwd=tmp_path,
                check=False,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.split() == [
                "orchestrator.providers.pulumi.artifacts",
                "ArtifactProvider",
            ]

    return declare(input_of(FLEET, "UK"), check)


def _exported(capsys: pytest.CaptureFixture[str], jurisdiction: str) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exited:
        main(["export", "--fleet", str(REGIONS), "-j", jurisdiction, "--at", AT.isoformat()])
    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_the_shipped_fleets_export_drives_the_program(
    capsys: pytest.CaptureFixture[str], jurisdiction: str
) -> None:
    document = _exported(capsys, jurisdiction)
    stack_input = StackInput.from_json(document, stack=jurisdiction)
    cloud_sites = {s.id for s in stack_input.sites if s.provider in ("aws", "gcp")}
    served = {d.address for d in stack_input.deployments if d.site in cloud_sites}
    placed = {a.address for a in stack_input.artifacts if a.site in cloud_sites}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        def check(resources: Declared) -> None:
            names = {n for _, n, _ in resources}
            assert served <= names and placed <= names
            anchors = {n for _, n, _ in cloud(resources) if "/" not in n}
            assert anchors == served | placed
            assert {named_site(n) for _, n, _ in cloud(resources)} == cloud_sites

        return declare(stack_input, check)

    program()


def test_a_stack_given_another_jurisdictions_input_is_refused() -> None:
    with pytest.raises(UsageError, match="stack 'US' was given the desired state of 'EU'"):
        JurisdictionStack("US", input_of(FLEET, "EU"), settings=StackSettings())


def test_gcp_labels_are_the_gcp_providers() -> None:
    assert labels_of({"sovereign:managed": "true", "sovereign:site": "gcp-x"}) == {
        "sovereign-managed": "true",
        "sovereign-site": "gcp-x",
    }
