"""Who is asking, once authenticated: a ``Caller``, or an ``AuthError`` that answers 401.

Shared by every way of authenticating (development tokens, API keys of attested tenants, OIDC
issuers; docs/identity.md) and by every place that asks (the gateway, ``sovereign authz``), so
that they cannot disagree about who a request comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.policy.principal import Principal

__all__ = ["AuthError", "Caller", "CallerKind"]

CallerKind = Literal["token", "key", "issuer"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request's principal, how it was established, and a loggable label.

    ``label`` names the caller in access and decision logs without ever holding a secret: the
    tenant id for an API key, the issuer plus a truncated SHA-256 of the token's ``sub`` for a
    token (``iss#0123abcd...``). Never the token, never the key.
    """

    principal: Principal
    kind: CallerKind
    label: str


class AuthError(Exception):
    """A request's credentials are missing or not acceptable: answered ``401``.

    ``error`` is the code the answer carries: the RFC 6750 codes for tokens
    (``invalid_request``, ``invalid_token``), ``invalid_api_key`` for API keys (what OpenAI
    clients expect). ``reason`` is safe to show the caller and to log (never a secret).
    """

    status = 401

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
