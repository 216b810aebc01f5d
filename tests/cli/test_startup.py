"""CLI start-up stays cheap: commands that do not serve traffic never import the gateway stack,
the demo or a cloud SDK (SkyPilot-style lazy loading, see STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.cli import gateway as gateway_cli
from orchestrator.cli import token as token_cli
from orchestrator.gateway import tokens

REPO = Path(__file__).resolve().parents[2]

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


def modules_loaded_by(*argv: str) -> set[str]:
    """The modules a whole ``sovereign ARGV`` run has imported when it exits."""
    code = (
        "import atexit, json, sys\n"
        "dump = lambda: sys.__stderr__.write('MODULES' + json.dumps(sorted(sys.modules)))\n"
        "atexit.register(dump)\n"
        "from orchestrator.cli.app import main\n"
        f"main({list(argv)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.split("MODULES", 1)[1]))


# What `version` and `--help` must not pay for (bench/startup.py measures the time).
NOT_AT_START_UP = [
    "orchestrator.fleet",
    "orchestrator.policy",
    "orchestrator.planning",
    "orchestrator.reconcile",
    "orchestrator.state",
    "orchestrator.providers",
    "orchestrator.gateway",
    "orchestrator.demo",
    "yaml",
    "cryptography",
    "pycountry",
    "jwt",
    "httpx",
    "boto3",
]


def test_version_imports_no_command_module_rich_or_pydantic() -> None:
    loaded = modules_loaded_by("version")
    heavy = [*NOT_AT_START_UP, "rich", "pydantic", "orchestrator.cli.validate"]
    assert sorted(m for m in loaded if m.split(".")[0] in heavy or m in heavy) == []
    assert "orchestrator.cli.app" in loaded  # the check really ran the CLI


def test_help_lists_every_command_without_importing_them() -> None:
    loaded = modules_loaded_by("--help")
    assert [m for m in [*NOT_AT_START_UP, "rich", "pydantic"] if m in loaded] == []
    commands = [
        m
        for m in loaded
        if m.startswith("orchestrator.cli.")
        and m not in ("orchestrator.cli.app", "orchestrator.cli.output", "orchestrator.cli.options")
    ]
    assert commands == []


def test_validate_reads_country_and_region_data_without_importing_it() -> None:
    """`validate` reads pycountry's and botocore's data files (not the packages), verifies
    signatures without cryptography's key serialization (only key making needs that), and
    prints its one-line summary of a valid fleet without rich."""
    loaded = modules_loaded_by("validate", "--fleet", str(REPO / "regions"))
    assert "orchestrator.fleet.loader" in loaded  # the fleet really was checked
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in loaded
    skipped = ["pycountry", "botocore", "cryptography.hazmat.primitives.serialization", "rich"]
    assert [m for m in skipped if m in loaded] == []
