"""Weights from every kind of source into every provider (docs/fleet-format.md), over real servers.

The matrix: s3:// (moto), gs:// (fake-gcs-server), https:// (a TLS server on 127.0.0.1) and
file:// / paths, each placed by the local, AWS (moto) and GCP (fake-gcs-server) providers, then
read back byte for byte. A source whose published checksum does not match its bytes fails the
copy and leaves no object behind at any target. Mirrors: a site takes the first mirror in its
own cloud, else the first it can read.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.fleet.artifacts import artifact_spec
from orchestrator.fleet.model import Site
from orchestrator.providers import create_provider
from orchestrator.providers.aws.naming import bucket_name
from orchestrator.providers.base import (
    Op,
    Provider,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    spec_of,
)
from orchestrator.providers.gcp.storage import gcs_bucket_name
from orchestrator.providers.local import ARTIFACT_MANIFEST, LocalProvider
from orchestrator.providers.transfer import ArtifactIntegrityError
from tests.cloud_servers import gcs_client
from tests.providers.fleets import site, unique
from tests.providers.https_server import HttpsServer, Route, https_server

pytestmark = pytest.mark.slow

MODEL = "m"
SHARDS = {"config.json": b'{"layers": 2}\n', "shards/model.safetensors": bytes(range(256)) * 97}
HTTPS_BODY = b"weights served over https\n" * 997
KINDS = ("s3", "gs", "https", "file")
TARGETS = ("local", "aws", "gcp")


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsServer]:
    with https_server(tmp_path_factory.mktemp("tls")) as server:
        server.routes["/m/model.safetensors"] = Route(
            HTTPS_BODY, (("Repr-Digest", f"sha-256=:{_b64_sha256(HTTPS_BODY)}:"),)
        )
        server.routes["/m/get-only.safetensors"] = Route(
            HTTPS_BODY, (("Repr-Digest", f"sha-256=:{_b64_sha256(HTTPS_BODY)}:"),), head=False
        )
        server.routes["/m/corrupt.safetensors"] = Route(
            HTTPS_BODY, (("Repr-Digest", f"sha-256=:{_b64_sha256(b'other bytes')}:"),)
        )
        yield server


@dataclass(frozen=True)
class World:
    fleet_dir: Path
    options: dict[str, str]
    sources: dict[str, tuple[str, dict[str, bytes]]]  # kind -> (uri, expected files)
    https: HttpsServer


@pytest.fixture(scope="module")
def world(
    moto_url: str, gcs_url: str, https: HttpsServer, tmp_path_factory: pytest.TempPathFactory
) -> World:
    tag = unique()
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket=f"src-{tag}")
    gcs = gcs_client(gcs_url).create_bucket(f"src-{tag}")
    fleet_dir = tmp_path_factory.mktemp("fleet")
    for name, body in SHARDS.items():
        s3.put_object(Bucket=f"src-{tag}", Key=f"{MODEL}/{name}", Body=body)
        gcs.blob(f"{MODEL}/{name}").upload_from_string(body)
        (fleet_dir / "weights" / MODEL / name).parent.mkdir(parents=True, exist_ok=True)
        (fleet_dir / "weights" / MODEL / name).write_bytes(body)
    options = {
        "fleet_dir": str(fleet_dir),
        "aws_endpoint_url": moto_url,
        "aws_max_attempts": "1",
        "gcs_endpoint_url": gcs_url,
        "gcs_retry_timeout": "1",
        "https_ca_bundle": str(https.ca_bundle),
        "bucket_suffix": tag,
    }
    return World(
        fleet_dir,
        options,
        {
            "s3": (f"s3://src-{tag}/{MODEL}/", SHARDS),
            "gs": (f"gs://src-{tag}/{MODEL}/", SHARDS),
            "https": (f"{https.url}/m/model.safetensors", {"model.safetensors": HTTPS_BODY}),
            "file": ("weights/m", SHARDS),
        },
        https,
    )


@dataclass
class Target:
    provider: Provider
    site: Site
    read_back: Callable[[], dict[str, bytes]]  # name under the model prefix -> bytes
    manifest: Callable[[], dict[str, Any]]


def make_target(kind: str, world: World, moto_url: str, gcs_url: str) -> Target:
    tag = unique()
    context = ProviderContext(state_dir=world.fleet_dir / ".sovereign", options=world.options)
    if kind == "local":
        local = site(f"local-{tag}", "US", "local", "local-us", "US")
        provider = create_provider("local", context)
        assert isinstance(provider, LocalProvider)
        root = provider.artifact_dir(local.id, MODEL)

        def local_files() -> dict[str, bytes]:
            return {
                p.relative_to(root).as_posix(): p.read_bytes()
                for p in root.rglob("*")
                if p.is_file() and p.name != ARTIFACT_MANIFEST
            }

        return Target(
            provider,
            local,
            local_files,
            lambda: json.loads((root / ARTIFACT_MANIFEST).read_text()),
        )
    if kind == "aws":
        aws = site(f"aws-us-east-1-{tag}", "US", "aws", "us-east-1", "US")
        s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
        bucket = bucket_name(aws.id, world.options["bucket_suffix"])

        def s3_files() -> dict[str, bytes]:
            listed = s3.list_object_versions(Bucket=bucket, Prefix=f"{MODEL}/")
            keys = {v["Key"] for v in listed.get("Versions", [])}
            return {
                k[len(MODEL) + 1 :]: s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                for k in keys
                if not k.endswith(".sovereign-artifact.json")
            }

        def s3_manifest() -> dict[str, Any]:
            got = s3.get_object(Bucket=bucket, Key=f"{MODEL}/.sovereign-artifact.json")
            manifest: dict[str, Any] = json.loads(got["Body"].read())
            return manifest

        provider = create_provider("aws", context)
        assert isinstance(provider, Provider)
        return Target(provider, aws, s3_files, s3_manifest)
    gcp = site(f"gcp-us-central1-{tag}", "US", "gcp", "us-central1", "US")
    client = gcs_client(gcs_url)
    name = gcs_bucket_name(gcp.id, world.options["bucket_suffix"])

    def gcs_files() -> dict[str, bytes]:
        if client.lookup_bucket(name) is None:
            return {}
        return {
            b.name[len(MODEL) + 1 :]: b.download_as_bytes()
            for b in client.list_blobs(name, prefix=f"{MODEL}/", versions=True)
            if not b.name.endswith(".sovereign-artifact.json")
        }

    def gcs_manifest() -> dict[str, Any]:
        blob = client.bucket(name).blob(f"{MODEL}/.sovereign-artifact.json")
        manifest: dict[str, Any] = json.loads(blob.download_as_bytes())
        return manifest

    provider = create_provider("gcp", context)
    assert isinstance(provider, Provider)
    return Target(provider, gcp, gcs_files, gcs_manifest)


def artifact(site_id: str, source: str) -> Resource:
    return Resource(ResourceKind.ARTIFACT, site_id, MODEL, spec=spec_of(source=source))


def place(target: Target, source: str) -> Resource:
    resource = artifact(target.site.id, source)
    target.provider.apply(target.site, ResourceChange(Op.CREATE, None, resource))
    return resource


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target_kind", TARGETS)
def test_weights_from_every_source_into_every_provider(
    target_kind: str, kind: str, world: World, moto_url: str, gcs_url: str
) -> None:
    target = make_target(target_kind, world, moto_url, gcs_url)
    uri, expected = world.sources[kind]
    resource = place(target, uri)
    assert target.provider.observe(target.site) == {resource}
    assert target.read_back() == expected
    assert target.manifest()["source"] == uri
    # Re-applying is idempotent: the same bytes, nothing left over.
    place(target, uri)
    assert target.read_back() == expected


@pytest.mark.parametrize("target_kind", TARGETS)
def test_a_checksum_mismatch_fails_the_copy_and_leaves_no_partial_object(
    target_kind: str, world: World, moto_url: str, gcs_url: str
) -> None:
    target = make_target(target_kind, world, moto_url, gcs_url)
    with pytest.raises(ArtifactIntegrityError) as err:
        place(target, f"{world.https.url}/m/corrupt.safetensors")
    assert "does not match its source" in err.value.message and "sha256" in err.value.message
    assert target.provider.observe(target.site) == frozenset()
    assert target.read_back() == {}


def test_a_site_takes_the_mirror_in_its_own_cloud_first(
    world: World, moto_url: str, gcs_url: str
) -> None:
    s3_uri, _ = world.sources["s3"]
    gs_uri, _ = world.sources["gs"]
    target = make_target("gcp", world, moto_url, gcs_url)
    spec = artifact_spec([s3_uri, gs_uri])
    resource = place(target, spec)
    assert target.provider.observe(target.site) == {resource}
    manifest = target.manifest()
    assert (manifest["source"], manifest["copied_from"]) == (spec, gs_uri)
    assert target.read_back() == SHARDS


def test_else_the_first_mirror_it_can_read(world: World, moto_url: str, gcs_url: str) -> None:
    https_uri, expected = world.sources["https"]
    missing = f"s3://no-such-bucket-{unique()}/m/"
    target = make_target("aws", world, moto_url, gcs_url)
    spec = artifact_spec([f"{world.https.url}/m/absent.bin", missing, https_uri])
    place(target, spec)
    assert target.manifest()["copied_from"] == https_uri
    assert target.read_back() == expected
    # When no mirror can be read, the error names every one of them.
    other = make_target("local", world, moto_url, gcs_url)
    with pytest.raises(Exception, match="no mirror of the artifact can be read") as err:
        place(other, artifact_spec([missing, f"{world.https.url}/m/absent.bin"]))
    assert missing in str(err.value) and "absent.bin" in str(err.value)


def test_an_https_source_that_answers_only_get(world: World, moto_url: str, gcs_url: str) -> None:
    target = make_target("local", world, moto_url, gcs_url)
    place(target, f"{world.https.url}/m/get-only.safetensors")
    assert target.read_back() == {"get-only.safetensors": HTTPS_BODY}
