"""The one parser of a user-given instant (``--at``, ``explain --batch``'s ``"at"``, infra's
``sovereign:at``), so every command reads the same text as the same instant; and the one
formatter of an instant as text (``format_utc``: UTC, ISO 8601, ``Z``), so every output, record
and log line writes the same instant the same way.

ISO 8601 as Python reads it (``2026-06-13``, ``2026-06-13T09:30:00Z``, ``...+02:00``); a time
without a zone, or a bare date, is UTC, and every answer is converted to UTC: directive instants
are UTC, and a plan made "at" an instant records it as such. Directive files are stricter (a
timestamp there must carry its zone, ``fleet.schema``): a signed order must be unambiguous,
while a question asked on the command line may take the obvious default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, overload

from orchestrator.errors import UsageError

AT_HINT = "expected ISO 8601, e.g. 2026-06-13 or 2026-06-13T09:30:00Z (no zone means UTC)"


@overload
def parse_at(value: str, *, what: str = "time") -> datetime: ...
@overload
def parse_at(value: None, *, what: str = "time") -> None: ...
def parse_at(value: str | None, *, what: str = "time") -> datetime | None:
    """``value`` as an aware UTC instant (None stays None: "not given"); a clear
    ``UsageError`` naming ``what`` otherwise."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: an offset that moves the first or last representable day out of range
        raise UsageError(f"invalid {what} {value!r}", hint=AT_HINT) from None


def parse_at_or_now(
    value: str | None, now: datetime | None = None, *, what: str = "time"
) -> datetime:
    """``parse_at``, with no value meaning ``now`` (the current time unless given)."""
    if value is None:
        return now if now is not None else datetime.now(UTC)
    return parse_at(value, what=what)


def format_utc(
    t: datetime, timespec: Literal["auto", "seconds", "milliseconds", "microseconds"] = "auto"
) -> str:
    """``t`` in UTC as ISO 8601 with a ``Z`` (``2026-06-13T09:30:00Z``); a naive ``t`` is UTC.

    ``timespec`` as ``datetime.isoformat``'s: records whose text is compared or sorted (the
    audit log, leases) use ``"microseconds"`` so every one has the same width."""
    aware = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return aware.isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_now_text(
    timespec: Literal["auto", "seconds", "milliseconds", "microseconds"] = "auto",
) -> str:
    """The current instant, as ``format_utc`` writes it."""
    return format_utc(datetime.now(UTC), timespec)
