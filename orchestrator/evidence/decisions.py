"""Reading decision logs: one line at a time, every line accounted for.

A line is parsed into a :class:`Decision` or reported as unparsed (file, line number, what is
wrong); nothing is skipped. Each gateway numbers its decisions 1, 2, 3, ... (the line format is
in docs/evidence.md, "The decision log"); :class:`Sequences` keeps, per gateway id, one bit per
sequence number seen, so a deleted line is a gap and a copied line a duplicate, in memory that
grows by one bit per decision (ten million decisions: about 1.2 MB, in 8 KiB chunks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.policy.principal import Principal

__all__ = ["Decision", "Gap", "Sequences", "Unparsed", "parse_line", "read_lines"]

_MAX_SEQ = 1 << 40  # far beyond any real gateway's count


@dataclass(frozen=True, slots=True)
class Decision:
    file: str
    line: int
    decision_id: str
    gateway: str
    seq: int
    at: datetime
    model: str | None
    principal: Principal | None
    status: int | None
    site: str | None
    route: tuple[str, ...]
    fleet: str  # the fleet digest it was decided with
    reasons: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Unparsed:
    file: str
    line: int
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "error": self.error}


@dataclass(frozen=True, slots=True)
class Gap:
    gateway: str
    first_missing: int
    last_missing: int

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "from_seq": self.first_missing,
            "to_seq": self.last_missing,
            "missing": self.last_missing - self.first_missing + 1,
        }


class LineError(ValueError):
    """What is wrong with one line, as the report says it."""


def _instant(value: Any) -> datetime:
    if type(value) is not str:
        raise LineError("timestamp: not a string")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise LineError(f"timestamp: {value[:40]!r} is not an ISO 8601 instant") from None
    if at.tzinfo is UTC:
        return at
    if at.tzinfo is None:
        raise LineError("timestamp: no time zone")
    return at.astimezone(UTC)


def _strings(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LineError(f"{field}: not a list of strings")
    return value


class _Interned:
    """Principals and routes by their raw values: ten million lines name few distinct
    people-classes and routes, so each is validated and built once (bounded)."""

    def __init__(self) -> None:
        self.principals: dict[tuple[Any, Any, Any], Principal] = {}
        self.routes: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def principal(self, residency: Any, nats: Any, groups: Any) -> Principal:
        try:
            key = (residency, tuple(nats), tuple(groups))
            found = self.principals.get(key)
        except TypeError:  # not lists, or lists of unhashable things
            found, key = None, None
        if found is not None:
            return found
        if not isinstance(residency, str):
            raise LineError("input.residency: not a string")
        p = Principal(
            residency,
            frozenset(_strings(nats, "input.nationalities")),
            frozenset(_strings(groups, "input.groups")),
        )
        if key is not None:
            if len(self.principals) > 100_000:
                self.principals.clear()
            self.principals[key] = p
        return p

    def route(self, value: Any) -> tuple[str, ...]:
        try:
            key = tuple(value)
            found = self.routes.get(key)
        except TypeError:
            found, key = None, None
        if found is not None:
            return found
        route = tuple(_strings(value, "result.route"))
        if key is not None:
            if len(self.routes) > 100_000:
                self.routes.clear()
            self.routes[key] = route
        return route


_INTERNED = _Interned()
_DECODE = json.JSONDecoder().decode


def parse_line(text: str | bytes, file: str, number: int) -> Decision:
    """One decision line; ``LineError`` says which field is wrong."""
    try:
        raw = _DECODE(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError:
        raise LineError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise LineError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if type(raw) is not dict:
        raise LineError("line: not an object")
    ident, gateway, seq, fleet = _identity(raw)
    at = _instant(raw.get("timestamp"))
    model, principal = _input(raw.get("input"))
    status, site, route = _result(raw.get("result"))
    return Decision(
        file,
        number,
        ident,
        gateway,
        seq,
        at,
        model,
        principal,
        status,
        site,
        route,
        fleet,
        _reasons(raw.get("reasons")),
    )


def _identity(raw: dict[str, Any]) -> tuple[str, str, int, str]:
    """decision_id, gateway, sequence number and fleet digest, checked against each other."""
    ident = raw.get("decision_id")
    if type(ident) is not str:
        raise LineError("decision_id: missing, or not GATEWAY:SEQ")
    gateway, _, seq_text = ident.rpartition(":")
    if not gateway or not seq_text.isdigit() or not 0 < int(seq_text) < _MAX_SEQ:
        raise LineError(f"decision_id: {ident[:60]!r} is not GATEWAY:SEQ")
    seq = int(seq_text)
    labels = raw.get("labels")
    if type(labels) is not dict:
        raise LineError("labels: not an object")
    if labels.get("gateway") != gateway or labels.get("seq") != seq:
        raise LineError("labels: gateway/seq disagree with decision_id")
    fleet = labels.get("fleet")
    if type(fleet) is not str:
        raise LineError("labels.fleet: not a string")
    return ident, gateway, seq, fleet


def _input(inp: Any) -> tuple[str | None, Principal | None]:
    if type(inp) is not dict:
        raise LineError("input: not an object")
    model = inp.get("model")
    if model is not None and type(model) is not str:
        raise LineError("input.model: not a string")
    residency = inp.get("residency")
    if residency is None:
        return model, None
    return model, _INTERNED.principal(residency, inp.get("nationalities"), inp.get("groups"))


def _result(result: Any) -> tuple[int | None, str | None, tuple[str, ...]]:
    if type(result) is not dict:
        raise LineError("result: not an object")
    status = result.get("status")
    if status is not None and type(status) is not int:
        raise LineError("result.status: not an integer")
    site = result.get("site")
    if site is not None and type(site) is not str:
        raise LineError("result.site: not a string")
    return status, site, _INTERNED.route(result.get("route"))


def _reasons(value: Any) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    if type(value) is not list or not all(type(r) is dict for r in value):
        raise LineError("reasons: not a list of objects")
    return tuple((str(r.get("rule")), str(r.get("ref"))) for r in value)


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every line of ``path``, streamed; blank lines included (a
    blank line is reported too: a log never writes one)."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            yield number, line.rstrip(b"\r\n")


_CHUNK_BITS = 1 << 16  # sequence numbers per chunk of the bitmap (8 KiB)


class Sequences:
    """The sequence numbers seen, per gateway: gaps and duplicates.

    One bit per number, in 8 KiB chunks allocated as numbers arrive, so memory follows the
    numbers really seen: a line claiming a huge number costs one chunk, not a bitmap up to it.
    """

    def __init__(self) -> None:
        self._chunks: dict[str, dict[int, bytearray]] = {}
        self._top: dict[str, int] = {}

    def add(self, gateway: str, seq: int) -> bool:
        """Record ``seq``; False when it was seen before (a duplicate line)."""
        chunks = self._chunks.get(gateway)
        if chunks is None:
            chunks = self._chunks[gateway] = {}
            self._top[gateway] = 0
        index, offset = divmod(seq, _CHUNK_BITS)
        bits = chunks.get(index)
        if bits is None:
            bits = chunks[index] = bytearray(_CHUNK_BITS // 8)
        byte, bit = divmod(offset, 8)
        mask = 1 << bit
        if bits[byte] & mask:
            return False
        bits[byte] |= mask
        self._top[gateway] = max(self._top[gateway], seq)
        return True

    def gaps(self) -> list[Gap]:
        """Every missing run between 1 and the highest number seen, per gateway (a log whose
        last lines were cut off shows no gap: docs/security.md says what that means)."""
        out: list[Gap] = []
        for gateway in sorted(self._chunks):
            chunks, top = self._chunks[gateway], self._top[gateway]
            start: int | None = None  # first number of the missing run in progress
            expected = 0  # the next chunk, if none is missing
            for index in sorted(chunks):
                if index > expected and start is None:  # whole chunks missing before this
                    start = max(expected * _CHUNK_BITS, 1)
                start = _scan(gateway, chunks[index], index * _CHUNK_BITS, top, start, out)
                expected = index + 1
        return out


def _scan(
    gateway: str, bits: bytearray, base: int, top: int, start: int | None, out: list[Gap]
) -> int | None:
    """Walk one chunk: close and open missing runs; complete bytes are skipped whole."""
    for byte_index, b in enumerate(bits):
        if b == 0xFF and start is None:
            continue
        for bit in range(8):
            seq = base + byte_index * 8 + bit
            if seq == 0 or seq > top:
                continue
            present = b & (1 << bit)
            if not present and start is None:
                start = seq
            elif present and start is not None:
                out.append(Gap(gateway, start, seq - 1))
                start = None
    return start
