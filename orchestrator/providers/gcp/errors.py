"""Translate Google Cloud client failures into Sovereign's provider errors.

The same contract as the AWS mapping: throttling, 5xx and connection failures are
``TransientProviderError`` (retried by the reconciler), permission and validation failures are
``PermanentProviderError`` naming the missing IAM permission (``storage.buckets.create``) and
the site, "not found" is absence (``lookup`` returns None), and no SDK exception escapes.
The Google libraries are imported inside the functions so that importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.errors import PermanentProviderError, ProviderError, TransientProviderError

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _is_transport_error(exc: BaseException) -> bool:
    """requests/urllib3/http.client connection failures, which the storage client lets through
    after its own retries. Matched by module so that this needs no untyped import."""
    return isinstance(exc, ConnectionError | TimeoutError) or any(
        cls.__module__.split(".")[0] in {"requests", "urllib3", "http"}
        for cls in type(exc).__mro__
        if cls not in (Exception, BaseException, OSError)
    )


def _is_sdk_error(exc: BaseException) -> bool:
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from google.resumable_media.common import DataCorruption, InvalidResponse

    return isinstance(
        exc, GoogleAPIError | GoogleAuthError | InvalidResponse | DataCorruption
    ) or _is_transport_error(exc)


def is_not_found(exc: BaseException) -> bool:
    from google.api_core.exceptions import NotFound

    return isinstance(exc, NotFound)


def map_gcp_error(exc: BaseException, *, permission: str, site: str) -> ProviderError:
    """The provider error for a Google client failure while exercising ``permission``."""
    from google.api_core import exceptions as gex
    from google.auth import exceptions as gauth
    from google.resumable_media.common import DataCorruption, InvalidResponse

    where = f"site {site}: {permission}"
    if isinstance(exc, gex.Forbidden | gex.Unauthorized):
        return PermanentProviderError(
            f"{where} was denied: the Google credentials lack the IAM permission {permission}",
            hint=f"grant {permission} (e.g. via roles/storage.admin on the project) to the "
            "identity Sovereign runs as; see docs/providers.md",
        )
    if isinstance(exc, gex.RetryError):
        return TransientProviderError(f"{where} kept failing until the retry deadline ({exc})")
    if isinstance(exc, gex.GoogleAPICallError):
        code = int(exc.code or 0)
        if code in _TRANSIENT_STATUS:
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
        status = int(getattr(exc.response, "status_code", 0) or 0)
        if status in _TRANSIENT_STATUS:
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
        if _is_sdk_error(exc):
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
        if _is_sdk_error(exc):
            if is_not_found(exc):
                return None
            raise map_gcp_error(exc, permission=permission, site=site) from exc
        raise
