"""The one structured log: JSON lines for the controller, the gateway and ``sovereign authz``.

Every line is one JSON object: ``ts`` first (UTC, ISO 8601 with milliseconds and a ``Z``, as
``fleet.instants.format_utc`` writes it: ``2026-06-13T09:30:00.123Z``), then ``level`` and
``event`` for operational events, then the event's own fields. One shape, one timestamp format,
whoever writes it, so one collector query reads them all (docs/gateway.md, "Logs and metrics";
docs/runbooks.md, "The controller").

The gateway writes a line per request (its access log) on the hot path: the encoder is built
once, and a line is one ``write`` under a lock, so threads never interleave their lines.
Decision logs (``gateway/decisionlog.py``) are records of their own, with their own format and
file: evidence, not logs.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from orchestrator.fleet.instants import format_utc

__all__ = ["JsonLines", "stderr_sink", "stream_sink"]

# One encoder for every line (json.dumps with options builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode


def stderr_sink(line: str) -> None:
    """Write a line to whatever ``sys.stderr`` is at the time (tests swap it)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def stream_sink(stream: TextIO) -> Callable[[str], None]:
    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return write


class JsonLines:
    """One JSON object per line to ``sink`` (stderr by default; None: discard).

    ``log(event, level=..., **fields)`` writes an operational event; ``write(**fields)`` a
    record with fields of its own (the gateway's access log line)."""

    def __init__(
        self,
        sink: Callable[[str], None] | None = stderr_sink,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        if self._sink is None:
            return
        now = self._clock() if self._clock is not None else datetime.now(UTC)
        line = _ENCODE({"ts": format_utc(now, "milliseconds"), **fields})
        with self._lock:
            self._sink(line)

    def log(self, event: str, level: str = "info", **fields: Any) -> None:
        """An operational event: ``{"ts", "level", "event", ...fields}``."""
        self.write(level=level, event=event, **fields)

    __call__ = log

    def event(self, event: str, **fields: Any) -> None:
        """An operational event at level info (the gateway's reloads, start-up, probes)."""
        self.log(event, **fields)
