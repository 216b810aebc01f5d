"""The AWS provider's clients, one per (service, region), and where they point.

Credentials come from the standard chain (env, profile, SSO, instance role); Sovereign never
handles them. Options come from ``ProviderContext.options`` or ``SOVEREIGN_<OPTION>``
environment variables. The endpoint is, in order: the per-region option
``aws_endpoint_url.<region>`` (lets a test or a VPC-endpoint setup point one region
elsewhere), the option ``aws_endpoint_url``, then boto3's own ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_<SERVICE>`` handling. The clients themselves come from the AWS adaptor
(``orchestrator.adaptors.aws``: one process-wide session under a lock, boto3 imported on first
use), so importing the provider costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from orchestrator.adaptors import aws
from orchestrator.adaptors.aws import DEFAULT_CONNECT_TIMEOUT
from orchestrator.providers.base import ENV_PREFIX, ProviderOptions, option_env_name

if TYPE_CHECKING:  # the types-boto3-* stubs (dev extra); nothing is imported at run time
    from types_boto3_route53 import Route53Client
    from types_boto3_s3 import S3Client
    from types_boto3_sagemaker import SageMakerClient

__all__ = ["ENV_PREFIX", "AwsClients", "ProviderOptions", "option_env_name"]

ENDPOINT_OPTION = "aws_endpoint_url"
MAX_ATTEMPTS_OPTION = "aws_max_attempts"
CONNECT_TIMEOUT_OPTION = "aws_connect_timeout"
# botocore attempts per call: 1, because the reconciler retries each change (RetryPolicy); a
# higher aws_max_attempts multiplies the two (docs/providers.md, "Retries").
PROVIDER_MAX_ATTEMPTS = 1


class AwsClients:
    """boto3 clients per (service, region), created on first use and shared (thread-safe).

    Created by ``adaptors.aws.client`` from the one process-wide session, with this
    provider's endpoint, retry and timeout options.
    """

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self._options: Mapping[str, str] = (
            options if isinstance(options, ProviderOptions) else ProviderOptions(options)
        )
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def endpoint_for(self, region: str) -> str | None:
        """The explicit endpoint for ``region``, or None to let boto3 decide."""
        return self._options.get(f"{ENDPOINT_OPTION}.{region}") or self._options.get(
            ENDPOINT_OPTION
        )

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = aws.client(
                    service,
                    region,
                    endpoint_url=self.endpoint_for(region),
                    max_attempts=int(self._options.get(MAX_ATTEMPTS_OPTION, PROVIDER_MAX_ATTEMPTS)),
                    connect_timeout=float(
                        self._options.get(CONNECT_TIMEOUT_OPTION, DEFAULT_CONNECT_TIMEOUT)
                    ),
                )
                self._clients[key] = found
            return found

    # Typed views of ``client``: each service's stub type, so the adaptors' calls are checked.
    def s3(self, region: str) -> S3Client:
        return cast("S3Client", self.client("s3", region))

    def sagemaker(self, region: str) -> SageMakerClient:
        return cast("SageMakerClient", self.client("sagemaker", region))

    def route53(self, region: str) -> Route53Client:
        return cast("Route53Client", self.client("route53", region))
