"""The Google Cloud adaptor: storage clients, their retry policy, and Google errors mapped.

google-cloud-storage (and google.api_core, google.auth, google.resumable_media under it) is
imported on first use, so importing this module costs nothing; the import silences the
ImportWarning google.api_core raises when the optional grpcio-status is missing (storage speaks
JSON over HTTP and never needs it).

Clients follow the library's own rules (Application Default Credentials, or
``STORAGE_EMULATOR_HOST``) unless an endpoint is given: then they talk to that server with
anonymous credentials (emulators, tests). Calls retry with the library's ``DEFAULT_RETRY``
bounded by a deadline.

Errors: :func:`classify` sorts a Google client failure into a :class:`Failure` once;
:func:`map_gcp_error` turns it into a ``TransientProviderError`` or ``PermanentProviderError``
naming the IAM permission (``storage.buckets.create``), and the GCS state store turns the same
classification into ``StateError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from enum import StrEnum
from types import ModuleType
from typing import Any

from orchestrator.errors import PermanentProviderError, ProviderError, TransientProviderError

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_RETRY_TIMEOUT = 60.0
EMULATOR_PROJECT = "sovereign-emulator"


class Failure(StrEnum):
    """What a Google client failure means (the same kinds as the AWS adaptor's)."""

    DENIED = "denied"
    CREDENTIALS = "credentials"
    NOT_FOUND = "not_found"
    LOST_RACE = "lost_race"  # 412: a generation precondition no longer holds
    CONFLICT = "conflict"  # 409: it exists already (a bucket name, an object)
    TRANSIENT = "transient"
    REJECTED = "rejected"


def _without_background_fetches(client: Any) -> Any:
    """The client without its bucket-metadata cache.

    google-cloud-storage 3.x keeps that cache only to label OpenTelemetry spans, and fills it
    from a daemon thread per bucket it has not seen: a retried ``get_bucket`` that nobody
    joins, which against an unreachable endpoint keeps retrying for minutes after the call that
    started it has failed (with jitter drawn from the global ``random``). Sovereign traces
    nothing through it, so no such thread is started; every call stays on the caller's thread,
    under the caller's deadline."""
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    return client


def storage_module() -> ModuleType:
    """``google.cloud.storage``, imported on first use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*grpcio-status.*", category=ImportWarning)
        from google.cloud import storage

    module: ModuleType = storage
    return module


def storage_client(project: str | None = None, endpoint: str | None = None) -> Any:
    """A storage client: the library's defaults, or anonymous against ``endpoint``."""
    storage = storage_module()
    try:
        if endpoint is None:
            return _without_background_fetches(storage.Client(project=project))
        from google.auth.credentials import AnonymousCredentials

        return _without_background_fetches(
            storage.Client(
                project=project or EMULATOR_PROJECT,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": endpoint},
            )
        )
    except Exception as exc:
        if is_sdk_error(exc) or isinstance(exc, OSError | ValueError):
            raise PermanentProviderError(
                f"cannot create a Google Cloud Storage client: {exc}",
                hint="set up Application Default Credentials (gcloud auth application-default "
                "login) or GOOGLE_APPLICATION_CREDENTIALS",
            ) from exc
        raise


def retry(timeout: float = DEFAULT_RETRY_TIMEOUT) -> Any:
    """The storage library's retry policy, bounded by ``timeout`` seconds."""
    storage_module()
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(timeout)


# -- errors ----------------------------------------------------------------------------------


def _is_transport_error(exc: BaseException) -> bool:
    """requests/urllib3/http.client connection failures, which the storage client lets through
    after its own retries. Matched by module so that this needs no untyped import."""
    return isinstance(exc, ConnectionError | TimeoutError) or any(
        cls.__module__.split(".")[0] in {"requests", "urllib3", "http"}
        for cls in type(exc).__mro__
        if cls not in (Exception, BaseException, OSError)
    )


def is_sdk_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the Google libraries or their transport (never to escape)."""
    storage_module()
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from google.resumable_media.common import DataCorruption, InvalidResponse

    return isinstance(
        exc, GoogleAPIError | GoogleAuthError | InvalidResponse | DataCorruption
    ) or _is_transport_error(exc)


def is_not_found(exc: BaseException) -> bool:
    storage_module()
    from google.api_core.exceptions import NotFound

    return isinstance(exc, NotFound)


def http_status(exc: BaseException) -> int:
    """The HTTP status a Google failure carries (0 when it has none)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    return int(getattr(response, "status_code", 0) or 0)


def classify(exc: BaseException) -> Failure:
    """What a Google client failure means (see :class:`Failure`)."""
    storage_module()
    from google.api_core import exceptions as gex
    from google.auth import exceptions as gauth
    from google.resumable_media.common import DataCorruption, InvalidResponse

    if isinstance(exc, gex.Forbidden | gex.Unauthorized):
        return Failure.DENIED
    if isinstance(exc, gex.NotFound):
        return Failure.NOT_FOUND
    if isinstance(exc, gex.PreconditionFailed):
        return Failure.LOST_RACE
    if isinstance(exc, gex.Conflict):
        return Failure.CONFLICT
    if isinstance(exc, gex.RetryError):
        return Failure.TRANSIENT
    if isinstance(exc, gex.GoogleAPICallError | InvalidResponse):
        return Failure.TRANSIENT if http_status(exc) in _TRANSIENT_STATUS else Failure.REJECTED
    if isinstance(exc, gauth.TransportError):
        return Failure.TRANSIENT
    if isinstance(exc, gauth.GoogleAuthError):
        return Failure.CREDENTIALS
    if isinstance(exc, DataCorruption) or _is_transport_error(exc):
        return Failure.TRANSIENT
    return Failure.REJECTED


def map_gcp_error(exc: BaseException, *, permission: str, site: str) -> ProviderError:
    """The provider error for a Google client failure while exercising ``permission``."""
    storage_module()
    from google.api_core import exceptions as gex
    from google.auth import exceptions as gauth
    from google.resumable_media.common import DataCorruption, InvalidResponse

    where = f"site {site}: {permission}"
    kind = classify(exc)
    if kind is Failure.DENIED:
        return PermanentProviderError(
            f"{where} was denied: the Google credentials lack the IAM permission {permission}",
            hint=f"grant {permission} (e.g. via roles/storage.admin on the project) to the "
            "identity Sovereign runs as; see docs/providers.md",
        )
    if isinstance(exc, gex.RetryError):
        return TransientProviderError(f"{where} kept failing until the retry deadline ({exc})")
    if isinstance(exc, gex.GoogleAPICallError):
        code = http_status(exc)
        if kind is Failure.TRANSIENT:
            return TransientProviderError(f"{where} failed transiently ({code}: {exc.message})")
        return PermanentProviderError(f"{where} was rejected ({code}: {exc.message})")
    if isinstance(exc, gauth.DefaultCredentialsError):
        return PermanentProviderError(
            f"{where}: no Google application default credentials found",
            hint="run `gcloud auth application-default login` or set "
            "GOOGLE_APPLICATION_CREDENTIALS / a workload identity",
        )
    if isinstance(exc, gauth.TransportError):
        return TransientProviderError(f"{where}: cannot reach the Google auth endpoint ({exc})")
    if isinstance(exc, gauth.GoogleAuthError):
        return PermanentProviderError(f"{where}: the Google credentials were rejected ({exc})")
    if isinstance(exc, InvalidResponse):
        status = http_status(exc)
        if kind is Failure.TRANSIENT:
            return TransientProviderError(f"{where} failed transiently (HTTP {status})")
        return PermanentProviderError(f"{where} was rejected (HTTP {status}: {exc})")
    if isinstance(exc, DataCorruption):
        return TransientProviderError(f"{where}: checksum mismatch in transfer ({exc})")
    if _is_transport_error(exc):
        return TransientProviderError(f"{where}: cannot reach the storage endpoint ({exc})")
    return PermanentProviderError(f"{where} failed ({type(exc).__name__}: {exc})")


def call(site: str, permission: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; any SDK failure becomes a ``ProviderError`` for ``permission``."""
    try:
        return fn(*args, **kwargs)
    except ProviderError:
        raise
    except Exception as exc:
        if is_sdk_error(exc):
            raise map_gcp_error(exc, permission=permission, site=site) from exc
        raise


def lookup(
    site: str, permission: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any | None:
    """Like ``call``, but "not found" returns None (drift, or already gone)."""
    try:
        return fn(*args, **kwargs)
    except ProviderError:
        raise
    except Exception as exc:
        if is_sdk_error(exc):
            if is_not_found(exc):
                return None
            raise map_gcp_error(exc, permission=permission, site=site) from exc
        raise
