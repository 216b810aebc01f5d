"""The fleet digest: one id for an exact set of fleet files, defined once.

``Fleet.digest`` (what the loader read), the digest a state store records beside the applied
files, the routing table's identity in a plan, and the gateway's "did the applied fleet change"
check are all this one function, so they can be compared with each other: the fleet a plan was
made from, the fleet recorded as applied and the fleet being served either have the same digest
or are different fleets.

A fleet derived in memory (``Fleet.with_directives``, for what-ifs) was not read from files; its
digest is derived from the original digest and the directive set, in a separate domain, so it
never equals the digest of any set of files nor that of another derived fleet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # model.py imports this module: only the annotation is needed here
    from orchestrator.fleet.model import Directive

__all__ = ["derived_digest", "fleet_digest"]

_DERIVED = b"sovereign fleet with directives v1\n"


def fleet_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over the sorted (path, sha256(bytes)) pairs: names exactly what was loaded.

    Each pair is ``path NUL hex-sha256 LF``; a path cannot contain NUL or LF from a directory
    listing, so no two file sets share the byte stream.
    """
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode("utf-8"))
        h.update(b"\0")
        h.update(hashlib.sha256(files[rel]).hexdigest().encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


def _instant(t: datetime | None) -> str:
    return "-" if t is None else t.isoformat()


def _sorted(values: Iterable[str] | None) -> str:
    return "-" if values is None else ",".join(sorted(values))


def _directive_line(d: Directive) -> str:
    a = d.audience
    return "\0".join(
        (
            d.id,
            d.jurisdiction,
            d.issuer,
            d.action.value,
            _sorted(d.models),
            _sorted(a.nationality_in),
            _sorted(a.nationality_not_in),
            _sorted(a.residency_in),
            _sorted(a.residency_not_in),
            _sorted(a.except_groups),
            _instant(d.effective),
            _instant(d.expires),
            d.supersedes or "-",
            d.sha256,
        )
    )


def derived_digest(base: str, directives: Mapping[str, Directive]) -> str:
    """The digest of the fleet ``base`` with its directives replaced by ``directives``."""
    h = hashlib.sha256(_DERIVED)
    h.update(base.encode("ascii"))
    for key in sorted(directives):
        h.update(b"\n")
        h.update(key.encode("utf-8"))
        h.update(b"\0")
        h.update(_directive_line(directives[key]).encode("utf-8"))
    return h.hexdigest()
