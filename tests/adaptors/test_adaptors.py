"""The cloud adaptors against real servers: what a failure means is decided once, for the
providers and the state stores alike, and no SDK exception gets past either."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from orchestrator.adaptors import aws, gcp
from orchestrator.errors import PermanentProviderError, StateError, TransientProviderError
from orchestrator.state.blobs import PreconditionFailed
from orchestrator.state.gcs import GcsBlobs
from orchestrator.state.s3 import S3Blobs
from tests.cloud_servers import free_port

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_adaptors_imports_no_sdk() -> None:
    probe = (
        "import sys; import orchestrator.adaptors.aws, orchestrator.adaptors.gcp; "
        "print(sorted(m for m in ('boto3', 'botocore', 'google.cloud.storage') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_aws_failures_of_a_real_server_are_classified(adaptor_moto_url: str) -> None:
    s3 = aws.client("s3", "us-east-1", endpoint_url=adaptor_moto_url)
    bucket = f"adaptor-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    with pytest.raises(Exception) as missing:
        s3.get_object(Bucket=bucket, Key="absent")
    assert aws.is_sdk_error(missing.value) and aws.classify(missing.value) is aws.Failure.NOT_FOUND
    with pytest.raises(Exception) as raced:
        s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert aws.classify(raced.value) is aws.Failure.LOST_RACE
    with pytest.raises(Exception) as invalid:
        s3.create_bucket(Bucket="x")
    assert aws.classify(invalid.value) is aws.Failure.REJECTED
    error = aws.map_aws_error(invalid.value, action="s3:CreateBucket", site="aws-1")
    assert isinstance(error, PermanentProviderError) and "s3:CreateBucket" in error.message


def test_aws_closed_port_is_transient_for_providers_and_a_state_error_for_the_store() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    s3 = aws.client("s3", "us-east-1", endpoint_url=closed, max_attempts=1)
    with pytest.raises(TransientProviderError, match="cannot reach the AWS endpoint"):
        aws.call("aws-1", "s3:ListBucket", s3.head_bucket, Bucket="anything")
    blobs = S3Blobs("anything", "p", client=s3)
    with pytest.raises(StateError, match="cannot reach S3") as caught:
        blobs.get("state.json")
    assert not aws.is_sdk_error(caught.value) and aws.is_sdk_error(caught.value.__cause__)


def test_the_s3_store_reads_races_from_the_adaptor(adaptor_moto_url: str) -> None:
    s3 = aws.client("s3", "us-east-1", endpoint_url=adaptor_moto_url)
    bucket = f"adaptor-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    blobs = S3Blobs(bucket, "p", client=s3)
    assert blobs.get("x") is None
    blobs.put("x", b"1", if_absent=True)
    with pytest.raises(PreconditionFailed):
        blobs.put("x", b"2", if_absent=True)
    with pytest.raises(StateError, match="does not exist"):
        S3Blobs(f"{bucket}-gone", "p", client=s3).get("x")


def test_gcp_failures_of_a_real_server_are_classified(adaptor_gcs_url: str) -> None:
    client = gcp.storage_client("test", adaptor_gcs_url)
    name = f"adaptor-{uuid.uuid4().hex[:10]}"
    bucket = client.create_bucket(name)
    with pytest.raises(Exception) as conflict:
        client.create_bucket(name)
    assert gcp.is_sdk_error(conflict.value)
    assert gcp.classify(conflict.value) is gcp.Failure.CONFLICT
    bucket.blob("k").upload_from_string(b"1", if_generation_match=0)
    with pytest.raises(Exception) as raced:
        bucket.blob("k").upload_from_string(b"2", if_generation_match=0)
    assert gcp.classify(raced.value) is gcp.Failure.LOST_RACE
    with pytest.raises(Exception) as missing:
        client.get_bucket(f"{name}-gone")
    assert gcp.classify(missing.value) is gcp.Failure.NOT_FOUND
    assert gcp.lookup("g1", "storage.buckets.get", client.get_bucket, f"{name}-gone") is None


def test_gcp_closed_port_is_transient_for_providers() -> None:
    client = gcp.storage_client("test", f"http://127.0.0.1:{free_port()}")
    before = set(threading.enumerate())
    with pytest.raises(TransientProviderError):
        gcp.call("g1", "storage.buckets.get", client.get_bucket, "b", retry=gcp.retry(0.2))
    blob = client.bucket("b").blob("o")  # an object call on a bucket the client has not seen
    with pytest.raises(TransientProviderError):
        gcp.call("g1", "storage.objects.get", blob.exists, retry=None, timeout=1)
    # No thread outlives the call: the library's background bucket-metadata fetch would go on
    # retrying the closed port for minutes, drawing jitter from the global random module
    # (which made Hypothesis tests elsewhere in a full run fail).
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == []


def test_the_gcs_store_reads_races_and_absence_from_the_adaptor(adaptor_gcs_url: str) -> None:
    client = gcp.storage_client("test", adaptor_gcs_url)
    name = f"adaptor-{uuid.uuid4().hex[:10]}"
    client.create_bucket(name)
    blobs = GcsBlobs(name, "p", client=client)
    assert blobs.get("x") is None
    blobs.put("x", b"1", if_absent=True)
    with pytest.raises(PreconditionFailed):
        blobs.put("x", b"2", if_absent=True)
    with pytest.raises(StateError, match="does not exist") as caught:
        GcsBlobs(f"{name}-gone", "p", client=client).put("x", b"1")
    assert not gcp.is_sdk_error(caught.value) and gcp.is_sdk_error(caught.value.__cause__)
