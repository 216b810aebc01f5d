"""``parse_at``: the one reading of a user-given instant, for every command and infra."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.fleet.instants import AT_HINT, parse_at, parse_at_or_now

_ZONES = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)
# Whole seconds or microseconds; stay a day inside the representable range, so every zone's
# instant has a UTC form.
_MOMENTS = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31))


@given(_MOMENTS, _ZONES)
def test_an_instant_with_a_zone_is_the_same_instant_in_utc(
    moment: datetime, zone: timezone
) -> None:
    aware = moment.replace(tzinfo=zone)
    parsed = parse_at(aware.isoformat())
    assert parsed == aware
    assert parsed.utcoffset() == timedelta(0) and parsed.tzinfo is UTC


@given(_MOMENTS)
def test_no_zone_means_utc_and_z_means_utc(moment: datetime) -> None:
    assert parse_at(moment.isoformat()) == moment.replace(tzinfo=UTC)
    assert parse_at(moment.isoformat() + "Z") == moment.replace(tzinfo=UTC)
    assert parse_at(f"  {moment.isoformat()}Z\n") == moment.replace(tzinfo=UTC)


@given(st.dates())
def test_a_bare_date_is_its_midnight_utc(day: datetime) -> None:
    parsed = parse_at(day.isoformat())
    assert (parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute) == (
        day.year,
        day.month,
        day.day,
        0,
        0,
    )
    assert parsed.tzinfo is UTC


@given(st.text(max_size=40))
def test_any_text_is_an_instant_or_a_usage_error_never_a_crash(text: str) -> None:
    try:
        parsed = parse_at(text, what="time")
    except UsageError as exc:
        assert exc.message == f"invalid time {text!r}"
        assert exc.hint == AT_HINT
    else:
        assert parsed.tzinfo is UTC


def test_edge_offsets_that_leave_the_calendar_are_refused() -> None:
    with pytest.raises(UsageError, match="invalid time"):
        parse_at("0001-01-01T00:00:00+05:00")
    with pytest.raises(UsageError, match="invalid sovereign:at"):
        parse_at("tomorrow", what="sovereign:at")


def test_no_value_means_now() -> None:
    fixed = datetime(2026, 6, 13, tzinfo=UTC)
    assert parse_at_or_now(None, fixed) == fixed
    before = datetime.now(UTC)
    assert before <= parse_at_or_now(None) <= datetime.now(UTC)
    assert parse_at_or_now("2026-06-13", fixed) == fixed


def test_not_given_stays_not_given() -> None:
    assert parse_at(None) is None
