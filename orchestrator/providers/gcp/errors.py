"""The GCP provider's error helpers: those of the GCP adaptor (``orchestrator.adaptors.gcp``).

The same contract as AWS: throttling, 5xx and connection failures are transient (retried by the
reconciler), permission and validation failures are permanent and name the missing IAM
permission (``storage.buckets.create``) and the site, "not found" is absence (``lookup``
returns None), and no SDK exception escapes. The mapping is defined once, in the adaptor, which
the GCS state store uses too.
"""

from __future__ import annotations

from orchestrator.adaptors.gcp import call, is_not_found, is_sdk_error, lookup, map_gcp_error

__all__ = ["call", "is_not_found", "is_sdk_error", "lookup", "map_gcp_error"]
