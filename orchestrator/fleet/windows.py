"""Change windows: when a jurisdiction's sites may be changed for configuration (docs/gitops.md,
"Change windows").

A profile's ``changes`` names an IANA time zone and windows, each a cron expression (five
fields, local time) that opens it and a duration. While a ``deny`` window is open the
jurisdiction is frozen (deny wins over allow); when the profile has ``allow`` windows, changes
wait for one of them to be open. Only configuration changes wait (``planning.deferral``): the
law never does.

Local time, DST included: a window's start is a cron match on the jurisdiction's wall clock
and its end is that wall-clock start plus the duration, *also on the wall clock* (``0 18 * * 5``
for ``62h`` is Friday 18:00 to Monday 08:00 local time, whether or not the clocks changed on the
Sunday in between; the weekend is then 61 or 63 hours long). A wall-clock time that does not
exist (the hour skipped in spring) is the instant the clocks jump; one that exists twice (the
hour repeated in autumn) is its first occurrence. Every answer is a UTC instant.

Cron: ``cronsim`` (healthchecks.io's parser, Debian cron semantics, maintained, pure Python and
no dependencies; croniter went through a deprecation scare in 2024-25 and carries more surface
than five fields need). It is iterated over naive wall-clock times, so the DST rules above are
ours, written once here, and not a library's quirk.

Everything here is pure: values in, values out; ``window_state`` is what plan, status and the
controller ask.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = [
    "ChangeWindows",
    "Window",
    "WindowKind",
    "WindowState",
    "cron_problem",
    "duration_problem",
    "format_duration",
    "parse_duration",
    "window_state",
    "zone_problem",
]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
DURATION_HINT = "a duration like 90m, 8h, 62h or 1d12h (days d, hours h, minutes m)"
CRON_HINT = (
    "five cron fields, minute hour day-of-month month day-of-week, in local time, "
    "e.g. '0 18 * * 5' (Fridays at 18:00)"
)
# How far ahead a next opening is looked for: a window that never opens within two years is
# reported as never opening (None), not searched for forever.
HORIZON = timedelta(days=731)
_MAX_STEPS = 4000


class WindowKind(StrEnum):
    DENY = "deny"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class Window:
    kind: WindowKind
    cron: str  # five fields, local time
    duration: timedelta

    def describe(self) -> str:
        return f"{self.kind.value} '{self.cron}' for {format_duration(self.duration)}"


@dataclass(frozen=True, slots=True)
class ChangeWindows:
    """A profile's ``changes``: its time zone and its windows, in file order."""

    timezone: str
    windows: tuple[Window, ...]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class WindowState(NamedTuple):
    """Whether configuration changes may go at an instant, and until or from when.

    ``window`` is the window that decides: the deny window that is open (closed), the allow
    window that is open (open), or None (open: no window applies; closed: no allow window is
    open). ``next_opening`` is the first instant at or after the question when changes may go
    (the instant itself when open; None when none within two years). ``closes_at`` is when an
    open state ends (None: not within two years, or no window at all)."""

    open: bool
    window: Window | None
    next_opening: datetime | None
    closes_at: datetime | None = None
    opened_at: datetime | None = None  # when the current deny/allow window started, if one


# --- parsing (the schema's validators and the loader use these) ------------------------------


def parse_duration(text: str) -> timedelta | None:
    """``62h``, ``90m``, ``1d12h`` -> timedelta; None for anything else (or zero)."""
    found = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if found is None or not any(found.groups()):
        return None
    days, hours, minutes = (int(g) if g else 0 for g in found.groups())
    value = timedelta(days=days, hours=hours, minutes=minutes)
    return value if value > timedelta(0) else None


def format_duration(value: timedelta) -> str:
    """``62h``, ``90m`` -> ``1h30m``: hours and minutes, as windows are usually written."""
    hours, minutes = divmod(int(value.total_seconds() // 60), 60)
    out = f"{hours}h" if hours else ""
    return out + (f"{minutes}m" if minutes or not out else "")


def duration_problem(text: object) -> str | None:
    if not isinstance(text, str) or parse_duration(text) is None:
        return f"{text!r} is not a duration; expected {DURATION_HINT}"
    return None


def cron_problem(text: object) -> str | None:
    if not isinstance(text, str):
        return f"expected a cron expression as a string: {CRON_HINT}"
    if len(text.split()) != 5:
        return f"'{text}' has {len(text.split())} fields; expected {CRON_HINT}"
    try:
        next(iter(CronSim(text, datetime(2026, 1, 1))))
    except (CronSimError, StopIteration) as exc:
        return f"'{text}' is not a valid cron expression ({exc or 'never matches'}); {CRON_HINT}"
    return None


def zone_problem(text: object) -> str | None:
    if isinstance(text, str) and text and not text.startswith(("/", ".")):
        try:
            ZoneInfo(text)
            return None
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return (
        f"{text!r} is not an IANA time zone; expected a name from the tz database, "
        "e.g. Europe/Berlin, Asia/Tokyo, America/New_York or UTC"
    )


# --- wall clock <-> UTC ----------------------------------------------------------------------


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``zone`` as a UTC instant: a skipped time is the instant the
    clocks jumped, a repeated one its first occurrence. Monotone: a later wall time is never an
    earlier instant."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return first
    # In the gap: fold=1 reads it with the offset after the jump, i.e. an instant before the
    # jump; fold=0 with the offset before it, after the jump. The jump lies between.
    low = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0)


def _wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def _starts_back(window: Window, before_local: datetime) -> Iterator[datetime]:
    """Wall-clock starts at or before ``before_local``, latest first."""
    return iter(CronSim(window.cron, before_local, reverse=True))


def _starts_forward(window: Window, after_local: datetime) -> Iterator[datetime]:
    """Wall-clock starts strictly after ``after_local``, earliest first."""
    return iter(CronSim(window.cron, after_local))


def _open_span(window: Window, zone: ZoneInfo, at: datetime) -> tuple[datetime, datetime] | None:
    """(start, end) in UTC of the occurrence of ``window`` open at ``at``, or None.

    With one duration, a later start has a later end (wall clock, and ``to_utc`` is monotone),
    so the latest start at or before ``at`` decides."""
    # Look back from a little past ``at`` on the wall clock: around a DST change the wall
    # clock and the instant disagree by up to the change itself.
    probe = _wall(at, zone) + timedelta(hours=3)
    for start in _starts_back(window, probe):
        start_utc = to_utc(start, zone)
        if start_utc > at:
            continue
        end_utc = to_utc(start + window.duration, zone)
        return (start_utc, end_utc) if at < end_utc else None
    return None


def _next_start(window: Window, zone: ZoneInfo, at: datetime) -> datetime | None:
    """The first start of ``window`` strictly after ``at`` (UTC), or None within the horizon."""
    probe = _wall(at, zone) - timedelta(hours=3)
    limit = at + HORIZON
    for start in _starts_forward(window, probe):
        start_utc = to_utc(start, zone)
        if start_utc > limit:
            return None
        if start_utc > at:
            return start_utc
    return None


def _state_now(
    changes: ChangeWindows, at: datetime
) -> tuple[bool, Window | None, datetime | None, list[tuple[Window, datetime, datetime]]]:
    """(open, deciding window, its start, every open occurrence as (window, start, end))."""
    zone = changes.zone
    spans = [(w, *span) for w in changes.windows if (span := _open_span(w, zone, at)) is not None]
    denies = [s for s in spans if s[0].kind is WindowKind.DENY]
    if denies:
        first = min(denies, key=lambda s: s[1])
        return False, first[0], first[1], spans
    has_allow = any(w.kind is WindowKind.ALLOW for w in changes.windows)
    allows = [s for s in spans if s[0].kind is WindowKind.ALLOW]
    if allows:
        first = min(allows, key=lambda s: s[1])
        return True, first[0], first[1], spans
    return not has_allow, None, None, spans


def window_state(changes: ChangeWindows | None, at: datetime) -> WindowState:
    """Whether configuration changes may go at ``at`` (an aware instant), which window says
    so, and the next opening (``at`` itself when open). No ``changes``: always open."""
    at = at.astimezone(UTC)
    if changes is None or not changes.windows:
        return WindowState(True, None, at, None)
    is_open, deciding, started, _ = _state_now(changes, at)
    if is_open:
        return WindowState(True, deciding, at, _closing(changes, at), started)
    return WindowState(False, deciding, _opening(changes, at), None, started)


def _opening(changes: ChangeWindows, at: datetime) -> datetime | None:
    """The first instant after ``at`` (closed) at which changes may go."""
    zone, t, limit = changes.zone, at, at + HORIZON
    for _ in range(_MAX_STEPS):
        is_open, _, _, spans = _state_now(changes, t)
        if is_open:
            return t
        denies = [end for w, _, end in spans if w.kind is WindowKind.DENY]
        if denies:
            # Closed at least until every deny window open now has ended.
            t = max(denies)
        else:
            # No deny open, no allow open: the next allow start.
            starts = [
                s
                for w in changes.windows
                if w.kind is WindowKind.ALLOW and (s := _next_start(w, zone, t)) is not None
            ]
            if not starts:
                return None
            t = min(starts)
        if t > limit:
            return None
    return None


def _closing(changes: ChangeWindows, at: datetime) -> datetime | None:
    """The first instant after ``at`` (open) at which changes stop being allowed."""
    zone, t, limit = changes.zone, at, at + HORIZON
    next_deny = [
        s
        for w in changes.windows
        if w.kind is WindowKind.DENY and (s := _next_start(w, zone, at)) is not None
    ]
    deny_at = min(next_deny) if next_deny else None
    if not any(w.kind is WindowKind.ALLOW for w in changes.windows):
        return deny_at
    for _ in range(_MAX_STEPS):
        _, _, _, spans = _state_now(changes, t)
        ends = [end for w, _, end in spans if w.kind is WindowKind.ALLOW]
        if not ends:
            return t if deny_at is None else min(t, deny_at)
        t = max(ends)
        if deny_at is not None and t >= deny_at:
            return deny_at
        if t > limit:
            return deny_at
    return deny_at
