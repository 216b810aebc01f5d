"""The request body a model request is routed on: one reading of it, the same as the upstream's.

The gateway decides on the ``model`` of the body and then forwards the body's *bytes*. That is
only sound when every parser reads those bytes as the same document, so a body is accepted only
when it is unambiguous (docs/gateway.md, "Requests"):

- strict UTF-8 JSON (RFC 8259); no UTF-16/32 (Python's ``json.loads`` would guess them from
  the bytes, most servers do not), no ``NaN``/``Infinity`` literals;
- no object with the same key twice (at any depth, after unescaping: ``"model"`` and
  ``"mod\\u0065l"`` are the same key): with ``{"model": "a", "model": "b"}`` one parser keeps
  the first and another the last, so the gateway could route on one model while the upstream
  serves the other;
- nested at most :data:`MAX_DEPTH` arrays/objects deep, checked before parsing (a body nested
  100,000 deep is a clear ``400``, never a ``RecursionError``).

Anything else is a ``BodyError`` (the gateway answers ``400``), never a ``500``.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_DEPTH", "BodyError", "parse_body"]

MAX_DEPTH = 64

# A JSON string (skipped as a whole) or one bracket: what the depth scan looks at.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


class BodyError(ValueError):
    """The body is not one unambiguous JSON document; the message says why (for the 400)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BodyError(
                    f"the body has the key {key[:100]!r} twice in one object; a request must "
                    "be unambiguous JSON"
                )
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise BodyError(f"the body holds {name}, which is not JSON (RFC 8259)")


def depth_of(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body`` (brackets inside strings do not
    count). Cheap for the common body: only scanned when it has more brackets than the limit."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the limit
    depth = deepest = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        else:
            depth -= 1
    return deepest


def parse_body(body: bytes) -> Any:
    """The JSON document ``body`` is, read strictly; ``BodyError`` otherwise."""
    if depth_of(body) > MAX_DEPTH:
        raise BodyError(f"the body is nested more than {MAX_DEPTH} levels deep")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the body is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise BodyError(f"the body is not JSON ({exc.msg})") from None
    except RecursionError:  # not reachable past the depth check; never a 500 regardless
        raise BodyError(f"the body is nested more than {MAX_DEPTH} levels deep") from None
