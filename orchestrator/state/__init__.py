"""State: the embedded SQLite store (default), object-storage stores, leases, the audit chain.

:func:`open_store` turns a ``--state`` value into a store. Cloud SDKs are imported only when an
``s3://`` or ``gs://`` store is opened, so commands on the default store never pay for them.
"""

from __future__ import annotations

from orchestrator.state.audit import AuditEntry, AuditLog, AuditProblem, AuditReport, redact
from orchestrator.state.base import AppliedFleet, StateReader, StateStore
from orchestrator.state.lease import Lease
from orchestrator.state.url import open_store, parse_state_url, read_drains

__all__ = [
    "AppliedFleet",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "AuditReport",
    "Lease",
    "StateReader",
    "StateStore",
    "open_store",
    "parse_state_url",
    "read_drains",
    "redact",
]
