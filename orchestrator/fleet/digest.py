"""The fleet digest: one id for an exact set of fleet files, defined once.

``Fleet.digest`` (what the loader read), the digest a state store records beside the applied
files, the routing table's identity in a plan, and the gateway's "did the applied fleet change"
check are all this one function, so they can be compared with each other: the fleet a plan was
made from, the fleet recorded as applied and the fleet being served either have the same digest
or are different fleets.

A fleet derived in memory (``Fleet.with_directives``, for what-ifs) was not read from files; its
digest is derived from this one and the directive set (``fleet.model.derived_digest``), in a
separate domain, so it never equals the digest of any set of files nor another derived fleet's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["fleet_digest"]


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
