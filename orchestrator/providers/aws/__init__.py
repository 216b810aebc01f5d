"""AWS: S3 artifact buckets, SageMaker deployments and Route 53 geolocation records.

boto3 is imported only on first use inside the submodules, so importing this package (as the
provider registry does) stays cheap and ``sovereign validate`` never loads the SDK.
"""

from __future__ import annotations

from orchestrator.providers.aws.provider import AwsProvider

__all__ = ["AwsProvider"]
