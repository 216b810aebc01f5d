"""The served table: loaded, verified and compiled before the first request, swapped on change.

``TableKeeper`` owns the one reference every request reads (``serving``). A reload builds the
next ``Serving`` off the event loop and installs it with a single assignment, so a request that
already read the old value keeps it to the end and none sees a mix. A reload that fails keeps
the last verified table (fail closed: never an unverified table) and reports why.

When to reload: the source's change signal (``changes``), asked every ``signal_interval_s``,
says when an apply probably happened; a push (``POST /admin/reload``, for states without a
signal) asks for one at once; the state serial is still read every ``reload_interval_s``
whatever the signal says, so a missed signal costs at most that interval. Reloads never
overlap, and a flood of pushes costs at most one reload after the one in progress.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from orchestrator.errors import FleetError, SignatureError
from orchestrator.fleet.model import Fleet
from orchestrator.gateway.changes import ChangeSignal
from orchestrator.gateway.metrics import AccessLog, GatewayMetrics
from orchestrator.gateway.routing import ServingTable
from orchestrator.gateway.sources import FleetSource, api_keys_of, change_signal
from orchestrator.state.apikeys import ApiKeys

__all__ = ["Serving", "TableKeeper"]

# Do not re-verify the same broken input on every tick; retry it this often.
_RETRY_INVALID_S = 5.0


@dataclass(frozen=True)
class Serving:
    """What one request is served from: swapped as a whole, never mutated."""

    table: ServingTable
    upstreams: Mapping[str, str]  # site id -> base URL without trailing slash
    loaded_at: datetime
    source: str


class TableKeeper:
    """Loads, verifies, compiles and swaps the served table."""

    def __init__(
        self,
        source: FleetSource,
        upstreams_for: Callable[[Fleet], dict[str, str]],
        metrics: GatewayMetrics,
        access_log: AccessLog,
        reload_interval_s: float,
        signal_interval_s: float,
        identity: Callable[[Fleet, ApiKeys], None] | None = None,
    ) -> None:
        self.source = source
        # Told the tenants and API keys of every table installed (authn.KeyBook.install), so
        # keys and tenants reload with the table (docs/identity.md).
        self._identity = identity
        self._upstreams_for = upstreams_for
        self._metrics = metrics
        self._log = access_log
        self.reload_interval_s = reload_interval_s
        self.signal_interval_s = signal_interval_s
        self.serving: Serving | None = None
        self.reload_error: str | None = None
        self._marker: Hashable = None
        self._failed: tuple[Hashable, float] | None = None
        self._lock = asyncio.Lock()
        self._reloads_started = 0

    def load_initial(self) -> Serving:
        """Load, verify and compile the first table (blocking). Raises ``SovereignError`` when
        there is nothing valid to serve: the gateway does not start without a table."""
        if self.serving is None:
            marker = self.source.marker()
            fleet, serial = self.source.load()
            table = ServingTable.compile(fleet, serial, drains=self.source.drains())
            keys = api_keys_of(self.source)
            self._install(table, marker, self._upstreams_for(fleet))
            self._install_identity(fleet, keys)
        assert self.serving is not None
        return self.serving

    def _install(self, table: ServingTable, marker: Hashable, upstreams: dict[str, str]) -> None:
        # The one reference swap: requests that already read the old value keep it.
        self.serving = Serving(
            table, MappingProxyType(upstreams), datetime.now(UTC), self.source.label
        )
        self._marker = marker
        self._failed = None
        self.reload_error = None
        if table.serial is not None:
            self._metrics.table_serial.set(table.serial)

    async def reload_once(self) -> bool:
        """Ask the source once; install a new table if it changed and verifies. Returns whether
        a new table was installed."""
        try:
            marker = await asyncio.to_thread(self.source.marker)
        except Exception as exc:  # noqa: BLE001 - the reload loop must outlive any source error
            self._reload_failed(None, f"cannot read {self.source.label}: {exc}")
            return False
        if marker == self._marker:
            return False
        if self._failed is not None and self._failed[0] == marker:
            if time.monotonic() - self._failed[1] < max(_RETRY_INVALID_S, self.reload_interval_s):
                return False
        current = self.serving
        keys: ApiKeys | None = None
        try:
            # The keys first: a revoked key is refused even while a new fleet fails to load.
            keys = await asyncio.to_thread(api_keys_of, self.source)
            fleet, serial = await asyncio.to_thread(self.source.load)
            drains = await asyncio.to_thread(self.source.drains)
            previous = current.table if current is not None else None
            table = await asyncio.to_thread(ServingTable.compile, fleet, serial, previous, drains)
            if current is not None and table.version == current.table.version:
                if table.serial is not None:
                    self._metrics.table_serial.set(table.serial)
                # Same verified content under a newer serial: keep the compiled table.
                self.serving = Serving(
                    ServingTable(current.table.table, serial, drains),
                    current.upstreams,
                    current.loaded_at,
                    current.source,
                )
                self._marker = marker
                self._failed = None
                self.reload_error = None
                self._install_identity(fleet, keys)
                return False
            upstreams = await asyncio.to_thread(self._upstreams_for, fleet)
        except Exception as exc:  # noqa: BLE001 - any failure must keep the old table
            # Invalid input stays invalid until it changes: remember it. Anything else (the
            # store unreachable, a busy database) is retried on the next tick.
            invalid = isinstance(exc, FleetError | SignatureError)
            if keys is not None and current is not None:
                self._install_identity(current.table.fleet, keys)  # with the tenants served
            self._reload_failed(
                marker if invalid else None, str(exc).splitlines()[0] if str(exc) else repr(exc)
            )
            return False
        old = current.table.version if current is not None else None
        self._install(table, marker, upstreams)
        self._install_identity(fleet, keys)
        self._metrics.reloads.labels("ok").inc()
        self._log.event("table.reloaded", table=table.version, previous=old, serial=serial)
        return True

    def _install_identity(self, fleet: Fleet, keys: ApiKeys) -> None:
        if self._identity is not None:
            self._identity(fleet, keys)

    def _reload_failed(self, marker: Hashable, message: str) -> None:
        if marker is not None:
            self._failed = (marker, time.monotonic())
        self.reload_error = message
        self._metrics.reloads.labels("failed").inc()
        self._log.event(
            "table.reload_failed",
            level="error",
            error=message,
            table=self.serving.table.version if self.serving else None,
        )

    async def _reload_serialized(self) -> bool:
        async with self._lock:
            self._reloads_started += 1
            return await self.reload_once()

    async def reload_requested(self) -> None:
        """A push: make sure a reload *starts* after this call and finishes before it returns
        (one already started after the push arrived counts: floods coalesce)."""
        arrived = self._reloads_started
        async with self._lock:
            if self._reloads_started > arrived:
                return
            self._reloads_started += 1
            await self.reload_once()

    async def watch(self) -> None:
        """Reload on the change signal, and every reload interval whatever it says."""
        signal: ChangeSignal | None = None
        if self.signal_interval_s > 0:
            try:
                signal = change_signal(self.source)
            except Exception:  # noqa: BLE001 - without a signal the interval poll still runs
                signal = None
        tick = self.signal_interval_s if signal is not None else self.reload_interval_s
        tick = min(tick, self.reload_interval_s)
        due = time.monotonic() + self.reload_interval_s
        try:
            while True:
                await asyncio.sleep(tick)
                fired = signal is not None and signal.changed()
                now = time.monotonic()
                if fired or now >= due:
                    due = now + self.reload_interval_s
                    await self._reload_serialized()
        finally:
            if signal is not None:
                signal.close()
