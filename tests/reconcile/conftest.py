"""Small all-local fleets with real artifact files, for apply and provider tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.demo.workspace import Workspace, prepare_workspace
from tests.fleet.builder import FleetFactory

WITHDRAW_YAML = """\
id: us-d1
jurisdiction: US
issuer: us-gov
reference: "test withdraw"
action: withdraw
models: [m-us]
effective: 2026-01-01T00:00:00Z
expires: null
supersedes: null
"""

LocalFleet = Callable[..., Path]


def write_artifacts(root: Path) -> None:
    """m-us is a directory tree beside the fleet, m-open a single file named by a file:// URL."""
    tree = root / "weights" / "m-us"
    (tree / "shards").mkdir(parents=True)
    (tree / "config.json").write_text('{"layers": 2}\n')
    (tree / "shards" / "0.safetensors").write_bytes(b"\x00\x01" * 512)
    (root / "weights" / "m-open.safetensors").write_bytes(b"open" * 100)


@pytest.fixture
def local_fleet(signed_fleet_factory: FleetFactory) -> LocalFleet:
    """``local_fleet(files=..., mutate=...)``: the builder's fleet, every site local, artifacts
    read from real files (m-us: directory by a relative file://./ URL; m-open: file:// URL)."""

    def make(
        files: dict[str, str | bytes | None] | None = None,
        mutate: dict[str, list[tuple[str, str]]] | None = None,
    ) -> Path:
        edits: dict[str, list[tuple[str, str]]] = {
            "eu.yaml": [
                (
                    "provider: aws\n    region: eu-central-1",
                    "provider: local\n    region: local-eu2",
                )
            ],
            "models.yaml": [
                ("artifact: s3://bucket/m-us/", "artifact: file://./weights/m-us"),
                (
                    "artifact: s3://bucket/m-open/",
                    "artifact: file://{root}/weights/m-open.safetensors",
                ),
            ],
        }
        for rel, more in (mutate or {}).items():
            edits.setdefault(rel, []).extend(more)
        root = signed_fleet_factory(files, mutate=edits)
        models = root / "models.yaml"
        models.write_text(models.read_text().replace("{root}", str(root)))
        write_artifacts(root)
        return root

    return make


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A scratch copy of the example fleet with the June 12 directive added."""
    w = prepare_workspace(Path(__file__).resolve().parents[2] / "regions", tmp_path / "ws")
    w.add_directive("us-doc-2026-06-12.yaml")
    return w
