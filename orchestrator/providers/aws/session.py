"""Lazily created boto3 clients, one per (service, region), and where they point.

Credentials come from the standard chain (env, profile, SSO, instance role); Sovereign never
handles them. Options come from ``ProviderContext.options`` or ``SOVEREIGN_<OPTION>``
environment variables. The endpoint is, in order: the per-region option
``aws_endpoint_url.<region>`` (lets a test or a VPC-endpoint setup point one region
elsewhere), the option ``aws_endpoint_url``, then boto3's own ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_<SERVICE>`` handling. boto3 is imported on first use, so importing the
provider costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from orchestrator.providers.base import ENV_PREFIX, ProviderOptions, option_env_name

__all__ = ["ENV_PREFIX", "AwsClients", "ProviderOptions", "option_env_name"]

ENDPOINT_OPTION = "aws_endpoint_url"
MAX_ATTEMPTS_OPTION = "aws_max_attempts"
CONNECT_TIMEOUT_OPTION = "aws_connect_timeout"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0

_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


class AwsClients:
    """boto3 clients per (service, region), created on first use and shared (thread-safe).

    All instances create clients from one process-wide boto3 ``Session`` under one lock:
    creating clients from a session concurrently is not thread-safe (the reconciler applies
    sites in parallel), and sharing it means the large service models are parsed once per
    process rather than once per provider.
    """

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self._options: Mapping[str, str] = (
            options if isinstance(options, ProviderOptions) else ProviderOptions(options)
        )
        self._clients: dict[tuple[str, str], Any] = {}

    def endpoint_for(self, region: str) -> str | None:
        """The explicit endpoint for ``region``, or None to let boto3 decide."""
        return self._options.get(f"{ENDPOINT_OPTION}.{region}") or self._options.get(
            ENDPOINT_OPTION
        )

    def client(self, service: str, region: str) -> Any:
        global _SESSION  # one lazily created session per process, see the class docstring
        key = (service, region)
        with _SESSION_LOCK:
            found = self._clients.get(key)
            if found is not None:
                return found
            import boto3
            from botocore.config import Config

            if _SESSION is None:
                _SESSION = boto3.session.Session()
            config = Config(
                region_name=region,
                retries={
                    "mode": "standard",
                    "max_attempts": int(
                        self._options.get(MAX_ATTEMPTS_OPTION, DEFAULT_MAX_ATTEMPTS)
                    ),
                },
                connect_timeout=float(
                    self._options.get(CONNECT_TIMEOUT_OPTION, DEFAULT_CONNECT_TIMEOUT)
                ),
            )
            created = _SESSION.client(
                service, region_name=region, endpoint_url=self.endpoint_for(region), config=config
            )
            self._clients[key] = created
            return created
