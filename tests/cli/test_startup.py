"""CLI start-up stays cheap: commands that do not serve traffic never import the gateway stack,
the demo or a cloud SDK (SkyPilot-style lazy loading, see STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys

from orchestrator.cli import gateway as gateway_cli
from orchestrator.cli import token as token_cli
from orchestrator.gateway import tokens

HEAVY = [
    "orchestrator.gateway.app",
    "orchestrator.demo.story",
    "jwt",
    "uvicorn",
    "boto3",
    "google.cloud.storage",
    "pulumi",
]


def test_importing_the_cli_loads_no_gateway_demo_or_cloud_sdk() -> None:
    code = (
        "import json, sys, orchestrator.cli.app; "
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = {m for m, present in json.loads(out).items() if present}
    assert loaded == set()


def test_cli_default_audience_is_the_gateways() -> None:
    assert gateway_cli.DEFAULT_AUDIENCE == tokens.DEFAULT_AUDIENCE == "sovereign"
    assert token_cli.DEFAULT_AUDIENCE == tokens.DEFAULT_AUDIENCE
