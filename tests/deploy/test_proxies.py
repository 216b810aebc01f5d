"""deploy/proxies/: authz as a Service, and the Envoy Gateway and Istio resources that ask it.

No Python package carries the published schemas (CRDs) of Envoy Gateway or Istio, so these
check the structure those APIs define (kinds, versions, the fields that wire them to authz
and keep them closed on failure), not a schema validator. The authz container's command is
parsed by the CLI's own command tree, as for every other manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.test_manifests import parse

PROXIES = Path(__file__).resolve().parents[2] / "deploy" / "proxies"


def load(name: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((PROXIES / name).read_text()) if d is not None]
    assert all({"apiVersion", "kind", "metadata"} <= set(d) for d in docs), name
    return docs


def test_authz_runs_a_real_command_behind_a_service_with_both_ports() -> None:
    deployment, service = load("authz.yaml")
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    name, params = parse(container["command"])
    assert name == "authz"
    assert (params["port"], params["grpc_port"]) == (9191, 9192)
    assert params["state"].startswith("s3://")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == 9192 and ports["grpc"]["appProtocol"] == "grpc"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_envoy_gateway_security_policy_asks_authz_and_fails_closed() -> None:
    (policy,) = load("envoy-gateway-securitypolicy.yaml")
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    assert policy["kind"] == "SecurityPolicy"
    ext = policy["spec"]["extAuth"]
    assert ext["failOpen"] is False
    (backend,) = ext["grpc"]["backendRefs"]
    assert (backend["name"], backend["port"]) == ("sovereign-authz", 9192)
    assert {"authorization", "x-sovereign-model", "x-gateway-model-name"} <= set(
        ext["headersToExtAuth"]
    )
    (target,) = policy["spec"]["targetRefs"]
    assert target["kind"] == "HTTPRoute" and target["group"] == "gateway.networking.k8s.io"


def test_istio_custom_policy_names_a_provider_that_points_at_authz() -> None:
    policy, operator = load("istio-authorizationpolicy.yaml")
    assert policy["apiVersion"] == "security.istio.io/v1"
    assert policy["kind"] == "AuthorizationPolicy"
    assert policy["spec"]["action"] == "CUSTOM"
    provider = policy["spec"]["provider"]["name"]
    (entry,) = operator["spec"]["meshConfig"]["extensionProviders"]
    assert entry["name"] == provider == "sovereign-authz"
    grpc = entry["envoyExtAuthzGrpc"]
    assert grpc["service"].startswith("sovereign-authz.sovereign.")
    assert grpc["port"] == 9192 and grpc["failOpen"] is False
