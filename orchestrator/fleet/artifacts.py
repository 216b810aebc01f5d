"""Artifact sources (docs/fleet-format.md): what a model's ``artifact`` may name, and its canonical
form.

A source is an ``s3://``, ``gs://``, ``https://`` or ``file://`` URL, or a path (relative ones
are resolved against the fleet directory); any other kind is a fleet error. ``artifact`` may be
one source or a list of mirrors. Everything downstream (the artifact resource's spec, the plan,
the providers' manifests) carries one string per model: the source itself, or the mirrors as a
JSON list, so that comparing desired with observed stays a comparison of strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

S3, GCS, HTTPS, FILE = "s3", "gs", "https", "file"
SOURCE_KINDS = (S3, GCS, HTTPS, FILE)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def source_kind(uri: str) -> str | None:
    """``s3``, ``gs``, ``https`` or ``file`` (for file URLs and plain paths); None otherwise."""
    if _WINDOWS_DRIVE.match(uri):
        return FILE
    parts = urlsplit(uri)
    if not parts.scheme:
        return FILE if parts.path else None
    scheme = parts.scheme.lower()
    if scheme in (S3, GCS, HTTPS):
        return scheme if parts.netloc else None
    if scheme == FILE:
        return FILE if parts.path or parts.netloc else None
    return None


def source_problem(uri: str) -> str | None:
    """Why ``uri`` is not an artifact source, or None when it is one."""
    if source_kind(uri) is not None:
        return None
    return (
        f"'{uri}' is not an artifact source; use an s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, "
        "https://HOST/PATH or file:///PATH URL, or a path relative to the fleet directory"
    )


def artifact_spec(mirrors: Sequence[str]) -> str:
    """The canonical string of one source (itself) or several mirrors (a JSON list)."""
    if len(mirrors) == 1:
        return mirrors[0]
    return json.dumps(list(mirrors))


def mirrors_of(spec: str) -> tuple[str, ...]:
    """The inverse of ``artifact_spec``."""
    if spec.startswith("["):
        try:
            parsed = json.loads(spec)
        except ValueError:
            return (spec,)
        if isinstance(parsed, list) and all(isinstance(m, str) for m in parsed):
            return tuple(parsed)
    return (spec,)
