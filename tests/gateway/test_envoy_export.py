"""``sovereign export --format envoy``: parsed into Envoy's own ``Bootstrap`` proto.

The same published protos (``xds-protos``) as authz's gRPC service: ``json_format.ParseDict``
refuses any unknown field, wrong type or unknown ``@type``, so a bootstrap that parses here is
one Envoy reads. Checked on top: ext_authz over gRPC to authz, fail closed, one cluster per
site with an endpoint, and the route's cluster is the one authz names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.transport_sockets.tls.v3.tls_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
from envoy.config.bootstrap.v3 import bootstrap_pb2

# Registers the typed_config messages the bootstrap names (Any needs them in the pool).
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from orchestrator.fleet.loader import load_fleet
from orchestrator.gateway.authz import cluster_name

REGIONS = Path(__file__).resolve().parents[2] / "regions"


def test_the_bootstrap_parses_as_envoys_own_proto_and_fails_closed() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "export",
            "--format",
            "envoy",
            "--fleet",
            str(REGIONS),
            "--authz",
            "authz.sovereign:9192",
            "--listen",
            "0.0.0.0:8443",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    bootstrap = json_format.ParseDict(json.loads(done.stdout), bootstrap_pb2.Bootstrap())
    fleet = load_fleet(REGIONS)
    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    with_endpoint = {s.id for s in fleet.sites.values() if s.endpoint}
    assert set(clusters) == {"sovereign_authz"} | {cluster_name(s) for s in with_endpoint}
    authz = clusters["sovereign_authz"].load_assignment.endpoints[0].lb_endpoints[0]
    assert authz.endpoint.address.socket_address.address == "authz.sovereign"
    assert authz.endpoint.address.socket_address.port_value == 9192
    (listener,) = bootstrap.static_resources.listeners
    assert listener.address.socket_address.port_value == 8443
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    first, router = manager.http_filters
    assert router.name == "envoy.filters.http.router"
    ext = ext_authz_pb2.ExtAuthz()
    assert first.typed_config.Unpack(ext)
    assert ext.failure_mode_allow is False and ext.status_on_error.code == 503
    assert ext.grpc_service.envoy_grpc.cluster_name == "sovereign_authz"
    assert ext.clear_route_cache is True
    (route,) = manager.route_config.virtual_hosts[0].routes
    assert route.route.cluster_header == "x-sovereign-cluster"
    # every site with an https endpoint is reached over TLS, with SNI
    for site_id in with_endpoint:
        cluster = clusters[cluster_name(site_id)]
        if fleet.sites[site_id].endpoint.startswith("https://"):
            assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
