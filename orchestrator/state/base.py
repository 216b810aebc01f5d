"""The state store interface: what was applied, under a serial, behind a lock.

The default backend is SQLite (``.sovereign/state.db`` beside the fleet); object-storage
backends keep the same interface. The gateway reads only ``serial`` and ``applied_fleet``:
it serves exactly the fleet that was last applied, re-verifying its signatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AppliedFleet:
    serial: int
    files: Mapping[str, bytes]  # fleet-relative path -> exact bytes, as applied


class StateReader(Protocol):
    """The read side every consumer may rely on (the gateway polls ``serial`` cheaply)."""

    url: str

    def serial(self) -> int: ...

    def applied_fleet(self) -> AppliedFleet | None: ...
