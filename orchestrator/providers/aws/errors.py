"""Translate botocore failures into Sovereign's provider errors, naming the IAM action.

No botocore exception may escape the AWS provider (the reconciler retries only
``TransientProviderError`` and reports a site failed on either kind), and an operator reading
"access denied" needs to know which permission to grant, on which site, so every call site
names the IAM action it needs (``s3:PutBucketVersioning``). "Not found" is not an error for
observe or delete: ``is_not_found`` lets callers treat it as drift or as already gone.

botocore is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.errors import PermanentProviderError, ProviderError, TransientProviderError

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "OperationAborted",  # S3: a conflicting operation on the bucket is in progress
    }
)
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"}
)
CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AuthFailure",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "404",
        "NotFound",
        "NoSuchBucket",
        "NoSuchKey",
        "NoSuchVersion",
        "NoSuchTagSet",
        "NoSuchTagSetError",
        "NoSuchPublicAccessBlockConfiguration",
        "NoSuchHostedZone",
        "ResourceNotFound",
        "ResourceNotFoundException",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def is_not_found(exc: BaseException) -> bool:
    """True when ``exc`` says the resource does not exist (drift / already gone, not a failure).

    SageMaker answers a missing model, endpoint or endpoint config with a
    ``ValidationException`` "Could not find ..." rather than a dedicated code.
    """
    code = error_code(exc)
    if code in NOT_FOUND_CODES:
        return True
    return code == "ValidationException" and "could not find" in _message(exc).lower()


def map_aws_error(exc: BaseException, *, action: str, site: str) -> ProviderError:
    """The provider error for a botocore exception raised while calling ``action`` for ``site``.

    ``action`` is the IAM action the call needs (e.g. ``s3:PutBucketVersioning``).
    """
    from botocore import exceptions as bce

    where = f"site {site}: {action}"
    if isinstance(exc, bce.ClientError):
        code = error_code(exc)
        status = _status(exc)
        message = _message(exc)
        if code in ACCESS_DENIED_CODES:
            return PermanentProviderError(
                f"{where} was denied: the AWS credentials lack the IAM permission {action}",
                hint=f"grant {action} to the identity Sovereign runs as "
                "(least-privilege policy: docs/providers.md)",
            )
        if code in CREDENTIAL_CODES:
            return PermanentProviderError(
                f"{where} failed: the AWS credentials were rejected ({code}: {message})",
                hint="check the credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO login)",
            )
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientProviderError(f"{where} failed transiently ({code}: {message})")
        return PermanentProviderError(f"{where} was rejected ({code or status}: {message})")
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return PermanentProviderError(
            f"{where}: no AWS credentials found",
            hint="configure the standard chain: AWS_PROFILE, env variables, SSO or an "
            "instance role",
        )
    if isinstance(
        exc,
        bce.EndpointConnectionError
        | bce.ConnectTimeoutError
        | bce.ReadTimeoutError
        | bce.ConnectionClosedError
        | bce.HTTPClientError,
    ):
        return TransientProviderError(f"{where}: cannot reach the AWS endpoint ({exc})")
    from boto3.exceptions import RetriesExceededError

    if isinstance(exc, RetriesExceededError):
        return TransientProviderError(f"{where}: gave up after retries ({exc})")
    if isinstance(exc, bce.ParamValidationError):
        return PermanentProviderError(f"{where}: invalid request ({exc})")
    return PermanentProviderError(f"{where} failed ({type(exc).__name__}: {exc})")


def is_sdk_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from boto3/botocore (and so must be mapped, never escape)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError | Boto3Error)


def call(site: str, action: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``fn(**kwargs)``, with any SDK failure raised as a ``ProviderError`` naming ``action``."""
    try:
        return fn(**kwargs)
    except Exception as exc:
        if is_sdk_error(exc):
            raise map_aws_error(exc, action=action, site=site) from exc
        raise


def lookup(site: str, action: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any | None:
    """Like ``call``, but a "not found" answer returns None (drift, or already gone)."""
    try:
        return fn(**kwargs)
    except Exception as exc:
        if is_sdk_error(exc):
            if is_not_found(exc):
                return None
            raise map_aws_error(exc, action=action, site=site) from exc
        raise


def pages(
    site: str, action: str, client: Any, operation: str, /, **kwargs: Any
) -> list[dict[str, Any]] | None:
    """Every page of a paginated ``operation``; None when the container is not found."""

    def collect() -> list[dict[str, Any]]:
        return list(client.get_paginator(operation).paginate(**kwargs))

    result: list[dict[str, Any]] | None = lookup(site, action, collect)
    return result
