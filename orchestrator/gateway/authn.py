"""One request authenticator for every door: the gateway and ``sovereign authz`` ask it alike.

``Authenticator.authenticate(authorization)`` takes an ``Authorization`` header value (bytes as
received, or text) and returns the ``Caller`` (principal, kind, loggable label) or raises an
``AuthError`` whose ``error`` is the code of the ``401`` answer. Whatever the kind of
credential, the principal comes from something signed (docs/identity.md); never from a header
the caller types.

Its call cost is the token verifier's: a token seen before is a cache hit keyed by the
header's own bytes, and the ``Caller`` is built once with the verification.
"""

from __future__ import annotations

from orchestrator.gateway.callers import AuthError, Caller, CallerKind
from orchestrator.gateway.tokens import TokenError, TokenVerifier

__all__ = ["AuthError", "Authenticator", "Caller", "CallerKind"]


class Authenticator:
    """Authenticates a request's ``Authorization`` header."""

    def __init__(self, tokens: TokenVerifier | None = None) -> None:
        self.tokens = tokens

    def authenticate(self, authorization: str | bytes | None) -> Caller:
        """The caller the header proves, or ``AuthError`` (answered ``401``)."""
        if self.tokens is None:
            if not authorization:
                raise TokenError("missing bearer token", "invalid_request")
            raise TokenError("no token keys are configured", "invalid_token")
        return self.tokens.verify_header(authorization).caller
