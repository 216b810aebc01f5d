"""``sovereign export --format nginx|envoy``: configuration for a proxy in front of authz.

Both configurations ask ``sovereign authz`` before every model request and never decide
anything themselves: which sites may serve, in which order, and the refusal's body all come
from authz's answer, so a directive or a drain reaches the proxy with no reload
(docs/proxies.md). Both fail closed: if authz cannot be reached, the request is refused
(``503``), never forwarded.

nginx (``auth_request``): authz answers with ``X-Sovereign-Upstreams`` (the base URLs of the
route's sites, healthy first); the request goes to the first and, on a connection error,
timeout or ``502``/``503``/``504``, to the next, and to no other URL. nginx's ``auth_request``
passes only 2xx, 401 and 403, so authz is asked with ``X-Sovereign-Proxy: nginx`` and puts a
refusal's real status and body in headers, which the configuration returns unchanged.

Envoy: the ``ext_authz`` HTTP filter over gRPC (``failure_mode_allow: false``), one cluster
per site, and the route picks the cluster named by authz's ``X-Sovereign-Cluster`` header.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from orchestrator.fleet.model import Fleet
from orchestrator.gateway.authz import cluster_name

__all__ = ["envoy_bootstrap", "nginx_config"]

_UNREACHABLE = (
    '{"error":{"type":"authz_unavailable","message":"sovereign authz could not be reached: '
    'the request is refused (fail closed)"}}'
)
_EXHAUSTED = (
    '{"error":{"type":"upstream_unavailable","message":"every site this principal may use '
    'failed; no other site is allowed"}}'
)
_NO_ANSWER = (
    '{"error":{"type":"authz_unavailable","message":"sovereign authz refused without saying '
    'why: the request is refused (fail closed)"}}'
)
REFUSAL_STATUSES = (400, 401, 404, 451, 503)


def _upstream_blocks(fleet: Fleet, resolver: str | None) -> list[tuple[str, str, str, str]]:
    """(base URL as authz names it, upstream block name, host:port, target URL) for each site
    endpoint nginx can resolve when it starts: every one, or with a resolver only IP
    addresses (host names are then resolved per request)."""
    out = []
    for site in sorted(fleet.sites.values(), key=lambda s: s.id):
        if not site.endpoint:
            continue
        parts = urlsplit(site.endpoint.rstrip("/"))
        host = parts.hostname or ""
        if resolver is not None:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        name = f"sovereign_site_{site.id}"
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        target = f"{parts.scheme}://{name}{parts.path}"
        out.append((site.endpoint.rstrip("/"), name, hostport, target))
    return out


def _hops(fleet: Fleet) -> int:
    """How many sites a route can hold: every site of the fleet, at most."""
    return max(1, len(fleet.sites))


def nginx_config(
    fleet: Fleet,
    authz: str = "127.0.0.1:9191",
    listen: str = "127.0.0.1:8080",
    resolver: str | None = None,
    worker_processes: str = "auto",
    pid: str | None = None,
) -> str:
    """A complete ``nginx.conf`` (``nginx -c FILE``) in front of authz at ``authz``
    (host:port) serving on ``listen``."""
    hops = _hops(fleet)
    blocks = _upstream_blocks(fleet, resolver)
    lines = [
        "# nginx in front of `sovereign authz` (written by `sovereign export --format nginx`).",
        "# Every model request is decided by authz (auth_request); nginx sends it only to the",
        "# upstreams authz names, in order, and relays refusals unchanged. Directives and drains",
        "# take effect in authz: this file never needs a reload for them. docs/proxies.md",
        f"worker_processes {worker_processes};",
        "error_log stderr warn;",
    ]
    if pid is not None:
        lines.append(f"pid {pid};")
    lines += [
        "events { worker_connections 4096; }",
        "",
        "http {",
        "    access_log off;",
        "    default_type application/json;",
        "    server_tokens off;",
        "    client_max_body_size 4m;",
        "    client_body_buffer_size 4m;   # bodies stay in memory: a failover resends them",
        "    recursive_error_pages on;     # failover is one error_page per hop",
    ]
    if resolver is not None:
        lines.append(f"    resolver {resolver} valid=30s;")
    lines += [
        "",
        "    upstream sovereign_authz {",
        f"        server {authz};",
        "        keepalive 64;",
        "    }",
        "",
        "    # Each site endpoint as an upstream with kept-alive connections; a base URL authz",
        "    # names that is not one of these (a host name with --resolver) is proxied to as is.",
    ]
    for _, name, hostport, _ in blocks:
        lines += [f"    upstream {name} {{ server {hostport}; keepalive 32; }}"]
    lines += [
        "",
        "    # The k-th base URL of X-Sovereign-Upstreams (the route's sites, healthy first), and",
        "    # where to send it: its upstream block, or the URL itself; TLS names the real host.",
    ]
    for k in range(1, hops + 1):
        skip = "[^,]+," * (k - 1)
        lines += [
            f"    map $sovereign_upstreams $sovereign_u{k} {{",
            f'        "~^{skip}(?<u{k}>[^,]+)" $u{k};',
            '        default "";',
            "    }",
            f"    map $sovereign_u{k} $sovereign_t{k} {{",
            *(f'        "{base}" "{target}";' for base, _, _, target in blocks),
            f"        default $sovereign_u{k};",
            "    }",
            f"    map $sovereign_u{k} $sovereign_sni{k} {{",
            *(
                f'        "{base}" "{urlsplit(base).hostname}";'
                for base, _, _, _ in blocks
                if base.startswith("https://")
            ),
            "        default $proxy_host;",
            "    }",
        ]
    lines += [
        "",
        "    server {",
        f"        listen {listen};",
        "",
        "        location = /_sovereign/authz {",
        "            internal;",
        "            proxy_pass http://sovereign_authz/check;",
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_pass_request_body off;",
        '            proxy_set_header Content-Length "";',
        "            proxy_set_header X-Sovereign-Proxy nginx;",
        "            proxy_set_header X-Original-Method $request_method;",
        "            proxy_set_header X-Original-URI $request_uri;",
        "            proxy_buffer_size 64k;    # a refusal's explanation rides in a header",
        "            proxy_buffers 8 64k;",
        "            proxy_connect_timeout 2s;",
        "            proxy_read_timeout 10s;",
        "        }",
        "",
        "        location / {",
        "            auth_request /_sovereign/authz;",
        "            auth_request_set $sovereign_status $upstream_http_x_sovereign_status;",
        "            auth_request_set $sovereign_body $upstream_http_x_sovereign_body;",
        "            auth_request_set $sovereign_challenge $upstream_http_www_authenticate;",
        "            auth_request_set $sovereign_route $upstream_http_x_sovereign_route;",
        "            auth_request_set $sovereign_upstreams $upstream_http_x_sovereign_upstreams;",
        "            auth_request_set $sovereign_table $upstream_http_x_sovereign_table;",
        "            error_page 401 403 = @sovereign_refused;",
        "            error_page 500 502 503 504 = @sovereign_unreachable;   # fail closed",
        "            try_files /.sovereign-no-such-file @sovereign_hop1;",
        "        }",
        "",
        "        location @sovereign_refused {",
        "            add_header X-Sovereign-Table $sovereign_table always;",
        "            add_header WWW-Authenticate $sovereign_challenge always;",
    ]
    for status in REFUSAL_STATUSES:
        lines.append(
            f"            if ($sovereign_status = {status}) {{ return {status} $sovereign_body; }}"
        )
    lines += [
        f"            return 503 '{_NO_ANSWER}';",
        "        }",
        "",
        "        location @sovereign_unreachable {",
        f"            return 503 '{_UNREACHABLE}';",
        "        }",
        "",
        "        location @sovereign_exhausted {",
        "            add_header X-Sovereign-Route $sovereign_route always;",
        f"            return 502 '{_EXHAUSTED}';",
        "        }",
    ]
    for k in range(1, hops + 1):
        nxt = f"@sovereign_hop{k + 1}" if k < hops else "@sovereign_exhausted"
        empty = "@sovereign_exhausted" if k > 1 else "@sovereign_unreachable"
        lines += [
            "",
            f"        location @sovereign_hop{k} {{",
            f'            if ($sovereign_u{k} = "") {{ return 418; }}',
            f"            error_page 418 = {empty};",
            f"            proxy_pass $sovereign_t{k}$request_uri;",
            "            proxy_intercept_errors on;",
            f"            error_page 502 503 504 = {nxt};",
            "            proxy_http_version 1.1;",
            '            proxy_set_header Connection "";',
            '            proxy_set_header Authorization "";   # the credential stays here',
            '            proxy_set_header X-Sovereign-Proxy "";',
            "            proxy_set_header X-Sovereign-Route $sovereign_route;",
            "            proxy_buffering off;              # streams (SSE) pass chunk by chunk",
            "            proxy_cache off;",
            "            proxy_connect_timeout 2s;",
            "            proxy_read_timeout 300s;",
            "            proxy_ssl_server_name on;",
            f"            proxy_ssl_name $sovereign_sni{k};",
            "            proxy_ssl_verify on;",
            "            proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;",
            "            add_header X-Sovereign-Route $sovereign_route always;",
            "            add_header X-Sovereign-Table $sovereign_table always;",
            "        }",
        ]
    lines += ["    }", "}", ""]
    return "\n".join(lines)


def envoy_bootstrap(
    fleet: Fleet,
    authz_grpc: str = "127.0.0.1:9192",
    listen_port: int = 8080,
    listen_address: str = "127.0.0.1",
) -> dict[str, Any]:
    """An Envoy ``Bootstrap`` (as a JSON-able dict): ext_authz over gRPC to authz, fail
    closed, one cluster per site with an endpoint, routed by ``X-Sovereign-Cluster``."""
    authz_host, _, authz_port = authz_grpc.rpartition(":")
    clusters: list[dict[str, Any]] = [
        {
            "name": "sovereign_authz",
            "type": "STRICT_DNS",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": _assignment("sovereign_authz", authz_host, int(authz_port)),
        }
    ]
    for site in sorted(fleet.sites.values(), key=lambda s: s.id):
        if not site.endpoint:
            continue
        parts = urlsplit(site.endpoint)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        cluster: dict[str, Any] = {
            "name": cluster_name(site.id),
            "type": "STRICT_DNS",
            "connect_timeout": "2s",
            "load_assignment": _assignment(cluster_name(site.id), parts.hostname or "", port),
        }
        if tls:
            cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": parts.hostname or "",
                },
            }
        clusters.append(cluster)
    ext_authz = {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": False,  # authz unreachable: refused, never let through
            "status_on_error": {"code": 503},
            "clear_route_cache": True,  # the route reads X-Sovereign-Cluster, set by authz
            "grpc_service": {
                "envoy_grpc": {"cluster_name": "sovereign_authz"},
                "timeout": "1s",
            },
        },
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }
    hcm = {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "sovereign",
        "codec_type": "AUTO",
        "route_config": {
            "name": "sovereign",
            "virtual_hosts": [
                {
                    "name": "models",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {
                                "cluster_header": "x-sovereign-cluster",
                                "timeout": "300s",
                            },
                        }
                    ],
                }
            ],
        },
        "http_filters": [ext_authz, router],
    }
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "sovereign",
                    "address": {
                        "socket_address": {"address": listen_address, "port_value": listen_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        }
    }


def _assignment(name: str, host: str, port: int) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {
                        "endpoint": {
                            "address": {"socket_address": {"address": host, "port_value": port}}
                        }
                    }
                ]
            }
        ],
    }
