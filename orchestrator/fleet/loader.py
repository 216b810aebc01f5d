"""Load a fleet directory (or the same files from memory) into frozen, validated values.

This is the only way a ``Fleet`` is made from files. It reads every file the fleet consists of,
parses each YAML with line tracking, validates it with the strict pydantic schema, runs the
cross-file checks and verifies every directive's signatures. It collects *every* problem before
giving up, then raises one ``FleetError`` carrying them all (sorted by file and line). A fleet
with any problem is never returned: an invalid directive is never ignored or half-applied.

Layout (SPEC 1), paths relative to the fleet root:

    models.yaml              the model catalog (required)
    fleet.yaml               fleet-wide settings (optional)
    <anything>.yaml          one region profile each
    directives/NAME.yaml     a directive, signed by directives/NAME.yaml.sig

``.yml`` is accepted wherever ``.yaml`` is. Hidden files and other directories are not part of
the fleet (the default state store lives in ``.sovereign/`` inside it).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchestrator.errors import FleetError, Problem
from orchestrator.fleet.checks import (
    DirectiveContext,
    ParsedDirective,
    ParsedProfile,
    check_catalog,
    check_directive,
    check_profiles,
    check_supersede_cycles,
    context_from_profiles,
)
from orchestrator.fleet.model import (
    EVERYONE,
    Action,
    Audience,
    Authority,
    Directive,
    DnsSettings,
    Fleet,
    FleetSettings,
    Jurisdiction,
    Model,
    Site,
    Unlisted,
)
from orchestrator.fleet.schema import (
    AudienceDoc,
    CatalogDoc,
    DirectiveDoc,
    FleetSettingsDoc,
    ProfileDoc,
)
from orchestrator.fleet.signing import SIGNATURE_SUFFIX
from orchestrator.fleet.yamlsource import Document, format_path, parse_yaml

__all__ = [
    "DirectiveReport",
    "fleet_digest",
    "inspect_directive_file",
    "load_directive_file",
    "load_fleet",
    "load_fleet_files",
    "read_fleet_files",
]

YAML_SUFFIXES = (".yaml", ".yml")
CATALOG_NAMES = ("models.yaml", "models.yml")
SETTINGS_NAMES = ("fleet.yaml", "fleet.yml")
DIRECTIVES_DIR = "directives"

_M = TypeVar("_M", bound=BaseModel)


# ---------------------------------------------------------------- reading files


def read_fleet_files(root: Path) -> dict[str, bytes]:
    """Every file the fleet consists of: fleet-relative posix path -> exact bytes."""
    if not root.is_dir():
        raise FleetError(
            [
                Problem(
                    str(root),
                    None,
                    "",
                    "fleet directory not found; pass --fleet DIR (a directory with region "
                    "profiles, models.yaml and directives/)",
                )
            ]
        )
    files: dict[str, bytes] = {}
    problems: list[Problem] = []

    def take(path: Path, rel: str) -> None:
        try:
            files[rel] = path.read_bytes()
        except OSError as exc:
            problems.append(Problem(f"{root}/{rel}", None, "", f"cannot read: {exc.strerror}"))

    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix in YAML_SUFFIXES:
            take(path, path.name)
    directives = root / DIRECTIVES_DIR
    if directives.is_dir():
        for path in sorted(directives.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix in (*YAML_SUFFIXES, SIGNATURE_SUFFIX):
                take(path, f"{DIRECTIVES_DIR}/{path.name}")
    if problems:
        raise FleetError(problems)
    return files


def fleet_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over the sorted (path, sha256(bytes)) pairs: names exactly what was loaded."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode("utf-8"))
        h.update(b"\0")
        h.update(hashlib.sha256(files[rel]).hexdigest().encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


def load_fleet(root: Path) -> Fleet:
    """Load and validate the fleet in ``root``; FleetError lists every problem found."""
    return load_fleet_files(read_fleet_files(root), label=str(root))


# ---------------------------------------------------------------- schema validation


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the model found by following ``loc`` from ``cls`` (for 'unknown key')."""
    current: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = _model_in(fields[part].annotation)
        if current is None:
            return None
    return list(getattr(current, "model_fields", {}) or []) or None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
    return kind


def validate_doc(doc: Document, cls: type[_M]) -> tuple[_M | None, list[Problem]]:
    """Validate a parsed document against a schema class; map every error to file:line."""
    try:
        return cls.model_validate(doc.data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if p != "[key]")
            path = format_path(loc)
            kind = err["type"]
            if kind == "missing":
                parent = format_path(loc[:-1])
                problems.append(
                    Problem(doc.file, doc.line_of(parent), path, "required field is missing")
                )
                continue
            if kind == "extra_forbidden":
                valid = _fields_at(cls, loc[:-1])
                hint = f"; valid keys here: {', '.join(valid)}" if valid else ""
                problems.append(
                    Problem(doc.file, doc.line_of(path), path, f"unknown key '{loc[-1]}'{hint}")
                )
                continue
            message = str(err["msg"]).removeprefix("Value error, ")
            if kind.endswith("_type") or kind == "model_type":
                message = f"{message} (got {_describe(err.get('input'))})"
            problems.append(Problem(doc.file, doc.line_of(path), path, message))
        return None, problems


def _raw_str(data: object, key: str) -> str | None:
    if isinstance(data, dict):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return None


def _raw_ids(data: object, list_key: str) -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict) and isinstance(data.get(list_key), list):
        for item in data[list_key]:
            ident = _raw_str(item, "id")
            if ident is not None:
                out.add(ident)
    return out


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
        else:
            out.problems.append(
                Problem(
                    f"{label}/{rel}",
                    None,
                    "",
                    "not part of the fleet layout: region profiles and models.yaml/fleet.yaml at "
                    "the top, directives and their .sig files in directives/",
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
                out.shadow_models |= _raw_ids(doc.data, "models")
        if out.catalog is None:
            out.catalog_unusable = True

    if settings_rel is not None:
        doc = _parse(label, settings_rel, files[settings_rel], out)
        if doc is not None:
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
            continue
        profile, problems = validate_doc(doc, ProfileDoc)
        out.problems.extend(problems)
        if profile is not None:
            out.profiles.append(ParsedProfile(doc, profile, rel))
        else:
            ident = _raw_str(doc.data, "jurisdiction")
            if ident is not None:
                out.shadow_jurisdictions.add(ident)
            out.shadow_sites |= _raw_ids(doc.data, "sites")

    for rel in directive_rels:
        sig_rel = rel + SIGNATURE_SUFFIX
        doc = _parse(label, rel, files[rel], out)
        if doc is None:
            continue
        directive, problems = validate_doc(doc, DirectiveDoc)
        out.problems.extend(problems)
        if directive is None:
            ident = _raw_str(doc.data, "id")
            if ident is not None:
                out.shadow_directives.add(ident)
            continue
        out.directives.append(
            ParsedDirective(
                doc, directive, rel, files[rel], f"{label}/{sig_rel}", files.get(sig_rel)
            )
        )
    for sig_rel in sorted(sig_rels):
        if sig_rel.removesuffix(SIGNATURE_SUFFIX) not in files:
            out.problems.append(
                Problem(
                    f"{label}/{sig_rel}",
                    None,
                    "",
                    f"signature file without a directive (expected "
                    f"{label}/{sig_rel.removesuffix(SIGNATURE_SUFFIX)}); remove it or restore the "
                    "directive",
                )
            )

    _cross_check(out)
    if out.problems:
        raise FleetError(sorted(out.problems, key=_problem_order))
    return _build(out, files)


def _problem_order(p: Problem) -> tuple[str, int, str]:
    return (p.file, p.line or 0, p.field)


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
        ctx.shadow_models = frozenset(m for d in out.directives for m in d.value.models)
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


# ---------------------------------------------------------------- building values


def _expand(
    entries: list[str] | None, countries: Mapping[str, frozenset[str]]
) -> frozenset[str] | None:
    if entries is None:
        return None
    out: set[str] = set()
    for entry in entries:
        out |= countries.get(entry, frozenset({entry}))
    return frozenset(out)


def build_audience(
    doc: AudienceDoc | None, action: str, countries: Mapping[str, frozenset[str]]
) -> Audience:
    """The frozen audience with jurisdiction ids expanded to their countries."""
    if doc is None or action == Action.WITHDRAW:
        return EVERYONE
    return Audience(
        nationality_in=_expand(doc.nationality_in, countries),
        nationality_not_in=_expand(doc.nationality_not_in, countries),
        residency_in=_expand(doc.residency_in, countries),
        residency_not_in=_expand(doc.residency_not_in, countries),
        except_groups=frozenset(doc.except_groups),
    )


def build_directive(
    d: ParsedDirective, countries: Mapping[str, frozenset[str]], signers: tuple[str, ...]
) -> Directive:
    v = d.value
    return Directive(
        id=v.id,
        jurisdiction=v.jurisdiction,
        issuer=v.issuer,
        reference=v.reference,
        action=Action(v.action),
        models=frozenset(v.models),
        audience=build_audience(v.audience, v.action, countries),
        effective=v.effective,
        expires=v.expires,
        supersedes=v.supersedes,
        source=d.rel,
        sha256=hashlib.sha256(d.raw).hexdigest(),
        signers=signers,
    )


def _build(out: _Collected, files: Mapping[str, bytes]) -> Fleet:
    assert out.catalog is not None  # guaranteed: a missing catalog is a problem
    jurisdictions: dict[str, Jurisdiction] = {}
    sites: dict[str, Site] = {}
    for p in out.profiles:
        v = p.value
        for s in v.sites:
            sites[s.id] = Site(
                id=s.id,
                jurisdiction=v.jurisdiction,
                provider=s.provider,
                region=s.region,
                country=s.country,
                operator=s.operator,
                governed_by=frozenset(s.governed_by),
                governing=frozenset({v.jurisdiction, *s.governed_by}),
                capacity=s.capacity,
                endpoint=s.endpoint,
                instance_type=s.instance_type,
                instance_count=s.instance_count,
            )
        jurisdictions[v.jurisdiction] = Jurisdiction(
            id=v.jurisdiction,
            name=v.name,
            countries=frozenset(v.countries),
            authorities=tuple(Authority(a.id, _b64(a.public_key)) for a in v.authorities),
            directive_threshold=v.directive_threshold,
            process_in=frozenset(v.residency.process_in),
            export={k: frozenset(t) for k, t in v.export.items()},
            models=frozenset(v.models),
            sites=tuple(s.id for s in v.sites),
            failover=tuple(v.failover),
            min_sites_per_model=v.guarantees.min_sites_per_model,
            source=p.rel,
        )
    models = {m.id: Model(m.id, m.origin, m.export_control, m.artifact) for m in out.catalog.models}
    countries = {j.id: j.countries for j in jurisdictions.values()}
    directives = {
        d.value.id: build_directive(d, countries, out.signers.get(d.rel, ()))
        for d in out.directives
    }
    fs = out.settings or FleetSettingsDoc()
    settings = FleetSettings(
        unlisted_countries=Unlisted(fs.unlisted_countries),
        dns=DnsSettings(fs.dns.hosted_zone_id, fs.dns.domain) if fs.dns else None,
    )
    return Fleet(
        jurisdictions=jurisdictions,
        sites=sites,
        models=models,
        directives=directives,
        settings=settings,
        digest=fleet_digest(files),
    )


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# ---------------------------------------------------------------- one directive


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
        raw = path.read_bytes()
    except OSError as exc:
        problem = Problem(label, None, "", f"cannot read: {exc.strerror}")
        return DirectiveReport(None, (problem,), None, (), None)
    sig_path = path.with_name(path.name + SIGNATURE_SUFFIX)
    sig: bytes | None = None
    if sig_path.is_file():
        try:
            sig = sig_path.read_bytes()
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
            tuple(sorted(problems, key=_problem_order)),
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
