"""deploy/: every manifest loads, and every container runs a real ``sovereign`` command.

Each container command is parsed by the CLI's own click command tree (``make_context``: option
names, types and required values checked exactly as at run time, nothing invoked), so a renamed
flag breaks this test rather than a rollout. The gateway and controller are checked for what
docs/deploy.md promises: readiness on /healthz at the port they listen on, state in object
storage, a Service and an autoscaler that point at the gateway, never root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.cli.app import click_context, command_tree
from orchestrator.gateway.tokens import load_token_keys

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and {"apiVersion", "kind"} <= set(doc), path
            docs.append(doc)
    return docs


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == "Deployment"}


def parse(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``sovereign ...`` with the real command tree; returns (command, its params)."""
    assert argv[0] == "sovereign", argv
    group = command_tree()
    parent = click_context(group)
    name, command, rest = group.resolve_command(parent, argv[1:])
    assert command is not None and name is not None, argv
    ctx = command.make_context(name, list(rest), parent=parent)
    return name, ctx.params


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    for generator in kustomization.get("configMapGenerator", []):
        for file in generator["files"]:
            assert (K8S / file).is_file()


@pytest.mark.parametrize("name", sorted(deployments()))
def test_every_container_command_is_a_sovereign_invocation_the_cli_accepts(name: str) -> None:
    spec = deployments()[name]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    for container in spec["containers"]:
        argv = [str(a) for a in container["command"] + container.get("args", [])]
        command, params = parse(argv)
        assert command in {"gateway", "controller"}
        port = int(params["port"])
        assert params["host"] == "0.0.0.0"  # reachable by the probes and the Service
        assert [p["containerPort"] for p in container["ports"]] == [port]
        for probe in ("readinessProbe", "livenessProbe"):
            check = container[probe]["httpGet"]
            assert check["path"] == "/healthz"
            assert check["port"] in (port, container["ports"][0]["name"])
        assert str(params["state"]).startswith(("s3://", "gs://"))
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_gateway_is_served_autoscaled_and_trusts_a_real_key() -> None:
    gateway = deployments()["sovereign-gateway"]
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    docs = documents()
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "sovereign-gateway"
    )
    assert service["spec"]["selector"].items() <= labels.items()
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "sovereign-gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    argv = gateway["spec"]["template"]["spec"]["containers"][0]["command"]
    key_file = Path(option(argv, "--token-key"))
    mount = next(
        m
        for m in gateway["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if Path(m["mountPath"]) == key_file.parent
    )
    assert mount["readOnly"] is True
    # the key the manifests ship is one the gateway loads (replace it with your IdP's JWKS)
    assert load_token_keys([K8S / key_file.name])
    assert json.loads((K8S / key_file.name).read_text())["keys"]


def test_the_controller_pulls_from_git_and_leads_through_the_lease() -> None:
    controller = deployments()["sovereign-controller"]
    assert controller["spec"]["replicas"] >= 2  # a standby takes over through the lease
    argv = controller["spec"]["template"]["spec"]["containers"][0]["command"]
    _, params = parse(argv)
    assert params["git"].startswith("https://") and params["branch"]
    assert params["once"] is False and params["interval"] > 0
    mounts = {
        m["mountPath"]
        for m in controller["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert any(str(params["checkout"]).startswith(m) for m in mounts)  # writable checkout


def test_a_flag_the_cli_does_not_know_is_caught() -> None:
    from typer._click.exceptions import NoSuchOption

    with pytest.raises(NoSuchOption):
        parse(["sovereign", "gateway", "--token-key", "k.pem", "--no-such-flag"])


def test_the_image_runs_as_a_user_and_installs_this_repository() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    lines = [
        line.strip()
        for line in dockerfile.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert "COPY orchestrator /tmp/src/orchestrator" in lines
    assert any(line.startswith("RUN pip install") and "/tmp/src" in line for line in lines)
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert json.loads(entry.removeprefix("ENTRYPOINT").strip())[-1] == "sovereign"
    for copied in ("pyproject.toml", "README.md", "orchestrator", "regions"):
        assert (REPO / copied).exists()
