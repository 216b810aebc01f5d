"""Attested tenants: ``tenants/NAME.yaml`` + ``.sig``, checked against ``fleet.yaml`` attestors.

A tenant says who an organisation's requests are judged as (``principal``), until when
(``expires``, required), on whose word (``attested_by``: an attestor of ``fleet.yaml``, whose
Ed25519 signature over the exact file bytes is in ``NAME.yaml.sig``, one line
``ATTESTOR_ID BASE64_SIGNATURE``, as for directives). docs/identity.md has the contract.

A tenant that does not verify (unknown attestor, missing or wrong signature, schema error) is
reported to ``validate`` with file:line and left out of the fleet: its API keys are refused.
It never makes the rest of the fleet invalid: the law does not wait on a tenant's paperwork.
An expired tenant verifies and stays in the fleet, refused at each request's time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import Problem
from orchestrator.fleet.model import Attestor, Fleet, Tenant
from orchestrator.fleet.reading import read_regular_file
from orchestrator.fleet.schema import TenantDoc
from orchestrator.fleet.schema_errors import problem_order, validate_doc
from orchestrator.fleet.signing import SIGNATURE_SUFFIX, verify_signatures
from orchestrator.fleet.yamlsource import parse_yaml

__all__ = ["TenantReport", "check_tenants", "inspect_tenant_file", "is_tenant_document"]

_SIGN_HINT = "sign it: sovereign directive sign FILE --key KEY --authority ATTESTOR_ID"


@dataclass(frozen=True)
class TenantReport:
    """What checking one tenant file found (``directive verify`` on a tenant)."""

    tenant: Tenant | None  # None when anything is wrong
    problems: tuple[Problem, ...]
    attested_by: str | None
    signers: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return self.tenant is not None


def is_tenant_document(raw: bytes) -> bool:
    """Whether a file is a tenant attestation (it has a top-level ``attested_by``)."""
    return any(line.startswith(b"attested_by:") for line in raw.splitlines())


def _check_one(
    label: str,
    rel: str,
    raw: bytes,
    sig: bytes | None,
    attestors: Sequence[Attestor],
) -> tuple[Tenant | None, tuple[str, ...], str | None, list[Problem]]:
    file = f"{label}/{rel}" if label else rel
    doc, problems = parse_yaml(file, raw)
    if doc is None or problems:
        return None, (), None, problems
    value, problems = validate_doc(doc, TenantDoc)
    if value is None:
        return None, (), None, problems
    attestor = next((a for a in attestors if a.id == value.attested_by), None)
    if attestor is None:
        known = ", ".join(a.id for a in attestors) or "none declared"
        problems.append(
            doc.problem(
                "attested_by",
                f"'{value.attested_by}' is not an attestor of fleet.yaml (attestors: {known}); "
                "declare it under fleet.yaml `attestors:` (id, public_key)",
            )
        )
        return None, (), value.attested_by, problems
    sig_file = file + SIGNATURE_SUFFIX
    if sig is None:
        problems.append(
            Problem(sig_file, None, "", f"missing: the tenant is unsigned; {_SIGN_HINT}")
        )
        return None, (), value.attested_by, problems
    others = {a.id: "another attestor" for a in attestors if a.id != attestor.id}
    check = verify_signatures(raw, sig, {attestor.id: attestor.public_key}, {})
    signers = check.signers
    for p in check.problems:
        message = p.message
        if message.startswith("unknown authority"):
            name = message.split("'")[1] if "'" in message else ""
            message = (
                f"'{name}' is {others.get(name, 'not an attestor of fleet.yaml')}, not "
                f"'{attestor.id}' who attests this tenant (attested_by)"
            )
        problems.append(Problem(sig_file, p.line, "", message))
    if attestor.id not in signers and not check.problems:
        problems.append(
            Problem(sig_file, None, "", f"no signature of '{attestor.id}'; {_SIGN_HINT}")
        )
    if problems:
        return None, signers, value.attested_by, problems
    principal = value.principal
    tenant = Tenant(
        id=value.id,
        attested_by=value.attested_by,
        reference=value.reference,
        residency=principal.residency,
        nationalities=frozenset(principal.nationalities),
        groups=frozenset(principal.groups),
        expires=value.expires,
        source=rel,
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    return tenant, signers, value.attested_by, []


def check_tenants(
    files: Mapping[str, bytes], rels: Sequence[str], label: str, attestors: Sequence[Attestor]
) -> tuple[dict[str, Tenant], list[Problem]]:
    """Every tenant file of the fleet: the ones that verify, and the problems of the others."""
    tenants: dict[str, Tenant] = {}
    problems: list[Problem] = []
    for rel in rels:
        tenant, _, _, found = _check_one(
            label, rel, files[rel], files.get(rel + SIGNATURE_SUFFIX), attestors
        )
        problems.extend(found)
        if tenant is None:
            continue
        if tenant.id in tenants:
            problems.append(
                Problem(
                    f"{label}/{rel}",
                    1,
                    "id",
                    f"tenant id '{tenant.id}' is already used by "
                    f"{label}/{tenants[tenant.id].source}; tenant ids are unique",
                )
            )
            del tenants[tenant.id]  # neither: which one speaks for the tenant is unclear
            continue
        tenants[tenant.id] = tenant
    return tenants, sorted(problems, key=problem_order)


def inspect_tenant_file(path: Path, fleet: Fleet) -> TenantReport:
    """Check one tenant file (and its .sig) against the fleet's attestors; never raises."""
    try:
        raw = read_regular_file(path)  # a FIFO or a device is refused, never waited on
    except OSError as exc:
        return TenantReport(
            None, (Problem(str(path), None, "", f"cannot read: {exc.strerror}"),), None, ()
        )
    sig_path = path.with_name(path.name + SIGNATURE_SUFFIX)
    try:
        sig = read_regular_file(sig_path) if os.path.lexists(sig_path) else None
    except OSError as exc:
        problem = Problem(str(sig_path), None, "", f"cannot read: {exc.strerror}")
        return TenantReport(None, (problem,), None, ())
    tenant, signers, attested_by, problems = _check_one(
        "", str(path), raw, sig, fleet.settings.attestors
    )
    return TenantReport(tenant, tuple(sorted(problems, key=problem_order)), attested_by, signers)
