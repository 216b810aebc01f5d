"""YAML bytes -> plain data plus a map from field path to line, so every error can say where.

PyYAML's ``safe_load`` forgets positions and silently keeps the last of two equal keys. Here the
file is *composed* first (nodes keep ``start_mark``), walked once to record the line of every
field path (``sites[0].region``) and to reject duplicate keys, and only then constructed into
Python data. Anything unreadable (empty, binary, not UTF-8, malformed, several documents, a top
level that is not a mapping) becomes a :class:`~orchestrator.errors.Problem`, never an exception.

One deliberate departure from YAML 1.1: only ``true``/``false`` are booleans. Under 1.1 the
country code of Norway, ``NO``, would silently become ``False`` (and ``ON``/``YES``/``Y`` too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import yaml

from orchestrator.errors import Problem

# libyaml's parser is about ten times faster than the pure-Python one (the gateway reloads the
# fleet while serving); both compose nodes with the same marks.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FleetLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2-style booleans (so ``NO`` stays the string ``"NO"``)."""


_FleetLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_FleetLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def format_path(parts: Sequence[object]) -> str:
    """``("sites", 0, "region")`` -> ``"sites[0].region"``."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Document:
    """One parsed YAML file: its data and where each field path starts."""

    file: str  # as shown to the user, e.g. "regions/eu.yaml"
    data: dict[str, object]
    lines: Mapping[str, int]

    def line_of(self, path: str) -> int:
        """Line of ``path``, or of its nearest enclosing field that has one (1 at worst)."""
        probe = path
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return self.lines.get("", 1)

    def problem(self, path: str, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), path, message)


# A fleet file is small; a document that expands to more nodes than this is an alias bomb
# ("billion laughs") or a mistake, and walking or validating it would hang the caller.
MAX_NODES = 100_000


class _TooLarge(Exception):
    pass


def _walk(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    problems: list[Problem],
    file: str,
    budget: list[int],
) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(file, line, path, "a key must be a plain name"))
                continue
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                problems.append(
                    Problem(
                        file,
                        line,
                        child,
                        f"duplicate key '{key}' (first defined on line {seen[key]}); "
                        "each key may appear once in a mapping",
                    )
                )
                continue
            seen[key] = line
            lines.setdefault(child, line)
            _walk(value_node, child, lines, problems, file, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, lines, problems, file, budget)


def parse_yaml(file: str, raw: bytes) -> tuple[Document | None, list[Problem]]:
    """Parse one YAML file. Returns the document (None if unusable) and every problem found."""
    if b"\x00" in raw:
        return None, [
            Problem(file, None, "", "binary file (contains NUL bytes); expected YAML text in UTF-8")
        ]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [
            Problem(file, line, "", f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8")
        ]
    try:
        return _parse_text(file, text)
    except RecursionError:
        return None, [
            Problem(file, None, "", "the document is nested too deeply to be a fleet file")
        ]


def _parse_text(file: str, text: str) -> tuple[Document | None, list[Problem]]:
    loader = _FleetLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = mark.line + 1 if mark is not None else None
            what = exc.problem or exc.context or "malformed YAML"
            return None, [Problem(file, where, "", f"malformed YAML: {what}")]
        except yaml.YAMLError as exc:
            return None, [Problem(file, None, "", f"malformed YAML: {exc}")]
        if node is None:
            return None, [Problem(file, None, "", "file is empty; expected a YAML mapping")]
        if not isinstance(node, yaml.MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
            return None, [
                Problem(
                    file,
                    node.start_mark.line + 1,
                    "",
                    f"the top level is {kind}; expected a mapping of keys (key: value)",
                )
            ]
        problems: list[Problem] = []
        lines: dict[str, int] = {"": node.start_mark.line + 1}
        try:
            _walk(node, "", lines, problems, file, [MAX_NODES])
        except _TooLarge:
            return None, [
                Problem(
                    file,
                    None,
                    "",
                    f"the document expands to more than "
                    f"{MAX_NODES} values (aliases?); fleet files "
                    "are small, write values out plainly",
                )
            ]
        try:
            data = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            return None, [
                *problems,
                Problem(
                    file,
                    mark.line + 1 if mark else None,
                    "",
                    f"malformed YAML: {exc.problem or exc.context}",
                ),
            ]
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. a timestamp-shaped value that is not a real date (2026-02-30)
            return None, [*problems, Problem(file, None, "", f"cannot read a value: {exc}")]
    finally:
        loader.dispose()
    if not isinstance(data, dict):  # pragma: no cover - a MappingNode constructs to a dict
        return None, [Problem(file, 1, "", "expected a mapping at the top level")]
    # With duplicate keys the document is still returned (the last value wins, as in PyYAML)
    # so that schema problems elsewhere in the file are reported in the same run; the
    # duplicate itself is a problem, so the fleet stays invalid.
    return Document(file, data, MappingProxyType(lines)), problems
