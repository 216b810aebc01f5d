"""The AWS adaptor: boto3 clients from one lazily created session, and botocore errors mapped.

Credentials come from the standard chain (env, profile, SSO, instance role); Sovereign never
handles them. boto3 is imported on the first client, so importing this module costs nothing.

Clients are created from one process-wide boto3 ``Session`` under one lock: creating clients
from a session concurrently is not thread-safe (the reconciler applies sites in parallel), and
sharing it means the large service models are parsed once per process. A client retries in
botocore's "standard" mode with ``max_attempts`` attempts per call in all (the first included):
``DEFAULT_MAX_ATTEMPTS`` for callers that do not retry themselves (the S3 state store), 1 for the
providers, whose changes the reconciler retries (``reconcile/retry.py``): one layer of retries
per call, whichever it is (docs/providers.md, "Retries").

Errors: :func:`classify` sorts a botocore/boto3 exception into a :class:`Failure` once;
:func:`map_aws_error` turns it into a ``TransientProviderError`` or ``PermanentProviderError``
naming the IAM action (``s3:PutBucketVersioning``), and the S3 state store turns the same
classification into ``StateError``. "Not found" is not an error for observe or delete:
``lookup`` returns None.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from orchestrator.errors import PermanentProviderError, ProviderError, TransientProviderError

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_ATTEMPTS = 5  # attempts per call, the first included, where botocore is the layer
DEFAULT_CONNECT_TIMEOUT = 10.0

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
        "NoSuchBucketPolicy",
        "NoSuchHostedZone",
        "ResourceNotFound",
        "ResourceNotFoundException",
    }
)
# A conditional write lost its race (S3 If-Match / If-None-Match): 412, or 409 while another
# conditional write on the key is in flight.
LOST_RACE_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


class Failure(StrEnum):
    """What an SDK failure means, whatever the service said it with."""

    DENIED = "denied"  # the identity lacks a permission
    CREDENTIALS = "credentials"  # no credentials, or rejected ones
    NOT_FOUND = "not_found"
    LOST_RACE = "lost_race"  # a conditional write found the object changed
    TRANSIENT = "transient"  # throttling, 5xx, timeouts, connection failures
    INVALID = "invalid"  # the request itself is wrong
    REJECTED = "rejected"  # any other refusal by the service


_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def client(
    service: str,
    region: str | None = None,
    *,
    endpoint_url: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Any:
    """A new boto3 client from the process-wide session (callers keep and share it).

    ``region`` None and ``endpoint_url`` None leave boto3's own rules in force
    (``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, the profile).
    """
    global _SESSION  # one lazily created session per process, see the module docstring
    with _SESSION_LOCK:
        import boto3
        from botocore.config import Config

        if _SESSION is None:
            _SESSION = boto3.session.Session()
        config = Config(
            region_name=region,
            # total_max_attempts counts the first attempt; botocore's "max_attempts" would not
            retries={"mode": "standard", "total_max_attempts": max(1, max_attempts)},
            connect_timeout=connect_timeout,
        )
        try:
            return _SESSION.client(
                service, region_name=region, endpoint_url=endpoint_url, config=config
            )
        except Exception as exc:
            if is_sdk_error(exc):
                raise PermanentProviderError(
                    f"cannot create an AWS {service} client: {exc}",
                    hint="check AWS_REGION / AWS_PROFILE and the endpoint settings",
                ) from exc
            raise


def transfer_config(*, chunk: int, max_concurrency: int) -> Any:
    """boto3's ``TransferConfig`` for streamed multipart uploads in ``chunk``-byte parts."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=max_concurrency
    )


# -- errors ----------------------------------------------------------------------------------


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


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def is_sdk_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from boto3/botocore (and so must be mapped, never escape)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError | Boto3Error)


def is_not_found(exc: BaseException) -> bool:
    """True when ``exc`` says the resource does not exist (drift / already gone, not a failure).

    SageMaker answers a missing model, endpoint or endpoint config with a
    ``ValidationException`` "Could not find ..." rather than a dedicated code.
    """
    code = error_code(exc)
    if code in NOT_FOUND_CODES:
        return True
    return code == "ValidationException" and "could not find" in error_message(exc).lower()


def classify(exc: BaseException) -> Failure:
    """What a boto3/botocore exception means (see :class:`Failure`)."""
    from boto3.exceptions import RetriesExceededError
    from botocore import exceptions as bce

    if isinstance(exc, bce.ClientError):
        code, status = error_code(exc), _status(exc)
        if code in LOST_RACE_CODES:
            return Failure.LOST_RACE
        if code in ACCESS_DENIED_CODES:
            return Failure.DENIED
        if code in CREDENTIAL_CODES:
            return Failure.CREDENTIALS
        if is_not_found(exc):
            return Failure.NOT_FOUND
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return Failure.TRANSIENT
        return Failure.REJECTED
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return Failure.CREDENTIALS
    if isinstance(
        exc,
        bce.EndpointConnectionError
        | bce.ConnectTimeoutError
        | bce.ReadTimeoutError
        | bce.ConnectionClosedError
        | bce.HTTPClientError
        | RetriesExceededError,
    ):
        return Failure.TRANSIENT
    if isinstance(exc, bce.ParamValidationError):
        return Failure.INVALID
    return Failure.REJECTED


def map_aws_error(exc: BaseException, *, action: str, site: str) -> ProviderError:
    """The provider error for a botocore exception raised while calling ``action`` for ``site``.

    ``action`` is the IAM action the call needs (e.g. ``s3:PutBucketVersioning``).
    """
    where = f"site {site}: {action}"
    kind = classify(exc)
    code, message = error_code(exc), error_message(exc)
    if kind is Failure.DENIED:
        return PermanentProviderError(
            f"{where} was denied: the AWS credentials lack the IAM permission {action}",
            hint=f"grant {action} to the identity Sovereign runs as "
            "(least-privilege policy: docs/providers.md)",
        )
    if kind is Failure.CREDENTIALS:
        if not code:
            return PermanentProviderError(
                f"{where}: no AWS credentials found",
                hint="configure the standard chain: AWS_PROFILE, env variables, SSO or an "
                "instance role",
            )
        return PermanentProviderError(
            f"{where} failed: the AWS credentials were rejected ({code}: {message})",
            hint="check the credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO login)",
        )
    if kind is Failure.TRANSIENT:
        if code or _status(exc):
            return TransientProviderError(
                f"{where} failed transiently ({code or _status(exc)}: {message})"
            )
        return TransientProviderError(f"{where}: cannot reach the AWS endpoint ({exc})")
    if kind is Failure.INVALID:
        return PermanentProviderError(f"{where}: invalid request ({exc})")
    if code or _status(exc):
        return PermanentProviderError(f"{where} was rejected ({code or _status(exc)}: {message})")
    return PermanentProviderError(f"{where} failed ({type(exc).__name__}: {exc})")


def call(site: str, action: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(**kwargs)``, with any SDK failure raised as a ``ProviderError`` naming ``action``.

    Typed through: with a typed client (the ``types-boto3-*`` stubs of the dev extra) the
    arguments are checked against the operation and the answer is its TypedDict."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if is_sdk_error(exc):
            raise map_aws_error(exc, action=action, site=site) from exc
        raise


def lookup(
    site: str, action: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R | None:
    """Like ``call``, but a "not found" answer returns None (drift, or already gone)."""
    try:
        return fn(*args, **kwargs)
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
