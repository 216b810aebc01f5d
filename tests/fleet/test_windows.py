"""Change windows (orchestrator/fleet/windows.py): local time, DST, deny over allow, the next
opening; and their validation (file:line, the field, what would be valid)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import FleetError
from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.fleet.windows import (
    ChangeWindows,
    Window,
    WindowKind,
    format_duration,
    parse_duration,
    to_utc,
    window_state,
)

BERLIN = "Europe/Berlin"
FREEZE = Window(WindowKind.DENY, "0 18 * * 5", timedelta(hours=62))  # Fri 18:00 -> Mon 08:00
OFFICE = Window(WindowKind.ALLOW, "0 9 * * 1-4", timedelta(hours=8))  # Mon-Thu 09:00-17:00


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the DST case: a window across the change opens at the right UTC instant, both ways ----


@pytest.mark.parametrize(
    ("closes", "opens"),
    [
        # spring forward (Sun 2026-03-29 02:00 CET -> 03:00 CEST): Fri 18:00 CET is 17:00 UTC,
        # Mon 08:00 CEST is 06:00 UTC: the freeze lasts 61 hours
        ("2026-03-27T17:00:00", "2026-03-30T06:00:00"),
        # fall back (Sun 2026-10-25 03:00 CEST -> 02:00 CET): Fri 18:00 CEST is 16:00 UTC,
        # Mon 08:00 CET is 07:00 UTC: the freeze lasts 63 hours
        ("2026-10-23T16:00:00", "2026-10-26T07:00:00"),
    ],
)
def test_a_freeze_across_the_dst_change_in_berlin_ends_at_monday_0800_local(
    closes: str, opens: str
) -> None:
    changes = ChangeWindows(BERLIN, (FREEZE,))
    before = window_state(changes, utc(closes) - timedelta(seconds=1))
    assert before.open and before.closes_at == utc(closes)
    during = window_state(changes, utc(closes))
    assert not during.open and during.window == FREEZE
    assert during.opened_at == utc(closes)
    assert during.next_opening == utc(opens)
    assert not window_state(changes, utc(opens) - timedelta(seconds=1)).open
    after = window_state(changes, utc(opens))
    assert after.open and after.next_opening == utc(opens)
    local = utc(opens).astimezone(ZoneInfo(BERLIN))
    assert (local.weekday(), local.hour, local.minute) == (0, 8, 0)


@pytest.mark.parametrize(
    ("at", "opens"),
    [
        ("2026-03-26T16:00:00", "2026-03-30T07:00:00"),  # Mon 09:00 CEST (UTC+2)
        ("2026-10-22T15:00:00", "2026-10-26T08:00:00"),  # Mon 09:00 CET (UTC+1)
    ],
)
def test_an_allow_window_after_the_dst_change_opens_at_0900_local(at: str, opens: str) -> None:
    changes = ChangeWindows(BERLIN, (OFFICE, FREEZE))
    state = window_state(changes, utc(at))
    assert not state.open
    assert state.next_opening == utc(opens)
    assert window_state(changes, utc(opens)).window == OFFICE


def test_deny_wins_over_allow() -> None:
    always = Window(WindowKind.ALLOW, "0 0 * * *", timedelta(hours=24))
    changes = ChangeWindows(BERLIN, (always, FREEZE))
    saturday = utc("2026-06-13T12:00:00")
    state = window_state(changes, saturday)
    assert not state.open and state.window == FREEZE
    assert state.next_opening == utc("2026-06-15T06:00:00")  # Mon 08:00 CEST


def test_no_windows_is_always_open() -> None:
    at = utc("2026-06-13T12:00:00")
    assert window_state(None, at) == (True, None, at, None, None)
    assert window_state(ChangeWindows("UTC", ()), at).open


def test_a_skipped_local_time_is_the_instant_the_clocks_jump() -> None:
    # 02:30 on 2026-03-29 does not exist in Berlin: the clocks jump at 01:00 UTC
    assert to_utc(datetime(2026, 3, 29, 2, 30), ZoneInfo(BERLIN)) == utc("2026-03-29T01:00:00")
    # 02:30 on 2026-10-25 exists twice: its first occurrence (CEST) counts
    assert to_utc(datetime(2026, 10, 25, 2, 30), ZoneInfo(BERLIN)) == utc("2026-10-25T00:30:00")


@pytest.mark.parametrize("text", ["62h", "90m", "1d12h", "8h30m", "2d"])
def test_durations_round_trip(text: str) -> None:
    value = parse_duration(text)
    assert value is not None
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["", "0h", "62", "h", "1.5h", "-1h", "62 h", "1w"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


# --- properties -----------------------------------------------------------------------------

_ZONES = st.sampled_from(
    [BERLIN, "America/New_York", "Asia/Tokyo", "UTC", "Australia/Lord_Howe", "America/Santiago"]
)
_CRONS = st.builds(
    lambda minute, hour, days: f"{minute} {hour} * * {days}",
    st.sampled_from([0, 15, 30]),
    st.integers(0, 23),
    st.sampled_from(["*", "1-5", "5", "0,6", "1-4"]),
)
_WINDOWS = st.builds(
    Window,
    st.sampled_from(list(WindowKind)),
    _CRONS,
    st.builds(lambda m: timedelta(minutes=m), st.integers(30, 80 * 60)),
)
_INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


def _open_by_enumeration(changes: ChangeWindows, at: datetime) -> bool:
    """The oracle: every occurrence that started in the few days before ``at``, enumerated."""
    zone = changes.zone
    local = at.astimezone(zone).replace(tzinfo=None)

    def occurs(w: Window) -> bool:
        for start in CronSim(w.cron, local - w.duration - timedelta(days=1)):
            begin = to_utc(start, zone)
            if begin > at:
                return False
            if begin <= at < to_utc(start + w.duration, zone):
                return True
        return False

    denies = [w for w in changes.windows if w.kind is WindowKind.DENY]
    allows = [w for w in changes.windows if w.kind is WindowKind.ALLOW]
    if any(occurs(w) for w in denies):
        return False
    return not allows or any(occurs(w) for w in allows)


@settings(max_examples=60, deadline=None)
@given(_ZONES, st.lists(_WINDOWS, min_size=1, max_size=3), _INSTANTS)
def test_window_state_agrees_with_enumerating_occurrences(
    zone: str, windows: list[Window], at: datetime
) -> None:
    changes = ChangeWindows(zone, tuple(windows))
    assert window_state(changes, at).open == _open_by_enumeration(changes, at)


@settings(max_examples=60, deadline=None)
@given(_ZONES, st.lists(_WINDOWS, min_size=1, max_size=3), _INSTANTS)
def test_the_next_opening_is_open_and_the_closing_is_closed(
    zone: str, windows: list[Window], at: datetime
) -> None:
    changes = ChangeWindows(zone, tuple(windows))
    state = window_state(changes, at)
    if state.open:
        assert state.next_opening == at
        if state.closes_at is not None:
            assert state.closes_at > at
            assert not window_state(changes, state.closes_at).open
            assert window_state(changes, state.closes_at - timedelta(seconds=1)).open
    elif state.next_opening is not None:
        assert state.next_opening > at
        assert window_state(changes, state.next_opening).open
        assert not window_state(changes, state.next_opening - timedelta(seconds=1)).open


# --- validation: file:line, the field, what would be valid ----------------------------------

_REPO_FLEET = Path(__file__).resolve().parents[2] / "regions"


def _load_with(tmp_path: Path, profile_tail: str, settings_tail: str = "") -> tuple[Fleet, str]:
    fleet_dir = tmp_path / "regions"
    shutil.copytree(_REPO_FLEET, fleet_dir, ignore=shutil.ignore_patterns(".sovereign"))
    with (fleet_dir / "eu.yaml").open("a") as f:
        f.write(profile_tail)
    with (fleet_dir / "fleet.yaml").open("a") as f:
        f.write(settings_tail)
    return load_fleet(fleet_dir), str(fleet_dir)


def test_valid_windows_and_waves_load(tmp_path: Path) -> None:
    fleet, _ = _load_with(
        tmp_path,
        "changes:\n  timezone: Europe/Berlin\n  windows:\n"
        "    - deny: '0 18 * * 5'\n      duration: 62h\n",
        "rollout:\n  waves: [[JP], [UK, IN]]\n  healthy_for: 10m\n",
    )
    eu = fleet.jurisdictions["EU"].changes
    assert eu == ChangeWindows(BERLIN, (FREEZE,))
    rollout = fleet.settings.rollout
    assert rollout is not None and rollout.healthy_for == timedelta(minutes=10)
    assert [rollout.wave_of(j) for j in ("JP", "UK", "IN", "EU", "US")] == [0, 1, 1, 2, 2]


def test_bad_cron_zone_duration_and_waves_are_file_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FleetError) as caught:
        _load_with(
            tmp_path,
            "changes:\n  timezone: Europe/Berlinn\n  windows:\n"
            "    - deny: '0 18 * * 8'\n      duration: 62x\n"
            "    - allow: '0 9 * * 1'\n      deny: '0 9 * * 1'\n      duration: 8h\n"
            "    - allow: '0 9 * *'\n      duration: 8h\n",
            "rollout:\n  waves: [[JP], [UK, XX, JP]]\n  healthy_for: 10m\n",
        )
    found = {(Path(p.file).name, p.field): (p.line, p.message) for p in caught.value.problems}
    assert "IANA time zone" in found[("eu.yaml", "changes.timezone")][1]
    assert "Europe/Berlin" in found[("eu.yaml", "changes.timezone")][1]
    assert "day-of-week" in found[("eu.yaml", "changes.windows[0].deny")][1]
    assert "62h" in found[("eu.yaml", "changes.windows[0].duration")][1]
    assert "4 fields" in found[("eu.yaml", "changes.windows[2].allow")][1]
    assert "exactly one of" in found[("eu.yaml", "changes.windows[1]")][1]
    assert "not a jurisdiction" in found[("fleet.yaml", "rollout.waves[1][1]")][1]
    assert "already in wave 1" in found[("fleet.yaml", "rollout.waves[1][2]")][1]
    assert all(line is not None for line, _ in found.values())
    with pytest.raises(FleetError) as caught:
        _load_with(tmp_path / "2", "", "rollout:\n  waves: [[JP]]\n  healthy_for: soon\n")
    (problem,) = caught.value.problems
    assert (problem.field, problem.line) == ("rollout.healthy_for", 9)
    assert "10m" in problem.message or "90m" in problem.message
