"""``envoy.service.auth.v3.Authorization/Check`` for ``sovereign authz --grpc-port``.

Envoy's published protos (the ``xds-protos`` package) and ``grpcio``; both are imported only
here, and this module only when a gRPC port is asked for, so no other command pays for them.
The answer is ``Authz.decide``'s, translated: allowed is ``OK`` with the ``X-Sovereign-*``
headers added to the upstream request (the caller's ``Authorization`` removed: the model server
never sees the caller's credential); a refusal is a ``DeniedHttpResponse`` with the same status
and JSON body the HTTP endpoint gives (``451``, ``503``, ``401`` with ``WWW-Authenticate``, ...)
and the matching gRPC code, so Envoy relays it to the client unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["check_response", "serve_grpc", "servicer_for"]


class Answer(Protocol):
    """What ``authz.Authz.decide`` returns (``authz.AuthzAnswer``)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...

    def body_bytes(self) -> bytes: ...


# google.rpc.Code values (the numbers are part of the gRPC contract)
_OK, _PERMISSION_DENIED, _UNAUTHENTICATED, _UNAVAILABLE, _INVALID_ARGUMENT, _NOT_FOUND = (
    0,
    7,
    16,
    14,
    3,
    5,
)
_CODES = {401: _UNAUTHENTICATED, 400: _INVALID_ARGUMENT, 404: _NOT_FOUND, 503: _UNAVAILABLE}


def _headers_of(request: Any) -> dict[str, str]:
    http = request.attributes.request.http
    headers = {k.lower(): v for k, v in http.headers.items()}
    for h in http.header_map.headers:  # Envoy's raw form (encode_raw_headers)
        value = h.value or h.raw_value.decode("utf-8", "replace")
        headers.setdefault(h.key.lower(), value)
    return headers


def check_response(answer: Answer) -> Any:
    """The ``CheckResponse`` for one decision."""
    from envoy.config.core.v3 import base_pb2
    from envoy.service.auth.v3 import external_auth_pb2
    from envoy.type.v3 import http_status_pb2

    def option(key: str, value: str) -> Any:
        return base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=value),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )

    if answer.status == 200:
        response = external_auth_pb2.CheckResponse(
            ok_response=external_auth_pb2.OkHttpResponse(
                headers=[option(k, v) for k, v in answer.headers],
                headers_to_remove=["authorization"],
            ),
        )
        response.status.code = _OK  # google.rpc.Status, set in place
        return response
    headers = [option(k, v) for k, v in answer.headers]
    headers.append(option("content-type", "application/json"))
    response = external_auth_pb2.CheckResponse(
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=answer.status),
            headers=headers,
            body=answer.body_bytes().decode("ascii"),
        ),
    )
    response.status.code = _CODES.get(answer.status, _PERMISSION_DENIED)
    return response


def servicer_for(decide: Callable[[str | None, str | None], Answer]) -> Any:
    """A grpc.aio ``Authorization`` servicer answering with ``decide(authorization, model)``."""
    from envoy.service.auth.v3 import external_auth_pb2_grpc

    class _Authorization(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
        async def Check(self, request: Any, context: Any) -> Any:
            headers = _headers_of(request)
            model = headers.get("x-sovereign-model") or headers.get("x-gateway-model-name")
            return check_response(decide(headers.get("authorization"), model or None))

    return _Authorization()


async def serve_grpc(servicer: Any, host: str, port: int) -> tuple[Any, int]:
    """Start a grpc.aio server for ``servicer`` on ``host:port`` (port 0: any; several
    processes may share one port: gRPC sets ``SO_REUSEPORT``). Returns it and its port."""
    import grpc
    from envoy.service.auth.v3 import external_auth_pb2_grpc

    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    return server, bound
