"""The shipped example fleet (regions/) applied to emulated clouds, and torn down in part.

Every AWS site on the moto server, every GCP site on a fake-gcs-server of its own region, the
weights in the catalog's real source buckets (s3://acme-models, gs://acme-models-eu,
gs://acme-models-in): the first apply places everything, copying server-side within a cloud and
streaming across clouds (mistral-large-3 and sarvam-2 into S3, the s3:// models into GCS), and
the second plan is empty. Then India leaves the fleet while its AWS region is unreachable: the
Indian GCP site is torn down, the AWS site fails (exit 3) and stays listed by `status` until a
later apply, with the region back, removes it; then nothing is left to do.

The one edit to the copied fleet: moto's SageMaker knows no ml.g6e instance types, so the
example's ml.g6e.12xlarge becomes ml.g4dn.12xlarge.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import boto3
import pytest

from orchestrator.cli.app import main
from orchestrator.providers.aws.naming import bucket_name, sagemaker_base_name
from orchestrator.providers.base import option_env_name
from orchestrator.providers.gcp.storage import gcs_bucket_name
from tests.cloud_servers import LOOPBACK, fake_gcs_server, free_port, gcs_client
from tests.processes import spawn
from tests.providers.fleets import WEIGHTS, unique

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
S3_MODELS = ("fable-5", "mythos-5", "olmo-3")
GCS_SOURCES = {"acme-models-eu": "mistral-large-3", "acme-models-in": "sarvam-2"}
EXTRA_GCS_REGIONS = ("europe-west2", "asia-south1", "asia-northeast1")


@pytest.fixture(scope="module")
def own_moto(dummy_credentials: None) -> Iterator[str]:
    """A moto server in a process of its own (moto's backends are per process): the example's
    SageMaker names, derived from its fixed site ids, must not meet other tests' endpoints."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    process = spawn(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def gcs_regions(gcs_url: str, gcs_eu_url: str) -> Iterator[dict[str, str]]:
    """One fake-gcs-server per GCP region of the example fleet (buckets land in its region)."""
    with ExitStack() as stack:
        urls = {"us-central1": gcs_url, "europe-west4": gcs_eu_url}
        for region in EXTRA_GCS_REGIONS:
            urls[region] = stack.enter_context(fake_gcs_server(location=region))
        yield urls


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 1), out, err


def seed_sources(moto_url: str, gcs_regions: dict[str, str]) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    if "acme-models" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket="acme-models")
    for model in S3_MODELS:
        for key, body in WEIGHTS.items():
            s3.put_object(Bucket="acme-models", Key=f"{model}/{key}", Body=body)
    # GCS is one service: every emulated region sees the source buckets (rewrites need them).
    for url in gcs_regions.values():
        client = gcs_client(url)
        for name, model in GCS_SOURCES.items():
            bucket = client.lookup_bucket(name) or client.create_bucket(name)
            for key, body in WEIGHTS.items():
                bucket.blob(f"{model}/{key}").upload_from_string(body)


def test_the_example_fleet_applies_to_emulated_clouds_and_india_leaves(
    own_moto: str,
    gcs_regions: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moto_url = own_moto
    seed_sources(moto_url, gcs_regions)
    fleet = tmp_path / "regions"
    shutil.copytree(REPO / "regions", fleet, ignore=shutil.ignore_patterns(".sovereign"))
    for profile in fleet.glob("*.yaml"):
        text = profile.read_text()
        profile.write_text(text.replace("ml.g6e.12xlarge", "ml.g4dn.12xlarge"))
    tag = unique()
    options = {
        "aws_endpoint_url": moto_url,
        "aws_sagemaker_role_arn": "arn:aws:iam::123456789012:role/sovereign-example",
        "aws_max_attempts": "1",
        "bucket_suffix": tag,
        "gcs_retry_timeout": "1",
        "gcs_artifact_region": "europe-west4",
        **{f"gcs_endpoint_url.{region}": url for region, url in gcs_regions.items()},
    }
    for key, value in options.items():
        monkeypatch.setenv(option_env_name(key), value)
    monkeypatch.setenv("SOVEREIGN_RETRY_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("SOVEREIGN_RETRY_BASE_DELAY", "0.01")
    args = ["--fleet", str(fleet), "--state", f"sqlite:///{tmp_path / 'state.db'}"]

    code, out, err = cli(capsys, "apply", *args, "--yes", "--json")
    assert code == 0, err + out
    result = json.loads(out)["result"]
    assert result["ok"] and not result["failed"]
    code, out, err = cli(capsys, "plan", *args, "--detailed-exitcode", "--json")
    assert code == 0, err + out  # the second plan is empty
    assert json.loads(out)["changes"] == []

    # Streamed across clouds: GCS weights in S3, S3 weights in GCS, byte for byte.
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="ap-south-1")
    india = bucket_name("aws-ap-south-1", tag)
    for key, body in WEIGHTS.items():
        got = s3.get_object(Bucket=india, Key=f"sarvam-2/{key}")["Body"].read()
        assert got == body
    gcs_us = gcs_client(gcs_regions["us-central1"]).bucket(gcs_bucket_name("gcp-us-central1", tag))
    for key, body in WEIGHTS.items():
        assert gcs_us.blob(f"fable-5/{key}").download_as_bytes() == body
    uk = boto3.client("s3", endpoint_url=moto_url, region_name="eu-west-2")
    uk_keys = {
        o["Key"] for o in uk.list_objects_v2(Bucket=bucket_name("aws-eu-west-2", tag))["Contents"]
    }
    assert {f"mistral-large-3/{k}" for k in WEIGHTS} <= uk_keys

    # India leaves the fleet while its AWS region cannot be reached.
    (fleet / "in.yaml").unlink()
    models = fleet / "models.yaml"
    text = models.read_text()
    models.write_text(text[: text.index("  - id: sarvam-2")])
    monkeypatch.setenv(
        option_env_name("aws_endpoint_url.ap-south-1"), f"http://127.0.0.1:{free_port()}"
    )
    # A jurisdiction leaving is decommissioned only by name, with a reason (audited).
    leave = ["--decommission", "IN", "--reason", "CHG-7: India leaves the fleet"]
    code, out, err = cli(capsys, "apply", *args, "--yes", "--json", *leave)
    assert code == 3, err + out
    result = json.loads(out)["result"]
    assert result["failed"] == ["aws-ap-south-1"]
    gcp_india = gcs_client(gcs_regions["asia-south1"]).bucket(
        gcs_bucket_name("gcp-asia-south1", tag)
    )
    assert [b.name for b in gcp_india.list_blobs(prefix="sarvam-2/")] == []
    code, out, _ = cli(capsys, "status", *args, "--json")
    assert [d["site"] for d in json.loads(out)["departed"]] == ["aws-ap-south-1"]

    # The region is back: the next apply finishes the teardown, then nothing is left to do.
    monkeypatch.delenv(option_env_name("aws_endpoint_url.ap-south-1"))
    code, out, err = cli(capsys, "apply", *args, "--yes", "--json", *leave)
    assert code == 0, err + out
    listed = s3.list_object_versions(Bucket=india, Prefix="sarvam-2/")
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")
    sm = boto3.client("sagemaker", endpoint_url=moto_url, region_name="ap-south-1")
    names = {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
    assert sagemaker_base_name("aws-ap-south-1", "sarvam-2") not in names
    code, out, _ = cli(capsys, "status", *args, "--json")
    assert json.loads(out)["departed"] == []
    code, out, err = cli(capsys, "plan", *args, "--detailed-exitcode", "--json")
    assert code == 0, err + out
