"""Check one directive file (and its ``.sig``) against a fleet, outside the fleet directory.

``directive verify`` and ``impact`` look at a directive before it is added: it must parse,
validate, carry enough verifying signatures of its own jurisdiction, not reuse an id the fleet
holds for other bytes, and not close a ``supersedes`` cycle with the fleet's directives.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import FleetError, Problem
from orchestrator.fleet.build import build_directive
from orchestrator.fleet.checks import (
    DirectiveContext,
    ParsedDirective,
    check_directive,
    check_supersede_cycles,
)
from orchestrator.fleet.model import Directive, Fleet
from orchestrator.fleet.reading import read_regular_file
from orchestrator.fleet.schema import DirectiveDoc
from orchestrator.fleet.schema_errors import problem_order, validate_doc
from orchestrator.fleet.signing import SIGNATURE_SUFFIX
from orchestrator.fleet.yamlsource import parse_yaml

__all__ = [
    "DirectiveReport",
    "context_from_fleet",
    "inspect_directive_file",
    "load_directive_file",
]


def context_from_fleet(fleet: Fleet) -> DirectiveContext:
    return DirectiveContext(
        countries={j.id: j.countries for j in fleet.jurisdictions.values()},
        authorities={
            j.id: {a.id: a.public_key for a in j.authorities} for j in fleet.jurisdictions.values()
        },
        thresholds={j.id: j.directive_threshold for j in fleet.jurisdictions.values()},
        models=frozenset(fleet.models),
        existing={d.id: d.jurisdiction for d in fleet.directives.values()},
    )


@dataclass(frozen=True)
class DirectiveReport:
    """What checking one directive file against a fleet found (for ``directive verify``)."""

    directive: Directive | None  # None when anything is wrong
    problems: tuple[Problem, ...]
    jurisdiction: str | None
    signers: tuple[str, ...]  # distinct authorities of its jurisdiction whose signature verified
    threshold: int | None  # signatures its jurisdiction requires

    @property
    def valid(self) -> bool:
        return self.directive is not None


def inspect_directive_file(
    path: Path, fleet: Fleet, *, require_signature: bool = True
) -> DirectiveReport:
    """Check one directive file (and its .sig) against ``fleet``; never raises FleetError."""
    label = str(path)
    try:
        raw = read_regular_file(path)  # a FIFO or a device is refused, never waited on
    except OSError as exc:
        problem = Problem(label, None, "", f"cannot read: {exc.strerror}")
        return DirectiveReport(None, (problem,), None, (), None)
    sig_path = path.with_name(path.name + SIGNATURE_SUFFIX)
    sig: bytes | None = None
    if os.path.lexists(sig_path):
        try:
            sig = read_regular_file(sig_path)
        except OSError as exc:
            problem = Problem(str(sig_path), None, "", f"cannot read: {exc.strerror}")
            return DirectiveReport(None, (problem,), None, (), None)
    doc, problems = parse_yaml(label, raw)
    if doc is None or problems:
        return DirectiveReport(None, tuple(problems), None, (), None)
    value, problems = validate_doc(doc, DirectiveDoc)
    if value is None:
        return DirectiveReport(None, tuple(problems), None, (), None)
    parsed = ParsedDirective(doc, value, label, raw, str(sig_path), sig)
    ctx = context_from_fleet(fleet)
    sha = hashlib.sha256(raw).hexdigest()
    existing = fleet.directives.get(value.id)
    if existing is not None and existing.sha256 != sha:
        problems.append(
            doc.problem(
                "id",
                f"directive id '{value.id}' is already used by {existing.source} in the fleet; "
                "pick a new id (use supersedes to replace it)",
            )
        )
    problems_d, signers = check_directive(parsed, ctx, require_signature=require_signature)
    problems.extend(problems_d)
    chain = [parsed] + [
        ParsedDirective(doc, _as_doc(d), d.source, b"", "", None)
        for d in fleet.directives.values()
        if d.id != value.id
    ]
    problems.extend(check_supersede_cycles(chain))
    threshold = ctx.thresholds.get(value.jurisdiction)
    if problems:
        return DirectiveReport(
            None,
            tuple(sorted(problems, key=problem_order)),
            value.jurisdiction,
            signers,
            threshold,
        )
    directive = build_directive(parsed, ctx.countries, signers)
    return DirectiveReport(directive, (), value.jurisdiction, signers, threshold)


def load_directive_file(path: Path, fleet: Fleet, *, require_signature: bool = True) -> Directive:
    """Validate one directive file (and its .sig) against ``fleet``, e.g. before adding it.

    Its id must not be taken by another directive of the fleet, unless the fleet holds this
    very file (same bytes). Raises FleetError listing every problem.
    """
    report = inspect_directive_file(path, fleet, require_signature=require_signature)
    if report.directive is None:
        raise FleetError(report.problems)
    return report.directive


def _as_doc(d: Directive) -> DirectiveDoc:
    """Just enough of a DirectiveDoc to follow ``supersedes`` chains through the fleet."""
    return DirectiveDoc.model_construct(
        id=d.id, jurisdiction=d.jurisdiction, supersedes=d.supersedes
    )
