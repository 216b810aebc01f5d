"""The GCP provider against real fake-gcs-servers (one per region) and moto, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import PermanentProviderError, TransientProviderError
from orchestrator.fleet.model import Fleet
from orchestrator.providers import create_provider
from orchestrator.providers.base import (
    Op,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    spec_of,
)
from orchestrator.providers.gcp import GcpProvider
from orchestrator.providers.gcp.storage import BUCKET_MARKER, MANIFEST, gcs_bucket_name
from tests.cloud_servers import free_port, gcs_client
from tests.providers.fleets import (
    WEIGHTS,
    changes_between,
    cloud_fleet,
    desired_site_resources,
    unique,
    withdraw,
)


@dataclass
class Env:
    fleet: Fleet
    tag: str
    options: dict[str, str]
    tmp: Path
    us_url: str
    eu_url: str

    def provider(self, fleet: Fleet | None = None, **options: str) -> GcpProvider:
        context = ProviderContext(
            state_dir=self.tmp,
            models=(fleet or self.fleet).models,
            options={**self.options, **options},
        )
        provider = create_provider("gcp", context)
        assert isinstance(provider, GcpProvider)
        return provider

    def site(self, prefix: str) -> str:
        return next(s for s in self.fleet.sites if s.startswith(prefix))

    def gcp_sites(self) -> list[str]:
        return sorted(s for s, site in self.fleet.sites.items() if site.provider == "gcp")

    def bucket(self, site_id: str) -> Any:
        url = self.eu_url if "europe" in site_id else self.us_url
        return gcs_client(url).bucket(gcs_bucket_name(site_id, self.tag))

    def converge(
        self, provider: GcpProvider, fleet: Fleet | None = None, sites: list[str] | None = None
    ) -> int:
        f = fleet or self.fleet
        done = 0
        for sid, wanted in desired_site_resources(f, sites or self.gcp_sites()).items():
            for change in changes_between(wanted, provider.observe(f.sites[sid])):
                provider.apply(f.sites[sid], change)
                done += 1
        return done


@pytest.fixture
def env(
    moto_url: str, gcs_url: str, gcs_eu_url: str, source_bucket: str, tmp_path: Path
) -> Iterator[Env]:
    yield _make_env(moto_url, gcs_url, gcs_eu_url, source_bucket, tmp_path)


def _make_env(
    moto_url: str, gcs_url: str, gcs_eu_url: str, source_bucket: str, tmp_path: Path
) -> Env:
    tag = unique()
    options = {
        "gcs_endpoint_url": gcs_url,
        "gcs_endpoint_url.europe-west4": gcs_eu_url,
        "gcs_retry_timeout": "1",
        "bucket_suffix": tag,
        "aws_endpoint_url": moto_url,
        "aws_max_attempts": "1",
    }
    return Env(
        cloud_fleet(tag, artifact_bucket=source_bucket), tag, options, tmp_path, gcs_url, gcs_eu_url
    )


@pytest.fixture(scope="module")
def converged(
    moto_url: str,
    gcs_url: str,
    gcs_eu_url: str,
    source_bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Env, GcpProvider, int]:
    """One fleet applied once, shared by the tests that only read it back."""
    env = _make_env(moto_url, gcs_url, gcs_eu_url, source_bucket, tmp_path_factory.mktemp("gcp"))
    provider = env.provider()
    return env, provider, env.converge(provider)


def _names(bucket: Any) -> set[str]:
    return {b.name for b in bucket.client.list_blobs(bucket)}


def test_apply_stores_artifacts_in_region_and_records_deployments(
    converged: tuple[Env, GcpProvider, int],
) -> None:
    env, provider, applied = converged
    assert applied > 0
    desired = desired_site_resources(env.fleet, env.gcp_sites())
    for sid in env.gcp_sites():
        assert provider.observe(env.fleet.sites[sid]) == desired[sid]

    eu_id = env.site("gcp-europe-west4")
    bucket = env.bucket(eu_id)
    bucket.reload()
    assert bucket.location == "EUROPE-WEST4"
    marker = bucket.get_blob(BUCKET_MARKER)
    assert marker.metadata == {"sovereign-managed": "true", "sovereign-site": eu_id}
    weights = bucket.get_blob("fable-5/model-00001.safetensors")
    assert weights.download_as_bytes() == WEIGHTS["model-00001.safetensors"]
    assert weights.metadata["sovereign-model"] == "fable-5"
    assert f"fable-5/{MANIFEST}" in _names(bucket)
    record = json.loads(bucket.get_blob("deployments/fable-5.json").download_as_bytes())
    assert record["status"] == "declared" and record["site"] == eu_id
    assert record["spec"] == {"instance_count": "1"}


def test_second_apply_is_a_no_op(converged: tuple[Env, GcpProvider, int]) -> None:
    env, _, _ = converged
    assert env.converge(env.provider()) == 0


def test_objects_deleted_behind_our_back_show_up_as_drift(env: Env) -> None:
    provider = env.provider()
    env.converge(provider)
    us_id = env.site("gcp-us-central1")
    bucket = env.bucket(us_id)
    bucket.delete_blob("olmo-3/config.json")
    bucket.delete_blob("deployments/fable-5.json")
    seen = {(r.kind, r.model) for r in provider.observe(env.fleet.sites[us_id])}
    assert (ResourceKind.ARTIFACT, "olmo-3") not in seen
    assert (ResourceKind.DEPLOYMENT, "fable-5") not in seen
    assert (ResourceKind.ARTIFACT, "fable-5") in seen
    assert env.converge(provider) == 2
    assert env.converge(provider) == 0


def test_an_unlabelled_namesake_bucket_is_never_observed_or_touched(env: Env) -> None:
    us_id = env.site("gcp-us-central1")
    client = gcs_client(env.us_url)
    namesake = client.create_bucket(gcs_bucket_name(us_id, env.tag))
    namesake.blob("deployments/fable-5.json").upload_from_string(
        json.dumps({"site": us_id, "spec": {"instance_count": "1"}})
    )
    provider = env.provider()
    site = env.fleet.sites[us_id]
    assert provider.observe(site) == frozenset()
    artifact = Resource(
        ResourceKind.ARTIFACT,
        us_id,
        "fable-5",
        spec=spec_of(source=env.fleet.models["fable-5"].artifact),
    )
    with pytest.raises(PermanentProviderError, match="not labelled as Sovereign's"):
        provider.apply(site, ResourceChange(Op.CREATE, None, artifact))
    deployment = Resource(ResourceKind.DEPLOYMENT, us_id, "fable-5", spec=spec_of(instance_count=1))
    provider.apply(site, ResourceChange(Op.DELETE, deployment, None))
    provider.apply(site, ResourceChange(Op.DELETE, artifact, None))
    assert _names(namesake) == {"deployments/fable-5.json"}


def test_withdraw_removes_every_generation(env: Env) -> None:
    provider = env.provider()
    env.converge(provider)
    withdrawn = cloud_fleet(
        env.tag,
        artifact_bucket=env.fleet.models["fable-5"].artifact.split("/")[2],
        directives=[withdraw("eu-w", "EU", ["fable-5"])],
    )
    assert env.converge(provider, withdrawn) > 0
    eu_id = env.site("gcp-europe-west4")
    assert {r.model for r in provider.observe(env.fleet.sites[eu_id])} == {"olmo-3"}
    bucket = env.bucket(eu_id)
    left = {b.name for b in bucket.client.list_blobs(bucket, versions=True)}
    assert not [n for n in left if "fable-5" in n]
    # The US is not bound by the EU's withdrawal.
    us_id = env.site("gcp-us-central1")
    assert "fable-5" in {r.model for r in provider.observe(env.fleet.sites[us_id])}


def test_artifacts_are_never_placed_in_a_forbidden_region(
    converged: tuple[Env, GcpProvider, int],
) -> None:
    env, _, _ = converged
    eu_names = _names(env.bucket(env.site("gcp-europe-west4")))
    us_names = _names(env.bucket(env.site("gcp-us-central1")))
    assert not [n for n in eu_names if n.startswith("local-9/")]
    assert f"local-9/{MANIFEST}" in us_names


def test_a_bucket_that_lands_outside_the_site_region_is_refused(env: Env) -> None:
    # Point the us-central1 site at the emulator that puts buckets in EUROPE-WEST4.
    provider = env.provider(**{"gcs_endpoint_url.us-central1": env.eu_url})
    site = env.fleet.sites[env.site("gcp-us-central1")]
    artifact = Resource(
        ResourceKind.ARTIFACT,
        site.id,
        "local-9",
        spec=spec_of(source=env.fleet.models["local-9"].artifact),
    )
    with pytest.raises(PermanentProviderError, match="outside the site's region"):
        provider.apply(site, ResourceChange(Op.CREATE, None, artifact))
    stray = gcs_client(env.eu_url).bucket(gcs_bucket_name(site.id, env.tag))
    assert not [n for n in _names(stray) if n.startswith("local-9/")]


def test_gs_sources_are_copied_server_side(env: Env) -> None:
    client = gcs_client(env.us_url)
    source = client.create_bucket(f"acme-gcs-models-{env.tag}")
    for key, body in WEIGHTS.items():
        source.blob(f"olmo-3/{key}").upload_from_string(body)
    source.blob("olmo-3-old/stale.bin").upload_from_string(b"not part of olmo-3/")
    fleet = cloud_fleet(
        env.tag,
        artifact_bucket=env.fleet.models["fable-5"].artifact.split("/")[2],
        gcs_source=f"gs://{source.name}/olmo-3/",
    )
    provider = env.provider(fleet)
    us_id = env.site("gcp-us-central1")
    env.converge(provider, fleet, sites=[us_id])
    assert provider.observe(fleet.sites[us_id]) == desired_site_resources(fleet, [us_id])[us_id]
    names = _names(env.bucket(us_id))
    assert {f"olmo-3/{k}" for k in WEIGHTS} <= names
    assert not [n for n in names if "stale" in n]


def test_offline_artifacts_stage_a_synthetic_object(env: Env, tmp_path: Path) -> None:
    context = ProviderContext(
        state_dir=tmp_path, models=env.fleet.models, offline_artifacts=True, options=env.options
    )
    provider = GcpProvider(context)
    site = env.fleet.sites[env.site("gcp-us-central1")]
    artifact = Resource(
        ResourceKind.ARTIFACT,
        site.id,
        "fable-5",
        spec=spec_of(source=env.fleet.models["fable-5"].artifact),
    )
    provider.apply(site, ResourceChange(Op.CREATE, None, artifact))
    assert provider.observe(site) == {artifact}
    assert _names(env.bucket(site.id)) >= {"fable-5/weights.synthetic"}


def test_one_unreachable_region_fails_alone_and_the_rerun_converges(env: Env) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    provider = env.provider(**{"gcs_endpoint_url.europe-west4": closed})
    failed: dict[str, str] = {}
    for sid, wanted in desired_site_resources(env.fleet, env.gcp_sites()).items():
        site = env.fleet.sites[sid]
        try:
            for change in changes_between(wanted, provider.observe(site)):
                provider.apply(site, change)
        except TransientProviderError as exc:
            failed[sid] = exc.message
    eu_id, us_id = env.site("gcp-europe-west4"), env.site("gcp-us-central1")
    assert set(failed) == {eu_id} and eu_id in failed[eu_id]
    assert (
        provider.observe(env.fleet.sites[us_id])
        == desired_site_resources(env.fleet, [us_id])[us_id]
    )
    healed = env.provider()
    assert env.converge(healed) > 0
    assert env.converge(healed) == 0


def test_resizing_rewrites_the_deployment_record(env: Env) -> None:
    provider = env.provider()
    env.converge(provider)
    site = replace(env.fleet.sites[env.site("gcp-us-central1")], instance_count=3)
    before = next(
        r
        for r in provider.observe(site)
        if r.kind is ResourceKind.DEPLOYMENT and r.model == "olmo-3"
    )
    after = replace(before, spec=spec_of(instance_count=3))
    provider.apply(site, ResourceChange(Op.UPDATE, before, after))
    assert after in provider.observe(site)
