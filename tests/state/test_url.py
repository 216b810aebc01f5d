"""--state values: every valid form, and a UsageError listing them for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.state.url import StateLocation, parse_state_url

FLEET = Path("fleet")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, StateLocation("sqlite", path=FLEET / ".sovereign" / "state.db")),
        ("state.db", StateLocation("sqlite", path=Path("state.db"))),
        ("/var/lib/s.db", StateLocation("sqlite", path=Path("/var/lib/s.db"))),
        ("sqlite:///rel/s.db", StateLocation("sqlite", path=Path("rel/s.db"))),
        ("sqlite:////abs/s.db", StateLocation("sqlite", path=Path("/abs/s.db"))),
        (
            "s3://my-bucket/sovereign/prod",
            StateLocation("s3", bucket="my-bucket", prefix="sovereign/prod"),
        ),
        ("s3://my-bucket", StateLocation("s3", bucket="my-bucket", prefix="")),
        ("gs://my_bucket/p/", StateLocation("gs", bucket="my_bucket", prefix="p")),
    ],
)
def test_valid_forms(url: str | None, expected: StateLocation) -> None:
    assert parse_state_url(url, FLEET) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        " state.db",
        "ftp://host/x",
        "file:///tmp/x",
        "sqlite://x",
        "sqlite:///",
        "s3://",
        "s3://UPPER/x",
        "gs://a/../b",
        "s3://bucket/a//b",
        "s3:/bucket/x",
        "gs:b",
        "https://example.com/s",
    ],
)
def test_anything_else_is_refused_with_the_valid_forms(url: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_state_url(url, FLEET)
    assert info.value.hint is not None
    for form in ("sqlite:///PATH", "s3://BUCKET/PREFIX", "gs://BUCKET/PREFIX"):
        assert form in info.value.hint


@settings(deadline=None)
@given(st.text(max_size=40))
def test_the_parser_either_accepts_or_raises_usage_error(url: str) -> None:
    try:
        where = parse_state_url(url, FLEET)
    except UsageError:
        return
    assert where.scheme in ("sqlite", "s3", "gs")
    if where.scheme == "sqlite":
        assert where.path is not None and str(where.path)
    else:
        assert where.bucket and not where.prefix.startswith("/")
        assert not where.prefix.endswith("/")
