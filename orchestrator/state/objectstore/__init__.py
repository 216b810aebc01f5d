"""State in object storage (``s3://``, ``gs://``): the store interface over conditional writes.

Object-storage state is "locked with conditional writes so that two applies never run at once"
(docs/state.md). Buckets offer no transactions, only compare-and-swap on one object: create
if absent (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``) and replace if unchanged (S3
``If-Match: ETAG``, GCS ``ifGenerationMatch=N``). Everything here is built from that, through
the small ``state.blobs.Blobs`` protocol that ``state.s3`` and ``state.gcs`` implement.
Objects under the prefix::

    state.json             lineage, serial, managed resources, applied fleet digest (CAS'd)
    fleet/<digest>.json    the applied fleet files, content-addressed (written before state)
    lock.json              {"holder": lease | null, "epoch": N}: taken and renewed by CAS,
                           never deleted; ``epoch`` counts acquisitions (the fencing token)
    drains.json            {"drains": [...]}: the drained sites (docs/runbooks.md), replaced by CAS
    audit/<seq:012>.json   one entry each, created only if absent: {ts, kind, payload, ...}
    audit/head.json        {"seq", "hash"} of the last entry (CAS'd after the entry)

Each recorded step is a single CAS on ``state.json``, so it is all or nothing. A new holder
raises ``state.json``'s ``fence`` to its epoch before it writes anything; a commit from a lease
whose epoch is below the fence is refused, so even a holder that passed its lease check and then
stalled past a takeover cannot land its late write. The lease is
checked just before that CAS and must have a sixth of its lifetime left; a taker must wait for
it to expire, so a writer that lost its lease cannot land a write after the takeover.

An audit append is two writes (entry, then head). If a run dies between them the entry exists
beyond the head: ``verify`` reports it (fail closed) and the next append rolls the head forward
over it, after checking that it chains onto the head.

Modules: ``audit`` (the chain as objects), ``store`` (the ``StateStore``: reads, the lock,
recorded steps). Neither imports a cloud SDK: ``state.url`` hands them a ``Blobs``.
"""

from orchestrator.state.blobs import Blob, Blobs, PreconditionFailed
from orchestrator.state.objectstore.audit import (
    AUDIT_DIR,
    AUDIT_HEAD,
    ObjectAuditLog,
    audit_name,
    entry_body,
    stored_entry,
)
from orchestrator.state.objectstore.store import ObjectStateStore

__all__ = [
    "AUDIT_DIR",
    "AUDIT_HEAD",
    "Blob",
    "Blobs",
    "ObjectAuditLog",
    "ObjectStateStore",
    "PreconditionFailed",
    "audit_name",
    "entry_body",
    "stored_entry",
]
