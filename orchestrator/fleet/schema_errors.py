"""Schema validation of one parsed YAML document, every pydantic error mapped to file:line.

pydantic reports errors by location tuple (``("sites", 0, "region")``); a user needs the file,
the line and the field, and for an unknown key the keys that would be valid there. This module
is the one place that translation happens, for the fleet loader and for single directive files.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchestrator.errors import Problem
from orchestrator.fleet.yamlsource import Document, format_path

__all__ = ["problem_order", "raw_ids", "raw_str", "validate_doc"]

_M = TypeVar("_M", bound=BaseModel)


def problem_order(p: Problem) -> tuple[str, int, str]:
    """Sort key for problems: by file, then line, then field."""
    return (p.file, p.line or 0, p.field)


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model found by following ``loc`` from ``cls`` (for 'unknown key')."""
    current: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = _model_in(fields[part].annotation)
        if current is None:
            return None
    return list(getattr(current, "model_fields", {}) or []) or None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
    return kind


def validate_doc(doc: Document, cls: type[_M]) -> tuple[_M | None, list[Problem]]:
    """Validate a parsed document against a schema class; map every error to file:line."""
    try:
        return cls.model_validate(doc.data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if p != "[key]")
            path = format_path(loc)
            kind = err["type"]
            if kind == "missing":
                parent = format_path(loc[:-1])
                problems.append(
                    Problem(doc.file, doc.line_of(parent), path, "required field is missing")
                )
                continue
            if kind == "extra_forbidden":
                valid = _fields_at(cls, loc[:-1])
                hint = f"; valid keys here: {', '.join(valid)}" if valid else ""
                problems.append(
                    Problem(doc.file, doc.line_of(path), path, f"unknown key '{loc[-1]}'{hint}")
                )
                continue
            message = str(err["msg"]).removeprefix("Value error, ")
            if kind.endswith("_type") or kind == "model_type":
                message = f"{message} (got {_describe(err.get('input'))})"
            problems.append(Problem(doc.file, doc.line_of(path), path, message))
        return None, problems


def raw_str(data: object, key: str) -> str | None:
    if isinstance(data, dict):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return None


def raw_ids(data: object, list_key: str) -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict) and isinstance(data.get(list_key), list):
        for item in data[list_key]:
            ident = raw_str(item, "id")
            if ident is not None:
                out.add(ident)
    return out
