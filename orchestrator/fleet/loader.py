"""Load a fleet directory (or the same files from memory) into frozen, validated values.

This is the only way a ``Fleet`` is made from files. It takes every file the fleet consists of
(``fleet.reading``), parses each YAML with line tracking (``fleet.yamlsource``), validates it
with the strict pydantic schema (``fleet.schema_errors`` maps errors to file:line), runs the
cross-file checks and verifies every directive's signatures (``fleet.checks``), then builds the
frozen values (``fleet.build``). It collects *every* problem before
giving up, then raises one ``FleetError`` carrying them all (sorted by file and line). A fleet
with any problem is never returned: an invalid directive is never ignored or half-applied.

Layout (docs/fleet-format.md), paths relative to the fleet root:

    models.yaml              the model catalog (required)
    fleet.yaml               fleet-wide settings (optional)
    <anything>.yaml          one region profile each
    directives/NAME.yaml     a directive, signed by directives/NAME.yaml.sig
    tenants/NAME.yaml        an attested tenant, signed by tenants/NAME.yaml.sig; one that does
                             not verify is left out and reported (fleet.tenants), never fatal

``.yml`` is accepted wherever ``.yaml`` is. Hidden files and other directories are not part of
the fleet (the default state store lives in ``.sovereign/`` inside it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from orchestrator.errors import FleetError, Problem
from orchestrator.fleet.build import build_fleet
from orchestrator.fleet.checks import (
    ParsedDirective,
    ParsedProfile,
    check_catalog,
    check_directive,
    check_profiles,
    check_supersede_cycles,
    context_from_profiles,
)
from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.directive_file import (
    DirectiveReport,
    inspect_directive_file,
    load_directive_file,
)
from orchestrator.fleet.model import Fleet
from orchestrator.fleet.reading import (
    CATALOG_NAMES,
    DIRECTIVES_DIR,
    SETTINGS_NAMES,
    TENANTS_DIR,
    YAML_SUFFIXES,
    read_fleet_files,
)
from orchestrator.fleet.schema import CatalogDoc, DirectiveDoc, FleetSettingsDoc, ProfileDoc
from orchestrator.fleet.schema_errors import problem_order, raw_ids, raw_str, validate_doc
from orchestrator.fleet.signing import SIGNATURE_SUFFIX
from orchestrator.fleet.tenants import check_tenants
from orchestrator.fleet.yamlsource import Document, parse_yaml

# The loader is the fleet package's front door: reading, single directive files and the digest
# are re-exported so callers need one import.
__all__ = [
    "DirectiveReport",
    "fleet_digest",
    "inspect_directive_file",
    "load_directive_file",
    "load_fleet",
    "load_fleet_files",
    "read_fleet_files",
]


def load_fleet(root: Path) -> Fleet:
    """Load and validate the fleet in ``root``; FleetError lists every problem found."""
    return load_fleet_files(read_fleet_files(root), label=str(root))


# ---------------------------------------------------------------- the whole fleet


@dataclass
class _Collected:
    problems: list[Problem] = field(default_factory=list)
    profiles: list[ParsedProfile] = field(default_factory=list)
    catalog: CatalogDoc | None = None
    catalog_doc: Document | None = None
    settings: FleetSettingsDoc | None = None
    directives: list[ParsedDirective] = field(default_factory=list)
    shadow_jurisdictions: set[str] = field(default_factory=set)
    shadow_sites: set[str] = field(default_factory=set)
    shadow_models: set[str] = field(default_factory=set)
    shadow_directives: set[str] = field(default_factory=set)
    catalog_unusable: bool = False
    signers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rel -> verified
    tenant_rels: list[str] = field(default_factory=list)
    settings_doc: Document | None = None


def _classify(
    files: Mapping[str, bytes], label: str, out: _Collected
) -> tuple[list[str], str | None, str | None, list[str], set[str]]:
    profiles: list[str] = []
    catalog: list[str] = []
    settings: list[str] = []
    directives: list[str] = []
    sigs: set[str] = set()
    for rel in sorted(files):
        pure = PurePosixPath(rel)
        parts = pure.parts
        if len(parts) == 1 and pure.suffix in YAML_SUFFIXES:
            if rel in CATALOG_NAMES:
                catalog.append(rel)
            elif rel in SETTINGS_NAMES:
                settings.append(rel)
            else:
                profiles.append(rel)
        elif len(parts) == 2 and parts[0] == DIRECTIVES_DIR and pure.suffix in YAML_SUFFIXES:
            directives.append(rel)
        elif len(parts) == 2 and parts[0] == DIRECTIVES_DIR and pure.suffix == SIGNATURE_SUFFIX:
            sigs.add(rel)
        elif len(parts) == 2 and parts[0] == TENANTS_DIR and pure.suffix in YAML_SUFFIXES:
            out.tenant_rels.append(rel)
        elif len(parts) == 2 and parts[0] == TENANTS_DIR and pure.suffix == SIGNATURE_SUFFIX:
            sigs.add(rel)
        else:
            out.problems.append(
                Problem(
                    f"{label}/{rel}",
                    None,
                    "",
                    "not part of the fleet layout: region profiles and models.yaml/fleet.yaml at "
                    "the top, directives and their .sig files in directives/, tenants and "
                    "theirs in tenants/",
                )
            )
    for names in (catalog, settings):
        if len(names) > 1:
            out.problems.append(
                Problem(
                    f"{label}/{names[1]}",
                    None,
                    "",
                    f"both {names[0]} and {names[1]} exist; keep exactly one",
                )
            )
    return (
        profiles,
        catalog[0] if catalog else None,
        settings[0] if settings else None,
        directives,
        sigs,
    )


def _parse(label: str, rel: str, raw: bytes, out: _Collected) -> Document | None:
    doc, problems = parse_yaml(f"{label}/{rel}", raw)
    out.problems.extend(problems)
    return doc


_RAW_JURISDICTION = re.compile(rb"^jurisdiction:\s*['\"]?([A-Za-z0-9-]+)", re.MULTILINE)
_RAW_SITE_ID = re.compile(rb"^\s*-\s*id:\s*['\"]?([A-Za-z0-9._-]+)", re.MULTILINE)


def _declared_in_raw(rel: str, data: bytes) -> tuple[str, set[str]]:
    """Best guess of the jurisdiction id and site ids of a profile that is not valid YAML:
    its ``jurisdiction:`` line, else its file name. Only used to silence follow-on problems of
    a fleet that is invalid anyway (the file's own problem keeps it so)."""
    found = _RAW_JURISDICTION.search(data)
    if found is not None:
        ident = found.group(1).decode("ascii")
    else:
        ident = rel.rsplit("/", 1)[-1].split(".", maxsplit=1)[0].upper()
    return ident, {m.decode("ascii") for m in _RAW_SITE_ID.findall(data)}


def load_fleet_files(files: Mapping[str, bytes], label: str = "regions") -> Fleet:
    """Validate a fleet given as (fleet-relative path -> bytes); ``label`` prefixes file names
    in problems (the fleet directory as the user named it)."""
    label = label.rstrip("/") or "."
    out = _Collected()
    profile_rels, catalog_rel, settings_rel, directive_rels, sig_rels = _classify(files, label, out)

    if catalog_rel is None:
        out.problems.append(
            Problem(
                f"{label}/models.yaml",
                None,
                "",
                "the model catalog is missing; create models.yaml with a 'models:' list "
                "(id, origin, export_control, artifact)",
            )
        )
        out.catalog_unusable = True
    else:
        doc = _parse(label, catalog_rel, files[catalog_rel], out)
        if doc is not None:
            out.catalog_doc = doc
            out.catalog, problems = validate_doc(doc, CatalogDoc)
            out.problems.extend(problems)
            if out.catalog is None:
                out.shadow_models |= raw_ids(doc.data, "models")
        if out.catalog is None:
            out.catalog_unusable = True

    if settings_rel is not None:
        doc = _parse(label, settings_rel, files[settings_rel], out)
        if doc is not None:
            out.settings_doc = doc
            out.settings, problems = validate_doc(doc, FleetSettingsDoc)
            out.problems.extend(problems)

    if not profile_rels:
        out.problems.append(
            Problem(
                label,
                None,
                "",
                "no region profiles found; add one <jurisdiction>.yaml per jurisdiction",
            )
        )
    for rel in profile_rels:
        doc = _parse(label, rel, files[rel], out)
        if doc is None:
            # The file is not even YAML: its own problem is reported; what it declares is still
            # referenced elsewhere, so keep those references from raising follow-on problems.
            declared, site_ids = _declared_in_raw(rel, files[rel])
            out.shadow_jurisdictions.add(declared)
            out.shadow_sites |= site_ids
            continue
        profile, problems = validate_doc(doc, ProfileDoc)
        out.problems.extend(problems)
        if profile is not None:
            out.profiles.append(ParsedProfile(doc, profile, rel))
        else:
            ident = raw_str(doc.data, "jurisdiction")
            if ident is not None:
                out.shadow_jurisdictions.add(ident)
            out.shadow_sites |= raw_ids(doc.data, "sites")

    for rel in directive_rels:
        sig_rel = rel + SIGNATURE_SUFFIX
        doc = _parse(label, rel, files[rel], out)
        if doc is None:
            continue
        directive, problems = validate_doc(doc, DirectiveDoc)
        out.problems.extend(problems)
        if directive is None:
            ident = raw_str(doc.data, "id")
            if ident is not None:
                out.shadow_directives.add(ident)
            continue
        out.directives.append(
            ParsedDirective(
                doc, directive, rel, files[rel], f"{label}/{sig_rel}", files.get(sig_rel)
            )
        )
    for sig_rel in sorted(sig_rels):
        what = "tenant" if sig_rel.startswith(f"{TENANTS_DIR}/") else "directive"
        if sig_rel.removesuffix(SIGNATURE_SUFFIX) not in files:
            out.problems.append(
                Problem(
                    f"{label}/{sig_rel}",
                    None,
                    "",
                    f"signature file without a {what} (expected "
                    f"{label}/{sig_rel.removesuffix(SIGNATURE_SUFFIX)}); remove it or restore the "
                    f"{what}",
                )
            )

    _cross_check(out)
    _check_attestors(out)
    if out.problems:
        raise FleetError(sorted(out.problems, key=problem_order))
    assert out.catalog is not None  # guaranteed: a missing catalog is a problem
    fleet = build_fleet(
        out.profiles, out.catalog, out.settings, out.directives, out.signers, fleet_digest(files)
    )
    tenants, tenant_problems = check_tenants(
        files, out.tenant_rels, label, fleet.settings.attestors
    )
    return replace(fleet, tenants=tenants, tenant_problems=tuple(tenant_problems))


def _check_attestors(out: _Collected) -> None:
    """Attestor ids are unique and each has its own key (a signature then names one person)."""
    if out.settings is None or out.settings_doc is None:
        return
    ids: set[str] = set()
    keys: dict[str, str] = {}
    for i, a in enumerate(out.settings.attestors):
        if a.id in ids:
            out.problems.append(
                out.settings_doc.problem(
                    f"attestors[{i}].id", f"attestor '{a.id}' is declared twice"
                )
            )
        if a.public_key in keys:
            out.problems.append(
                out.settings_doc.problem(
                    f"attestors[{i}].public_key",
                    f"attestor '{a.id}' has the public key of '{keys[a.public_key]}'; each "
                    "attestor needs its own key",
                )
            )
        ids.add(a.id)
        keys.setdefault(a.public_key, a.id)


def _check_rollout(out: _Collected, known: frozenset[str]) -> list[Problem]:
    """fleet.yaml ``rollout.waves`` name jurisdictions of the fleet, each at most once."""
    if out.settings is None or out.settings.rollout is None or out.settings_doc is None:
        return []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, wave in enumerate(out.settings.rollout.waves):
        for k, j in enumerate(wave):
            field = f"rollout.waves[{i}][{k}]"
            if j not in known:
                problems.append(
                    out.settings_doc.problem(
                        field,
                        f"'{j}' is not a jurisdiction of the fleet; a wave lists jurisdiction "
                        f"ids: {', '.join(sorted(known)) or 'none declared'}",
                    )
                )
            elif j in seen:
                problems.append(
                    out.settings_doc.problem(
                        field,
                        f"'{j}' is already in wave {seen[j] + 1}; a jurisdiction belongs to at "
                        "most one wave (the unlisted ones form a last wave)",
                    )
                )
            else:
                seen[j] = i
    return problems


def _cross_check(out: _Collected) -> None:
    catalog_models: dict[str, str] | None = None
    if out.catalog is not None:
        catalog_models = {m.id: m.origin for m in out.catalog.models}
    out.problems.extend(
        check_profiles(
            out.profiles,
            None
            if out.catalog_unusable and not out.shadow_models
            else {**{m: "" for m in out.shadow_models}, **(catalog_models or {})},
            shadow_jurisdictions=frozenset(out.shadow_jurisdictions),
            shadow_sites=frozenset(out.shadow_sites),
            shadow_models=frozenset(out.shadow_models),
        )
    )
    known_j = frozenset({p.value.jurisdiction for p in out.profiles} | out.shadow_jurisdictions)
    out.problems.extend(_check_rollout(out, known_j))
    if out.catalog is not None and out.catalog_doc is not None:
        out.problems.extend(
            check_catalog(out.catalog_doc, [(m.id, m.origin) for m in out.catalog.models], known_j)
        )

    ctx = context_from_profiles(
        out.profiles,
        catalog_models or {},
        shadow_jurisdictions=out.shadow_jurisdictions,
        shadow_models=out.shadow_models,
    )
    # An unusable catalog must not turn every directive's model list into an error.
    if out.catalog_unusable and not out.shadow_models:
        ctx.shadow_models = frozenset(m for d in out.directives for m in d.value.models or ())
    first: dict[str, ParsedDirective] = {}
    for d in out.directives:
        if d.value.id in first:
            out.problems.append(
                d.doc.problem(
                    "id",
                    f"directive id '{d.value.id}' is already used by {first[d.value.id].doc.file}; "
                    "directive ids are unique",
                )
            )
        else:
            first[d.value.id] = d
    ctx.existing = {i: d.value.jurisdiction for i, d in first.items()}
    ctx.shadow_directives = frozenset(out.shadow_directives)
    for d in out.directives:
        problems, signers = check_directive(d, ctx)
        out.problems.extend(problems)
        out.signers[d.rel] = signers
    out.problems.extend(check_supersede_cycles(list(first.values())))
