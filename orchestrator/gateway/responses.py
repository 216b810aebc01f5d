"""The gateway's own error answers: one JSON shape, and RFC 6750 challenges for bad tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from orchestrator.gateway.callers import AuthError

__all__ = ["error_response", "not_found", "unauthorized", "unauthorized_response"]


def error_response(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """``{"error": {"type", "message", ...}}`` with ``status``."""
    return JSONResponse(
        {"error": {"type": kind, "message": message, **extra}},
        status_code=status,
        headers=dict(headers or {}),
    )


def unauthorized(exc: AuthError) -> tuple[str, dict[str, Any]]:
    """The ``WWW-Authenticate`` challenge and the JSON body of a 401, as the gateway and
    ``sovereign authz`` both answer it: RFC 6750 codes for tokens, ``invalid_api_key`` for API
    keys."""
    # The reason may quote attacker-chosen text (an alg name): keep the header valid.
    reason = "".join(c for c in exc.reason if c.isprintable() and c not in '"\\')
    challenge = f'Bearer realm="sovereign", error="{exc.error}", error_description="{reason}"'
    # As OpenAI answers: type authentication_error, the precise reason in ``code``
    # (``invalid_api_key``, ``invalid_token``, ``invalid_request``).
    body = {"error": {"type": "authentication_error", "message": exc.reason, "code": exc.error}}
    return challenge, body


def unauthorized_response(exc: AuthError) -> JSONResponse:
    """401 with a ``WWW-Authenticate: Bearer`` challenge naming the error."""
    challenge, body = unauthorized(exc)
    return JSONResponse(body, status_code=exc.status, headers={"WWW-Authenticate": challenge})


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    """A path (404) or method (405) the gateway does not serve: JSON, as every other answer."""
    status = getattr(exc, "status_code", 404)
    path = request.url.path
    if status == 405:
        message, code = f"{request.method} is not allowed on {path}", "method_not_allowed"
    else:
        message, code = f"no such endpoint: {request.method} {path}", "unknown_url"
    return error_response(status, "invalid_request_error", message, code=code)
