"""Rules that relate one fleet file to another: ids, references, countries, regions, directives.

``fleet.schema`` checks each file on its own; this module checks that the files make one
coherent fleet (docs/fleet-format.md): ids are unique, every reference resolves, a country belongs
to at most one profile, cloud regions exist and lie in the declared country, directives are well
scoped and carry enough valid signatures. Every problem is located (file, line, field path) and says
what would be valid. Nothing stops at the first problem: the user fixes everything in one round.

Names that appear in a file that failed schema validation are collected as *shadows*, so that a
single typo in one profile does not cascade into "unknown jurisdiction" errors everywhere else.

Over 400 lines on purpose: one short, independent check per rule of docs/fleet-format.md; kept
together so that the rules read in the order the page gives them.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.errors import Problem
from orchestrator.fleet.countries import is_country, suggest_country
from orchestrator.fleet.model import ALL_MODELS
from orchestrator.fleet.regions import known_regions, region_country
from orchestrator.fleet.schema import DirectiveDoc, ProfileDoc
from orchestrator.fleet.signing import verify_signatures
from orchestrator.fleet.yamlsource import Document

MAX_LISTED = 12  # list valid names in a message when there are at most this many


def valid_names(names: Iterable[str], what: str = "valid", near: str | None = None) -> str:
    """ "valid: A, B, C" for short lists, a count otherwise, "none declared" when empty; with
    ``near``, the closest names first ("did you mean ...?"), because typos are the usual cause.
    """
    ordered = sorted(set(names))
    if not ordered:
        return f"{what}: none declared"
    close = difflib.get_close_matches(near, ordered, n=3, cutoff=0.75) if near else []
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    if len(ordered) <= MAX_LISTED:
        return f"{guess}{what}: {', '.join(ordered)}"
    return (
        f"{guess}{what}: one of {len(ordered)} names, e.g. {', '.join(ordered[:MAX_LISTED])}, ..."
    )


@dataclass(frozen=True)
class ParsedProfile:
    doc: Document
    value: ProfileDoc
    rel: str  # path relative to the fleet root


@dataclass(frozen=True)
class ParsedDirective:
    doc: Document
    value: DirectiveDoc
    rel: str
    raw: bytes
    sig_file: str  # as shown to the user
    sig: bytes | None  # None: no .sig file


@dataclass
class DirectiveContext:
    """What a directive is checked against: the fleet's profiles and catalog, in light form."""

    countries: Mapping[str, frozenset[str]]  # jurisdiction id -> its countries
    authorities: Mapping[str, Mapping[str, bytes]]  # jurisdiction id -> authority id -> key
    thresholds: Mapping[str, int]
    models: frozenset[str]
    # jurisdiction id -> directive_threshold exactly as its profile writes it (rotations)
    profile_thresholds: Mapping[str, int] = field(default_factory=dict)
    existing: Mapping[str, str] = field(default_factory=dict)  # directive id -> jurisdiction
    shadow_jurisdictions: frozenset[str] = frozenset()
    shadow_models: frozenset[str] = frozenset()
    shadow_directives: frozenset[str] = frozenset()


def _decode_key(encoded: str) -> bytes | None:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def context_from_profiles(
    profiles: Iterable[ParsedProfile],
    models: Iterable[str],
    *,
    shadow_jurisdictions: Iterable[str] = (),
    shadow_models: Iterable[str] = (),
) -> DirectiveContext:
    countries: dict[str, frozenset[str]] = {}
    authorities: dict[str, dict[str, bytes]] = {}
    thresholds: dict[str, int] = {}
    written: dict[str, int] = {}
    for p in profiles:
        j = p.value.jurisdiction
        countries.setdefault(j, frozenset(p.value.countries))
        keys = authorities.setdefault(j, {})
        for a in p.value.authorities:
            raw = _decode_key(a.public_key)
            if raw is not None:
                keys.setdefault(a.id, raw)
        # An impossible threshold is reported on the profile; clamping it here keeps that one
        # mistake from being repeated on every directive of the jurisdiction.
        thresholds.setdefault(
            j, min(max(p.value.directive_threshold, 1), max(len(p.value.authorities), 1))
        )
        written.setdefault(j, p.value.directive_threshold)
    return DirectiveContext(
        countries=countries,
        authorities=authorities,
        thresholds=thresholds,
        profile_thresholds=written,
        models=frozenset(models),
        shadow_jurisdictions=frozenset(shadow_jurisdictions),
        shadow_models=frozenset(shadow_models),
    )


def duplicate_key_problems(profiles: Iterable[ParsedProfile]) -> list[Problem]:
    """Two authority ids with one public key, anywhere in the fleet: a threshold counts
    distinct keys, so one key under two names would meet a two-person rule alone."""
    problems: list[Problem] = []
    first: dict[bytes, tuple[str, str]] = {}  # raw key -> (authority id, profile file)
    for p in profiles:
        for i, a in enumerate(p.value.authorities):
            raw = _decode_key(a.public_key)
            if raw is None:
                continue
            seen = first.get(raw)
            if seen is None:
                first[raw] = (a.id, p.doc.file)
                continue
            problems.append(
                p.doc.problem(
                    f"authorities[{i}].public_key",
                    f"authority '{a.id}' has the same public key as '{seen[0]}' ({seen[1]}): "
                    "each authority needs its own key (a threshold counts distinct keys); "
                    "make one with `sovereign keygen`",
                )
            )
    return problems


def check_profiles(
    profiles: list[ParsedProfile],
    catalog_models: Mapping[str, str] | None,
    *,
    shadow_jurisdictions: frozenset[str] = frozenset(),
    shadow_sites: frozenset[str] = frozenset(),
    shadow_models: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Cross-checks over the region profiles (``catalog_models``: model id -> origin, or None
    when the catalog itself is unusable, in which case model references are not checked)."""
    problems: list[Problem] = []
    jurisdictions: dict[str, ParsedProfile] = {}
    for p in profiles:
        j = p.value.jurisdiction
        if j in jurisdictions:
            problems.append(
                p.doc.problem(
                    "jurisdiction",
                    f"jurisdiction '{j}' is already declared by {jurisdictions[j].doc.file}; "
                    "each jurisdiction has exactly one profile",
                )
            )
        else:
            jurisdictions[j] = p
    known_j = set(jurisdictions) | shadow_jurisdictions

    sites: dict[str, ParsedProfile] = {}
    country_owner: dict[str, ParsedProfile] = {}
    for p in profiles:
        for i, s in enumerate(p.value.sites):
            if s.id in sites:
                problems.append(
                    p.doc.problem(
                        f"sites[{i}].id",
                        f"site id '{s.id}' is already used in {sites[s.id].doc.file}; site ids are "
                        "unique across the fleet",
                    )
                )
            else:
                sites[s.id] = p
        for i, c in enumerate(p.value.countries):
            owner = country_owner.get(c)
            if owner is None:
                country_owner[c] = p
            elif owner is not p:
                problems.append(
                    p.doc.problem(
                        f"countries[{i}]",
                        f"country {c} is already in jurisdiction {owner.value.jurisdiction} "
                        f"({owner.doc.file}); a country belongs to at most one profile",
                    )
                )
    known_sites = set(sites) | shadow_sites

    def unknown_j(doc: Document, path: str, ref: str, what: str) -> None:
        if ref not in known_j:
            problems.append(
                doc.problem(
                    path,
                    f"{what} '{ref}' is not a jurisdiction of the fleet "
                    f"({valid_names(known_j, near=ref)})",
                )
            )

    problems.extend(duplicate_key_problems(profiles))
    for p in profiles:
        v, doc = p.value, p.doc
        seen_auth: set[str] = set()
        for i, a in enumerate(v.authorities):
            if a.id in seen_auth:
                problems.append(
                    doc.problem(
                        f"authorities[{i}].id",
                        f"authority id '{a.id}' appears twice in this profile; ids are unique "
                        "within a profile",
                    )
                )
            seen_auth.add(a.id)
        n_auth = len(v.authorities)
        if not 1 <= v.directive_threshold <= max(n_auth, 1) or n_auth == 0:
            if n_auth == 0:
                msg = (
                    "no authorities declared: add at least one under 'authorities' "
                    "(id and public_key; `sovereign keygen` makes one) so that directive_"
                    f"threshold {v.directive_threshold} can be met"
                )
                path = "authorities" if "authorities" in doc.lines else "jurisdiction"
            else:
                msg = (
                    f"directive_threshold must be between 1 and the number of authorities "
                    f"({n_auth}), got {v.directive_threshold}"
                )
                path = "directive_threshold"
            problems.append(doc.problem(path, msg))
        for i, ref in enumerate(v.residency.process_in):
            unknown_j(doc, f"residency.process_in[{i}]", ref, "process_in entry")
        for label, targets in v.export.items():
            for i, ref in enumerate(targets):
                unknown_j(doc, f"export.{label}[{i}]", ref, "export target")
        if catalog_models is not None:
            known_m = set(catalog_models) | shadow_models
            for i, m in enumerate(v.models):
                if m not in known_m:
                    problems.append(
                        doc.problem(
                            f"models[{i}]",
                            f"model '{m}' is not in the catalog (models.yaml; "
                            f"{valid_names(known_m, near=m)})",
                        )
                    )
        for i, s in enumerate(v.sites):
            base = f"sites[{i}]"
            for k, ref in enumerate(s.governed_by):
                unknown_j(doc, f"{base}.governed_by[{k}]", ref, "governed_by entry")
            regions = known_regions(s.provider)
            if regions is not None and s.region not in regions:
                problems.append(
                    doc.problem(
                        f"{base}.region",
                        f"'{s.region}' is not a region of {s.provider} "
                        f"({valid_names(regions, near=s.region)})",
                    )
                )
            else:
                expected = region_country(s.provider, s.region)
                if expected is not None and expected != s.country:
                    problems.append(
                        doc.problem(
                            f"{base}.country",
                            f"{s.provider} region {s.region} is in {expected}, but the site says "
                            f"{s.country}; set country: {expected} or pick a region in {s.country}",
                        )
                    )
        seen_fail: set[str] = set()
        for i, ref in enumerate(v.failover):
            if ref in seen_fail:
                problems.append(
                    doc.problem(
                        f"failover[{i}]", f"site '{ref}' is listed twice; name each site once"
                    )
                )
            seen_fail.add(ref)
            if ref not in known_sites:
                problems.append(
                    doc.problem(
                        f"failover[{i}]",
                        f"'{ref}' is not a site of the fleet "
                        f"({valid_names(known_sites, near=ref)})",
                    )
                )
    return problems


def check_catalog(
    doc: Document,
    models: list[tuple[str, str]],
    known_jurisdictions: frozenset[str],
) -> list[Problem]:
    """``models``: (id, origin) in file order."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, (model_id, origin) in enumerate(models):
        if model_id in seen:
            problems.append(
                doc.problem(
                    f"models[{i}].id", f"model id '{model_id}' appears twice; ids are unique"
                )
            )
        seen.add(model_id)
        if origin not in known_jurisdictions:
            problems.append(
                doc.problem(
                    f"models[{i}].origin",
                    f"origin '{origin}' is not a jurisdiction of the fleet "
                    f"({valid_names(known_jurisdictions)})",
                )
            )
    return problems


def _audience_entry_problem(entry: str, ctx: DirectiveContext) -> str | None:
    if entry in ctx.countries or entry in ctx.shadow_jurisdictions or is_country(entry):
        return None
    suggestion = suggest_country(entry, ctx.countries)
    return (
        f"'{entry}' is neither a jurisdiction of the fleet "
        f"({valid_names(ctx.countries)}) nor an ISO 3166-1 alpha-2 country code "
        "(e.g. DE, US)" + (f"; did you mean {suggestion}?" if suggestion else "")
    )


def check_directive(
    d: ParsedDirective, ctx: DirectiveContext, *, require_signature: bool = True
) -> tuple[list[Problem], tuple[str, ...]]:
    """Problems of one directive against the fleet, and the authorities whose signature verified."""
    problems: list[Problem] = []
    v, doc = d.value, d.doc
    jurisdiction_known = v.jurisdiction in ctx.countries
    if not jurisdiction_known and v.jurisdiction not in ctx.shadow_jurisdictions:
        problems.append(
            doc.problem(
                "jurisdiction",
                f"'{v.jurisdiction}' is not a jurisdiction of the fleet "
                f"({valid_names(ctx.countries)})",
            )
        )
    own_keys = ctx.authorities.get(v.jurisdiction, {})
    if jurisdiction_known and v.issuer not in own_keys:
        problems.append(
            doc.problem(
                "issuer",
                f"'{v.issuer}' is not an authority of {v.jurisdiction} ({valid_names(own_keys)})",
            )
        )
    problems.extend(_rotation_problems(d, ctx))
    if v.action == "rotate":
        pass  # _rotation_problems: a rotation names no model
    elif v.action == "lift":
        for key, value in (("models", v.models), ("audience", v.audience)):
            if value is not None:
                problems.append(
                    doc.problem(
                        key,
                        f"a lift names only what it supersedes and changes nothing else; "
                        f"remove '{key}' (or use action: suspend or withdraw)",
                    )
                )
        if v.supersedes is None:
            problems.append(
                doc.problem(
                    "action",
                    "a lift must name the directive it lifts: add 'supersedes: ID' (a directive "
                    f"of {v.jurisdiction} in this fleet)",
                )
            )
    elif v.models is None:
        problems.append(
            doc.problem(
                "models",
                f"required field is missing: a {v.action} names the models it applies to "
                f"(a list of model ids, or ['{ALL_MODELS}'])",
            )
        )
    known_models = ctx.models | ctx.shadow_models
    for i, m in enumerate(v.models or ()):
        if m != ALL_MODELS and m not in known_models:
            problems.append(
                doc.problem(
                    f"models[{i}]",
                    f"model '{m}' is not in the catalog ({valid_names(known_models, near=m)}, "
                    f"or '{ALL_MODELS}' for every model)",
                )
            )
    if v.action == "withdraw" and v.audience is not None:
        problems.append(
            doc.problem(
                "audience",
                "a withdraw has no audience (it removes the model for everyone); remove "
                "'audience' or use action: suspend",
            )
        )
    if v.audience is not None:
        for name in ("nationality_in", "nationality_not_in", "residency_in", "residency_not_in"):
            entries = getattr(v.audience, name)
            for i, entry in enumerate(entries or ()):
                why = _audience_entry_problem(entry, ctx)
                if why:
                    problems.append(doc.problem(f"audience.{name}[{i}]", why))
    if v.expires is not None and v.expires <= v.effective:
        problems.append(
            doc.problem(
                "expires",
                f"expires ({v.expires.isoformat()}) must be later than effective "
                f"({v.effective.isoformat()})",
            )
        )
    if v.supersedes is not None:
        target = ctx.existing.get(v.supersedes)
        if v.supersedes == v.id:
            problems.append(doc.problem("supersedes", "a directive cannot supersede itself"))
        elif target is None:
            if v.supersedes not in ctx.shadow_directives:
                same = sorted(
                    i for i, j in ctx.existing.items() if j == v.jurisdiction and i != v.id
                )
                problems.append(
                    doc.problem(
                        "supersedes",
                        f"'{v.supersedes}' is not a directive of the fleet "
                        f"({valid_names(same, 'directives of ' + v.jurisdiction)})",
                    )
                )
        elif target != v.jurisdiction:
            problems.append(
                doc.problem(
                    "supersedes",
                    f"'{v.supersedes}' belongs to jurisdiction {target}; a directive can only "
                    f"supersede one of its own jurisdiction ({v.jurisdiction})",
                )
            )

    signers: tuple[str, ...] = ()
    if not jurisdiction_known:
        return problems, signers
    if d.sig is None:
        if require_signature:
            problems.append(
                Problem(
                    d.sig_file,
                    None,
                    "",
                    f"missing signature file for {doc.file}; sign it with `sovereign directive "
                    f"sign {doc.file} --key KEYFILE --authority ID` "
                    f"({valid_names(own_keys, 'authorities of ' + v.jurisdiction)})",
                )
            )
        return problems, signers
    others = {a: j for j, keys in ctx.authorities.items() if j != v.jurisdiction for a in keys}
    result = verify_signatures(d.raw, d.sig, own_keys, others)
    for lp in result.problems:
        problems.append(Problem(d.sig_file, lp.line, "", lp.message))
    signers = result.signers
    threshold = ctx.thresholds.get(v.jurisdiction, 1)
    if len(signers) < threshold:
        got = ", ".join(signers) or "none"
        problems.append(
            Problem(
                d.sig_file,
                None,
                "",
                f"{len(signers)} valid signature(s) (verified: {got}); {v.jurisdiction} requires "
                f"{threshold} from distinct authorities "
                f"({valid_names(own_keys, 'authorities')})",
            )
        )
    elif v.issuer in own_keys and v.issuer not in signers:
        problems.append(
            Problem(
                d.sig_file,
                None,
                "",
                f"the issuer '{v.issuer}' has not signed; a directive must carry its issuer's "
                f"signature (verified: {', '.join(signers)})",
            )
        )
    return problems, signers


def _rotation_problems(d: ParsedDirective, ctx: DirectiveContext) -> list[Problem]:
    """A rotation carries exactly the authority set its jurisdiction's profile now lists, and
    nothing else; other actions carry no authority set."""
    v, doc = d.value, d.doc
    problems: list[Problem] = []
    if v.action != "rotate":
        for key, value in (
            ("authorities", v.authorities),
            ("directive_threshold", v.directive_threshold),
        ):
            if value is not None:
                problems.append(
                    doc.problem(
                        key,
                        f"only a rotation carries '{key}' (action: rotate); remove it from this "
                        f"{v.action}",
                    )
                )
        return problems
    carried_extra: tuple[tuple[str, object], ...] = (
        ("models", v.models),
        ("audience", v.audience),
        ("supersedes", v.supersedes),
        ("expires", v.expires),
    )
    for key, extra in carried_extra:
        if extra is not None:
            problems.append(
                doc.problem(
                    key,
                    f"a rotation changes only who speaks for {v.jurisdiction}; remove '{key}'",
                )
            )
    if v.authorities is None or v.directive_threshold is None:
        missing = "authorities" if v.authorities is None else "directive_threshold"
        problems.append(
            doc.problem(
                "action",
                f"a rotation carries the new set: add '{missing}' exactly as "
                f"{v.jurisdiction}'s profile now lists it",
            )
        )
        return problems
    if v.jurisdiction not in ctx.countries:
        return problems
    carried = {a.id: _decode_key(a.public_key) for a in v.authorities}
    listed = dict(ctx.authorities.get(v.jurisdiction, {}))
    threshold = ctx.profile_thresholds.get(v.jurisdiction)
    if carried != listed or len(carried) != len(v.authorities):
        problems.append(
            doc.problem(
                "authorities",
                f"the rotation's authorities ({', '.join(sorted(carried)) or 'none'}) are not "
                f"exactly those {v.jurisdiction}'s profile lists "
                f"({', '.join(sorted(listed)) or 'none'}, with the same public keys): a "
                "rotation carries the new set exactly as the profile now lists it",
            )
        )
    if threshold is not None and v.directive_threshold != threshold:
        problems.append(
            doc.problem(
                "directive_threshold",
                f"the rotation's directive_threshold {v.directive_threshold} is not the "
                f"profile's ({threshold})",
            )
        )
    return problems


def check_supersede_cycles(directives: list[ParsedDirective]) -> list[Problem]:
    """A chain of ``supersedes`` must end; a cycle would make every member replace another."""
    by_id = {d.value.id: d for d in directives}
    problems: list[Problem] = []
    reported: set[str] = set()
    for d in directives:
        chain = [d.value.id]
        current = d.value.supersedes
        while current is not None and current in by_id:
            if current in chain:
                cycle = chain[chain.index(current) :]
                # a self-reference is reported by check_directive already
                if len(cycle) > 1 and not reported.intersection(cycle):
                    reported.update(cycle)
                    head = by_id[cycle[0]]
                    problems.append(
                        head.doc.problem(
                            "supersedes",
                            "supersedes forms a cycle: "
                            + " -> ".join([*cycle, current])
                            + "; a replacement must point to an earlier directive",
                        )
                    )
                break
            chain.append(current)
            current = by_id[current].value.supersedes
    return problems
