"""End to end through the CLI: `sovereign plan` / `apply` on AWS and GCP sites served by moto
and fake-gcs-server, with one region unreachable during apply (exit 3), then converging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestrator.fleet.signing import generate_key
from orchestrator.providers.aws.naming import bucket_name, sagemaker_base_name
from tests.cloud_servers import DUMMY_ENV, free_port
from tests.providers.fleets import WEIGHTS, unique

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _write_fleet(root: Path, source: str, zone_id: str, domain: str) -> None:
    def authorities() -> str:
        # each jurisdiction its own key: one key under two authorities is a validate error
        _, public_key = generate_key()
        return f"""
authorities:
  - id: authority
    public_key: "{public_key}"
"""

    (root / "us.yaml").write_text(f"""jurisdiction: US
name: United States
countries: [US]
{authorities()}
residency:
  process_in: [US]
export:
  restricted: [EU]
models: [fable-5, olmo-3]
sites:
  - id: aws-us-east-1
    provider: aws
    region: us-east-1
    country: US
    operator: acme-us-inc
    instance_type: ml.g4dn.xlarge
  - id: gcp-us-central1
    provider: gcp
    region: us-central1
    country: US
    operator: acme-us-inc
failover: [aws-us-east-1, gcp-us-central1]
""")
    (root / "eu.yaml").write_text(f"""jurisdiction: EU
name: European Union
countries: [DE, FR]
{authorities()}
residency:
  process_in: [EU]
models: [fable-5, olmo-3]
sites:
  - id: aws-eu-central-1
    provider: aws
    region: eu-central-1
    country: DE
    operator: acme-eu-gmbh
    instance_type: ml.g4dn.xlarge
failover: [aws-eu-central-1]
""")
    (root / "fleet.yaml").write_text(f"""unlisted_countries: deny
dns:
  hosted_zone_id: {zone_id}
  domain: {domain}
""")
    (root / "models.yaml").write_text(f"""models:
  - id: fable-5
    origin: US
    export_control: restricted
    artifact: s3://{source}/fable-5/
  - id: olmo-3
    origin: US
    artifact: s3://{source}/olmo-3/
""")


def _sovereign(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=240,
        check=False,
    )


def test_apply_with_one_region_down_exits_3_and_the_rerun_converges(
    moto_url: str, gcs_url: str, source_bucket: str, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    tag = unique()
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1")
    domain = f"{tag}.inference.example"
    zone_id = r53.create_hosted_zone(Name=domain, CallerReference=tag)["HostedZone"]["Id"]
    zone_id = zone_id.split("/")[-1]
    _write_fleet(fleet, source_bucket, zone_id, domain)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOVEREIGN_"))},
        **DUMMY_ENV,
        "AWS_ENDPOINT_URL": moto_url,
        "STORAGE_EMULATOR_HOST": gcs_url,
        "SOVEREIGN_BUCKET_SUFFIX": tag,
        "SOVEREIGN_AWS_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/sovereign-e2e",
        "SOVEREIGN_AWS_MAX_ATTEMPTS": "1",
        "SOVEREIGN_GCS_RETRY_TIMEOUT": "1",
        "SOVEREIGN_RETRY_MAX_ATTEMPTS": "2",
        "SOVEREIGN_RETRY_BASE_DELAY": "0.01",
    }
    plan_file = tmp_path / "plan.json"
    planned = _sovereign(
        ["plan", "--fleet", str(fleet), "--state", state, "--out", str(plan_file), "--json"], env
    )
    assert planned.returncode == 0, planned.stderr
    changes: list[dict[str, Any]] = json.loads(plan_file.read_text())["changes"]
    assert {c["target"] for c in changes} >= {
        "aws-us-east-1",
        "gcp-us-central1",
        "aws-eu-central-1",
    }

    closed = f"http://127.0.0.1:{free_port()}"
    down = {**env, "SOVEREIGN_AWS_ENDPOINT_URL__EU_CENTRAL_1": closed}
    applied = _sovereign(
        ["apply", str(plan_file), "--fleet", str(fleet), "--state", state, "--json"], down
    )
    assert applied.returncode == 3, applied.stderr
    result = json.loads(applied.stdout)["result"]
    text = json.dumps(result)
    assert "aws-eu-central-1" in text and "cannot reach the AWS endpoint" in text
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    us_keys = {
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name("aws-us-east-1", tag))["Contents"]
    }
    assert {f"fable-5/{k}" for k in WEIGHTS} <= us_keys
    eu_s3 = boto3.client("s3", endpoint_url=moto_url, region_name="eu-central-1")
    assert bucket_name("aws-eu-central-1", tag) not in {
        b["Name"] for b in eu_s3.list_buckets()["Buckets"]
    }

    # The region is back: a fresh apply converges, and then there is nothing left to do.
    healed = _sovereign(["apply", "--yes", "--fleet", str(fleet), "--state", state, "--json"], env)
    assert healed.returncode == 0, healed.stderr
    sm = boto3.client("sagemaker", endpoint_url=moto_url, region_name="eu-central-1")
    assert sm.describe_endpoint(EndpointName=sagemaker_base_name("aws-eu-central-1", "fable-5"))
    records = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    ours = {(r["SetIdentifier"], r["Type"]) for r in records if "SetIdentifier" in r}
    assert ("sovereign:fable-5:DE", "CNAME") in ours and ("sovereign:olmo-3:US", "TXT") in ours
    again = _sovereign(
        ["plan", "--detailed-exitcode", "--fleet", str(fleet), "--state", state, "--json"], env
    )
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_site_unobservable_at_plan_time_holds_back_only_itself(
    moto_url: str, gcs_url: str, source_bucket: str, tmp_path: Path
) -> None:
    """docs/planning.md, docs/cli.md: a fresh plan covers every site it can see and records the one
    it cannot (exit 1 after showing and saving it); a fresh apply and the controller's --once carry
    out the rest and report that site failed (exit 3); once it is back, one more pass converges."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    tag = unique()
    r53 = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1")
    domain = f"{tag}.inference.example"
    zone_id = r53.create_hosted_zone(Name=domain, CallerReference=tag)["HostedZone"]["Id"]
    zone_id = zone_id.split("/")[-1]
    _write_fleet(fleet, source_bucket, zone_id, domain)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOVEREIGN_"))},
        **DUMMY_ENV,
        "AWS_ENDPOINT_URL": moto_url,
        "STORAGE_EMULATOR_HOST": gcs_url,
        "SOVEREIGN_BUCKET_SUFFIX": tag,
        "SOVEREIGN_AWS_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/sovereign-e2e",
        "SOVEREIGN_AWS_MAX_ATTEMPTS": "1",
        "SOVEREIGN_GCS_RETRY_TIMEOUT": "1",
        "SOVEREIGN_RETRY_MAX_ATTEMPTS": "2",
        "SOVEREIGN_RETRY_BASE_DELAY": "0.01",
    }
    down = {**env, "SOVEREIGN_AWS_ENDPOINT_URL__EU_CENTRAL_1": f"http://127.0.0.1:{free_port()}"}
    common = ["--fleet", str(fleet), "--state", state, "--json"]

    plan_file = tmp_path / "plan.json"
    comment = tmp_path / "plan.md"
    planned = _sovereign(
        ["plan", *common, "--out", str(plan_file), "--markdown", str(comment)], down
    )
    assert planned.returncode == 1, planned.stdout + planned.stderr
    doc = json.loads(planned.stdout)
    assert (
        "--jurisdiction" in doc["error"]["hint"] and "aws-eu-central-1" in doc["error"]["message"]
    )
    [blind] = doc["unobservable"]
    assert blind["site"] == "aws-eu-central-1" and blind["jurisdiction"] == "EU"
    assert "cannot reach the AWS endpoint" in blind["error"]
    targets = {c["target"] for c in doc["changes"]}
    assert {"aws-us-east-1", "gcp-us-central1"} <= targets and "aws-eu-central-1" not in targets
    saved = json.loads(plan_file.read_text())
    assert saved["unobservable"] == doc["unobservable"] and saved["sha256"] == doc["sha256"]
    markdown = comment.read_text()
    assert "could not be observed" in markdown and "`aws-eu-central-1` (EU)" in markdown
    # status shows every site it can observe and marks the one it cannot, with the reason.
    seen = _sovereign(["status", *common], down)
    assert seen.returncode == 0, seen.stdout + seen.stderr
    shown = json.loads(seen.stdout)
    [blind_now] = [u for u in shown["unobservable"] if u["site"] == "aws-eu-central-1"]
    assert "cannot reach the AWS endpoint" in blind_now["error"]
    # Scoped to the others, the plan is clean.
    scoped = _sovereign(["plan", *common, "--jurisdiction", "US"], down)
    assert scoped.returncode == 0, scoped.stdout + scoped.stderr

    applied = _sovereign(["apply", "--yes", *common], down)
    assert applied.returncode == 3, applied.stdout + applied.stderr
    targets_out = {t["target"]: t for t in json.loads(applied.stdout)["result"]["targets"]}
    assert targets_out["aws-eu-central-1"]["error"]
    assert "cannot reach the AWS endpoint" in targets_out["aws-eu-central-1"]["error"]
    assert targets_out["aws-us-east-1"]["error"] is None
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    us_keys = {
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name("aws-us-east-1", tag))["Contents"]
    }
    assert {f"fable-5/{k}" for k in WEIGHTS} <= us_keys

    # The controller runs the same sequence: still down, the pass is partial (exit 3) ...
    once = _sovereign(["controller", "--once", *common], down)
    assert once.returncode == 3, once.stdout + once.stderr
    assert json.loads(once.stdout)["failed_sites"] == ["aws-eu-central-1"]
    # ... and once the region is back, one pass converges it.
    healed = _sovereign(["controller", "--once", *common], env)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    sm = boto3.client("sagemaker", endpoint_url=moto_url, region_name="eu-central-1")
    assert sm.describe_endpoint(EndpointName=sagemaker_base_name("aws-eu-central-1", "fable-5"))
    again = _sovereign(["plan", "--detailed-exitcode", *common], env)
    assert again.returncode == 0, again.stdout + again.stderr
