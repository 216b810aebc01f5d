"""Decision logs: one JSON line per model request, written off the request path.

The line is shaped like an OPA decision log (docs/evidence.md, "The decision log"):
``decision_id`` (the gateway id and a sequence number that grows by one per decision, so a
missing line is a gap anyone can see), ``timestamp`` (the instant the route was computed for),
``input`` (model, residency, nationalities, groups, who vouched for the caller), ``result``
(status, site, route), ``labels`` (fleet digest, table version and serial, gateway id) and, for
a refusal, its ``reasons``. Never the token, an API key, ``sub`` in clear or the prompt.

Off the request path: a request *reserves* a place (a counter under a lock) before it is
decided and *commits* its record when its answer is known; one writer thread encodes and
appends the lines, flushing after each batch. The places are bounded (``queue_size``). When
they are all taken (the disk is slower than the traffic) or the file cannot be written, the
``when_full`` choice applies: ``refuse`` (the default) answers 503 without deciding, so no
decision is ever served unlogged; ``drop`` serves it and consumes its sequence number without
a line, so the loss shows as a gap. The file is rotated by size: ``FILE`` is renamed
``FILE.<UTC instant>`` and a new ``FILE`` started; rotated files are never deleted here
(retention is the operator's duty, docs/evidence.md).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from orchestrator.fleet.instants import format_utc
from orchestrator.policy.principal import Principal

__all__ = [
    "DecisionLog",
    "DecisionLogSettings",
    "DecisionRecord",
    "default_gateway_id",
    "refusal_reasons",
    "worker_path",
]

WhenFull = Literal["refuse", "drop"]
WHEN_FULL_CHOICES: tuple[WhenFull, ...] = ("refuse", "drop")
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_QUEUE_SIZE = 65536
_MAX_LOGGED_MODEL = 100
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def default_gateway_id() -> str:
    """The host name (each process start adds its own random part: ``DecisionLog``)."""
    return "".join(c for c in socket.gethostname() if c.isalnum() or c in "-.")[:40] or "gateway"


def worker_path(path: Path, worker: int) -> Path:
    """Worker ``N`` of ``--workers`` writes ``FILE.wN``: one writer per file, so rotation and
    sequence numbers stay per process."""
    return path.with_name(f"{path.name}.w{worker}")


@dataclass(frozen=True)
class DecisionLogSettings:
    path: Path
    gateway_id: str = field(default_factory=default_gateway_id)
    max_bytes: int = DEFAULT_MAX_BYTES
    queue_size: int = DEFAULT_QUEUE_SIZE
    when_full: WhenFull = "refuse"
    # Appended to the id at each process start (``ID.BOOT``), drawn at random when None, so a
    # restarted process (or a restarted worker) counts from 1 again under an id of its own and
    # its numbers never collide with the last run's. "" appends nothing (tests).
    boot: str | None = None

    def for_worker(self, worker: int) -> DecisionLogSettings:
        return replace(
            self, path=worker_path(self.path, worker), gateway_id=f"{self.gateway_id}.w{worker}"
        )


@dataclass(slots=True)
class DecisionRecord:
    """What one request's line will say; filled in by the request as it goes."""

    at: datetime
    path: str
    fleet: str  # the fleet digest of the table the request was decided with
    table: str
    serial: int | None
    status: int | None = None
    model: str | None = None
    principal: Principal | None = None
    caller: dict[str, str] | None = None
    route: tuple[str, ...] = ()
    site: str | None = None
    reasons: list[dict[str, str]] | None = None
    error: str | None = None


def refusal_reasons(explanation: dict[str, Any] | None) -> list[dict[str, str]] | None:
    """The distinct (rule, ref) pairs of a refusal's explanation, over every site, sorted;
    None without an explanation (an unknown model)."""
    if explanation is None:
        return None
    seen: dict[tuple[str, str], None] = {}
    for decision in explanation.get("sites", {}).values():
        for reason in decision.get("reasons", ()):
            seen.setdefault((str(reason.get("rule")), str(reason.get("ref"))), None)
    return [{"rule": rule, "ref": ref} for rule, ref in sorted(seen)]


def iso_instant(at: datetime) -> str:
    """UTC, microseconds, ``Z``: the exact instant the route was computed for."""
    return format_utc(at, "microseconds")


def record_json(gateway_id: str, seq: int, r: DecisionRecord) -> dict[str, Any]:
    """The line of ``r`` as a JSON object (docs/evidence.md, "The decision log")."""
    p = r.principal
    line: dict[str, Any] = {
        "decision_id": f"{gateway_id}:{seq}",
        "timestamp": iso_instant(r.at),
        "input": {
            "path": r.path,
            "model": r.model[:_MAX_LOGGED_MODEL] if r.model is not None else None,
            "residency": p.residency if p is not None else None,
            "nationalities": sorted(p.nationalities) if p is not None else [],
            "groups": sorted(p.groups) if p is not None else [],
            "caller": r.caller,
        },
        "result": {"status": r.status, "site": r.site, "route": list(r.route)},
        "labels": {
            "gateway": gateway_id,
            "seq": seq,
            "fleet": r.fleet,
            "table": r.table,
            "serial": r.serial,
        },
    }
    if r.reasons is not None:
        line["reasons"] = r.reasons
    if r.error is not None:
        line["result"]["error"] = r.error
    return line


@dataclass(frozen=True, slots=True)
class Ticket:
    seq: int
    logged: bool  # False: dropped (``when_full: drop``); the sequence number stays unused


class DecisionLog:
    """The decision log of one gateway process (see the module docstring)."""

    def __init__(
        self,
        settings: DecisionLogSettings,
        on_event: Callable[..., None] | None = None,
    ) -> None:
        if settings.max_bytes < 1024:
            raise ValueError("the decision log's max_bytes must be at least 1024")
        self.settings = settings
        boot = settings.boot if settings.boot is not None else secrets.token_hex(3)
        self.gateway_id = f"{settings.gateway_id}.{boot}" if boot else settings.gateway_id
        self._on_event = on_event
        self._lock = threading.Lock()
        self._seq = 0
        self._places = settings.queue_size
        self.dropped = 0
        self.refused = 0
        self.written = 0
        self.failed: str | None = None
        self._queue: queue.SimpleQueue[tuple[int, DecisionRecord] | None] = queue.SimpleQueue()
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(settings.path, "ab")
        self._size = self._file.tell()
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    # -- the request side (event loop): reserve, then commit ------------------------------

    def reserve(self) -> Ticket | None:
        """A place for one decision, or None: the log cannot take it and ``when_full`` is
        ``refuse`` (the caller answers 503 without deciding)."""
        with self._lock:
            if self._places > 0 and self.failed is None:
                self._places -= 1
                self._seq += 1
                return Ticket(self._seq, True)
            if self.settings.when_full == "drop":
                self._seq += 1
                self.dropped += 1
                return Ticket(self._seq, False)
            self.refused += 1
            return None

    def commit(self, ticket: Ticket, record: DecisionRecord) -> None:
        """Hand the finished record to the writer (never blocks)."""
        if ticket.logged:
            self._queue.put((ticket.seq, record))

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:  # take whatever else is waiting: one flush per batch
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            for entry in batch:
                if entry is None:
                    stop = True
                    continue
                self._write(entry)
            self._flush()
            if stop:
                return

    def _write(self, entry: tuple[int, DecisionRecord]) -> None:
        seq, record = entry
        try:
            data = (_ENCODE(record_json(self.gateway_id, seq, record)) + "\n").encode()
            if self.failed is None:
                if self._size and self._size + len(data) > self.settings.max_bytes:
                    self._rotate()
                self._file.write(data)
                self._size += len(data)
                self.written += 1
        except Exception as exc:  # noqa: BLE001 - the log must fail closed, not die silently
            self._fail(exc)
        finally:
            with self._lock:
                self._places += 1

    def _flush(self) -> None:
        if self.failed is not None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def _rotate(self) -> None:
        self._file.close()
        path = self.settings.path
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        os.replace(path, path.with_name(f"{path.name}.{stamp}"))
        self._file = open(path, "ab")
        self._size = 0
        self._event("decision_log.rotated", file=str(path), rotated_to=f"{path.name}.{stamp}")

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.failed is None:
                self.failed = f"{type(exc).__name__}: {exc}"
        self._event(
            "decision_log.failed",
            level="error",
            error=self.failed,
            when_full=self.settings.when_full,
        )

    def _event(self, name: str, **fields: Any) -> None:
        if self._on_event is not None:
            try:
                self._on_event(name, **fields)
            except Exception:  # noqa: BLE001 - an operator log must not stop the writer
                pass

    def close(self, timeout_s: float = 10.0) -> None:
        """Write everything committed so far, then close the file."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        try:
            self._file.close()
        except OSError:
            pass
