"""Error mapping: real failures from moto / fake-gcs-server / closed ports, and botocore or
google errors built from real response shapes where the servers cannot produce them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from google.api_core import exceptions as gex
from google.auth.exceptions import DefaultCredentialsError

from orchestrator.adaptors import gcp as gcp_errors
from orchestrator.adaptors.aws import call, is_not_found, lookup, map_aws_error
from orchestrator.errors import PermanentProviderError, ProviderError, TransientProviderError
from orchestrator.providers.aws.session import AwsClients
from tests.cloud_servers import free_port, gcs_client


def _client_error(code: str, status: int, operation: str = "PutBucketVersioning") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


def test_real_not_found_answers_are_absence_not_errors(moto_url: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    sm = boto3.client("sagemaker", endpoint_url=moto_url, region_name="eu-central-1")
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1")
    assert lookup("s1", "s3:GetBucketTagging", s3.get_bucket_tagging, Bucket="no-such-b") is None
    assert lookup("s1", "s3:ListBucket", s3.head_bucket, Bucket="no-such-b") is None
    assert (
        lookup("s1", "sagemaker:DescribeEndpoint", sm.describe_endpoint, EndpointName="nope")
        is None
    )
    assert lookup("s1", "route53:GetHostedZone", r53.get_hosted_zone, Id="ZNOPE") is None
    with pytest.raises(PermanentProviderError) as caught:
        call("s1", "sagemaker:DescribeEndpoint", sm.describe_endpoint, EndpointName="nope")
    assert isinstance(caught.value.__cause__, ClientError) and is_not_found(caught.value.__cause__)


def test_a_real_validation_error_is_permanent_and_names_action_and_site(moto_url: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    with pytest.raises(PermanentProviderError) as caught:
        call("aws-eu-central-1", "s3:CreateBucket", s3.create_bucket, Bucket="x")
    assert "aws-eu-central-1" in caught.value.message
    assert "s3:CreateBucket" in caught.value.message and "InvalidBucketName" in caught.value.message
    assert isinstance(caught.value.__cause__, ClientError)


def test_a_closed_port_is_transient() -> None:
    clients = AwsClients(
        {"aws_endpoint_url": f"http://127.0.0.1:{free_port()}", "aws_max_attempts": "1"}
    )
    s3 = clients.client("s3", "eu-west-2")
    with pytest.raises(TransientProviderError, match="cannot reach the AWS endpoint"):
        call("aws-eu-west-2", "s3:ListBucket", s3.head_bucket, Bucket="anything")


def test_per_region_endpoint_overrides_win() -> None:
    clients = AwsClients(
        {
            "aws_endpoint_url": "http://127.0.0.1:1",
            "aws_endpoint_url.eu-west-2": "http://127.0.0.1:2",
        }
    )
    assert clients.endpoint_for("eu-west-2") == "http://127.0.0.1:2"
    assert clients.endpoint_for("us-east-1") == "http://127.0.0.1:1"
    assert AwsClients({}).endpoint_for("us-east-1") is None  # boto3's own AWS_ENDPOINT_URL


def test_access_denied_names_the_missing_iam_action_and_site() -> None:
    error = map_aws_error(
        _client_error("AccessDenied", 403), action="s3:PutBucketVersioning", site="aws-eu-central-1"
    )
    assert isinstance(error, PermanentProviderError)
    assert "s3:PutBucketVersioning" in error.message and "aws-eu-central-1" in error.message
    assert error.hint is not None and "s3:PutBucketVersioning" in error.hint


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("Throttling", 400, TransientProviderError),
        ("ThrottlingException", 400, TransientProviderError),
        ("SlowDown", 503, TransientProviderError),
        ("InternalError", 500, TransientProviderError),
        ("PriorRequestNotComplete", 400, TransientProviderError),
        ("SomethingNew", 502, TransientProviderError),
        ("ExpiredToken", 400, PermanentProviderError),
        ("AccessDeniedException", 400, PermanentProviderError),
        ("ValidationException", 400, PermanentProviderError),
        ("InvalidChangeBatch", 400, PermanentProviderError),
    ],
)
def test_aws_error_codes_map_to_transient_or_permanent(
    code: str, status: int, kind: type[ProviderError]
) -> None:
    error = map_aws_error(_client_error(code, status), action="s3:X", site="s")
    assert type(error) is kind


def test_missing_credentials_are_permanent_with_a_hint() -> None:
    error = map_aws_error(NoCredentialsError(), action="s3:ListBucket", site="s")
    assert isinstance(error, PermanentProviderError) and error.hint


def test_gcs_not_found_is_absence(gcs_url: str) -> None:
    client = gcs_client(gcs_url)
    assert gcp_errors.lookup("g1", "storage.buckets.get", client.get_bucket, "no-such") is None
    with pytest.raises(PermanentProviderError) as caught:
        gcp_errors.call("g1", "storage.buckets.get", client.get_bucket, "no-such")
    assert isinstance(caught.value.__cause__, gex.NotFound)


def test_gcs_closed_port_is_transient() -> None:
    from google.cloud.storage.retry import DEFAULT_RETRY

    client = gcs_client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientProviderError):
        gcp_errors.call(
            "g1",
            "storage.buckets.get",
            client.get_bucket,
            "b",
            retry=DEFAULT_RETRY.with_timeout(0.5),
        )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (gex.Forbidden("no"), PermanentProviderError),
        (gex.Unauthorized("no"), PermanentProviderError),
        (gex.BadRequest("bad"), PermanentProviderError),
        (gex.TooManyRequests("slow down"), TransientProviderError),
        (gex.ServiceUnavailable("later"), TransientProviderError),
        (gex.InternalServerError("oops"), TransientProviderError),
        (gex.RetryError("deadline", cause=None), TransientProviderError),
        (DefaultCredentialsError("none"), PermanentProviderError),
        (ConnectionRefusedError("refused"), TransientProviderError),
    ],
)
def test_google_errors_map_to_transient_or_permanent(
    exc: Exception, kind: type[ProviderError]
) -> None:
    error = gcp_errors.map_gcp_error(exc, permission="storage.buckets.create", site="g1")
    assert type(error) is kind and "g1" in error.message


def test_gcs_forbidden_names_the_permission() -> None:
    error = gcp_errors.map_gcp_error(
        gex.Forbidden("denied"), permission="storage.buckets.create", site="gcp-europe-west4"
    )
    assert "storage.buckets.create" in error.message and "gcp-europe-west4" in error.message


def test_importing_the_providers_does_not_import_the_sdks(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from orchestrator.providers import create_provider
        from orchestrator.providers.base import ProviderContext
        import orchestrator.planning.dns
        for name in ("aws", "gcp", "route53"):
            create_provider(name, ProviderContext(state_dir=Path({str(tmp_path)!r})))
        sdks = ("boto3", "botocore", "google")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in sdks)
        assert not loaded, loaded
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 0, result.stderr
