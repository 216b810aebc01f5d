"""Names every cloud provider derives the same way: the artifact bucket of a site.

Names are derived, never stored: the same fleet always addresses the same bucket, so a lost
state file does not orphan cloud resources. S3 and GCS share the rules (GCS adds one of its
own), so both providers take the name from here rather than one from the other.
"""

from __future__ import annotations

import hashlib
import re

BUCKET_MAX = 63


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def squash(text: str, allowed: str) -> str:
    """Lowercase ``text``, runs of characters outside ``allowed`` become single hyphens."""
    cleaned = re.sub(f"[^{allowed}]+", "-", text.lower())
    return re.sub("-{2,}", "-", cleaned).strip("-")


def fit(name: str, limit: int, full: str) -> str:
    """Truncate to ``limit``, keeping names unique with a hash of the untruncated input."""
    if len(name) <= limit:
        return name
    digest = short_hash(full)
    return f"{name[: limit - len(digest) - 1].rstrip('-')}-{digest}"


def bucket_name(site_id: str, suffix: str = "") -> str:
    """The artifact bucket of a site: ``sovereign-<site>[-<suffix>]``, a valid S3/GCS name.

    S3 names are global, so fleets sharing a partition set ``bucket_suffix`` (e.g. an account
    alias) to stay apart. Lowercase letters, digits and single hyphens only, 3-63 characters.
    """
    raw = "-".join(p for p in ("sovereign", site_id, suffix) if p)
    return fit(squash(raw, "a-z0-9"), BUCKET_MAX, raw)
