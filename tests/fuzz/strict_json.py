"""A small JSON parser written for the campaigns, independent of the product and of ``json``.

It reads RFC 8259 exactly (UTF-8 text, no NaN/Infinity, no trailing data) and keeps the
*first* value of a repeated key, as some servers do, so a campaign judging a gateway answer
with it sees what such an upstream would see; ``JsonError`` for anything else. Depth is bounded
by ``max_depth`` (an error past it, never a RecursionError).
"""

from __future__ import annotations

from typing import Any

__all__ = ["JsonError", "loads_first_key_wins"]

_WS = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JsonError(ValueError):
    pass


class _Parser:
    def __init__(self, text: str, max_depth: int) -> None:
        self.s = text
        self.i = 0
        self.max_depth = max_depth
        self.duplicates = 0  # keys seen twice in one object

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def value(self, depth: int) -> Any:
        self.ws()
        if self.i >= len(self.s):
            raise JsonError("unexpected end")
        ch = self.s[self.i]
        if ch in "{[":
            if depth >= self.max_depth:
                raise JsonError("too deep")
            return self.obj(depth + 1) if ch == "{" else self.arr(depth + 1)
        if ch == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return val
        return self.number()

    def obj(self, depth: int) -> dict[str, Any]:
        self.i += 1
        out: dict[str, Any] = {}
        self.ws()
        if self.s.startswith("}", self.i):
            self.i += 1
            return out
        while True:
            self.ws()
            if not self.s.startswith('"', self.i):
                raise JsonError("expected a key")
            key = self.string()
            self.ws()
            if not self.s.startswith(":", self.i):
                raise JsonError("expected ':'")
            self.i += 1
            val = self.value(depth)
            if key in out:
                self.duplicates += 1
            out.setdefault(key, val)  # the first value of a repeated key wins
            self.ws()
            if self.s.startswith(",", self.i):
                self.i += 1
                continue
            if self.s.startswith("}", self.i):
                self.i += 1
                return out
            raise JsonError("expected ',' or '}'")

    def arr(self, depth: int) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        self.ws()
        if self.s.startswith("]", self.i):
            self.i += 1
            return out
        while True:
            out.append(self.value(depth))
            self.ws()
            if self.s.startswith(",", self.i):
                self.i += 1
                continue
            if self.s.startswith("]", self.i):
                self.i += 1
                return out
            raise JsonError("expected ',' or ']'")

    def string(self) -> str:
        self.i += 1
        parts: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise JsonError("unterminated string")
            ch = self.s[self.i]
            if ch == '"':
                self.i += 1
                return "".join(parts)
            if ch == "\\":
                esc = self.s[self.i + 1 : self.i + 2]
                if esc in _ESCAPES:
                    parts.append(_ESCAPES[esc])
                    self.i += 2
                elif esc == "u":
                    digits = self.s[self.i + 2 : self.i + 6]
                    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                        raise JsonError("bad \\u escape")
                    parts.append(chr(int(digits, 16)))
                    self.i += 6
                else:
                    raise JsonError("bad escape")
                continue
            if ord(ch) < 0x20:
                raise JsonError("control character in a string")
            parts.append(ch)
            self.i += 1

    def number(self) -> int | float:
        start = self.i
        s = self.s
        if s.startswith("-", self.i):
            self.i += 1
        if s.startswith("0", self.i):
            self.i += 1
        elif self.i < len(s) and s[self.i] in "123456789":
            while self.i < len(s) and s[self.i].isdigit() and s[self.i].isascii():
                self.i += 1
        else:
            raise JsonError("not a value")
        is_float = False
        if s.startswith(".", self.i):
            is_float = True
            self.i += 1
            begin = self.i
            while self.i < len(s) and s[self.i] in "0123456789":
                self.i += 1
            if self.i == begin:
                raise JsonError("bad fraction")
        if self.i < len(s) and s[self.i] in "eE":
            is_float = True
            self.i += 1
            if self.i < len(s) and s[self.i] in "+-":
                self.i += 1
            begin = self.i
            while self.i < len(s) and s[self.i] in "0123456789":
                self.i += 1
            if self.i == begin:
                raise JsonError("bad exponent")
        text = s[start : self.i]
        return float(text) if is_float else int(text)


def loads_first_key_wins(data: bytes, max_depth: int = 512) -> tuple[Any, int]:
    """The document and how many keys it repeats (0 for an unambiguous document)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError("not UTF-8") from exc
    parser = _Parser(text, max_depth)
    value = parser.value(0)
    parser.ws()
    if parser.i != len(text):
        raise JsonError("trailing data")
    return value, parser.duplicates
