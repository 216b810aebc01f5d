"""The crash campaign's budget, backends and counts.

``SOVEREIGN_CHAOS_RUNS`` kills per state backend under ``make chaos`` (200); a handful in the
default run. Counts are printed at the end of the run (docs/security.md quotes them).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

SMOKE_RUNS = 2
COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)


def runs() -> int:
    return int(os.environ.get("SOVEREIGN_CHAOS_RUNS", SMOKE_RUNS))


def count(campaign: str, outcome: str, n: int = 1) -> None:
    COUNTS[campaign][outcome] += n


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    terminalreporter.section("chaos campaign counts")
    for campaign in sorted(COUNTS):
        outcomes = COUNTS[campaign]
        detail = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        terminalreporter.write_line(f"{campaign}: {detail}")


@pytest.fixture(params=["sqlite", "s3"])
def state_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``-`` (the embedded SQLite default), or an ``s3://`` state on a moto server over HTTP."""
    if request.param == "sqlite":
        yield "-"
        return
    import boto3

    from tests.cloud_servers import cloud_credentials, moto_server

    with cloud_credentials(), moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        bucket = f"chaos-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/prod"
