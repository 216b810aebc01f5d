"""State: the embedded SQLite store (default), object-storage stores, leases, the audit chain.

:func:`open_store` turns a ``--state`` value into a store. Cloud SDKs are imported only when an
``s3://`` or ``gs://`` store is opened, so commands on the default store never pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.state.audit import AuditEntry, AuditLog, AuditProblem, AuditReport, redact
    from orchestrator.state.base import AppliedFleet, StateReader, StateStore
    from orchestrator.state.lease import Lease
    from orchestrator.state.url import open_store, parse_state_url, read_drains

# Each name is imported from its module on first use (PEP 562): a command that only asks
# whether a default state exists (validate, explain) does not pay for the audit chain, leases
# and key records at start-up.
_HOMES = {
    "AuditEntry": "audit",
    "AuditLog": "audit",
    "AuditProblem": "audit",
    "AuditReport": "audit",
    "redact": "audit",
    "AppliedFleet": "base",
    "StateReader": "base",
    "StateStore": "base",
    "Lease": "lease",
    "open_store": "url",
    "parse_state_url": "url",
    "read_drains": "url",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


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
