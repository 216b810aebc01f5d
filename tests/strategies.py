"""Hypothesis strategies that generate valid ``Fleet`` values, principals and instants.

Fleets are built directly as frozen core values (no YAML), small enough for exhaustive checks
per example but covering every feature the rules look at: shared and foreign processing,
export lists, ``governed_by``, failover lists, unlisted countries (deny and any), suspend and
withdraw directives with every audience predicate, ``*`` models, expiry and supersession.
Other areas may reuse ``fleets()``, ``principals()`` and ``instants()``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from orchestrator.fleet.model import (
    ALL_MODELS,
    Action,
    Audience,
    Directive,
    Fleet,
    FleetSettings,
    Jurisdiction,
    Model,
    Site,
    Unlisted,
)
from orchestrator.policy.principal import Principal

JURISDICTION_IDS = ("US", "EU", "UK", "JP")
# Countries a jurisdiction may declare; ZZ and MX are never declared (always unlisted).
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "IN", "BR")
UNLISTED = ("ZZ", "MX")
ALL_COUNTRIES = COUNTRIES + UNLISTED
GROUPS = ("partners", "staff")
BASE = datetime(2026, 6, 1, tzinfo=UTC)
# Directive instants are drawn from a small grid so that boundaries coincide often.
GRID = tuple(BASE + timedelta(days=d) for d in range(0, 12, 2))


def instants() -> st.SearchStrategy[datetime]:
    """Instants around and exactly at the directive grid (before, on, between, after)."""
    offsets = st.sampled_from([-1, 0, 1, 2, 3, 5, 7, 9, 10, 11, 12, 14])
    exact = st.sampled_from(GRID)
    near = st.builds(
        lambda g, s: g + timedelta(seconds=s), exact, st.sampled_from([-1, 1, 3600])
    )
    return st.one_of(st.builds(lambda d: BASE + timedelta(days=d), offsets), exact, near)


def principals(countries: tuple[str, ...] = ALL_COUNTRIES) -> st.SearchStrategy[Principal]:
    return st.builds(
        Principal,
        st.sampled_from(countries),
        st.frozensets(st.sampled_from(countries), max_size=2),
        st.frozensets(st.sampled_from(GROUPS), max_size=2),
    )


def _country_sets() -> st.SearchStrategy[frozenset[str] | None]:
    return st.none() | st.frozensets(st.sampled_from(ALL_COUNTRIES), min_size=1, max_size=3)


@st.composite
def audiences(draw: st.DrawFn) -> Audience:
    return Audience(
        nationality_in=draw(_country_sets()),
        nationality_not_in=draw(_country_sets()),
        residency_in=draw(_country_sets()),
        residency_not_in=draw(_country_sets()),
        except_groups=draw(st.frozensets(st.sampled_from(GROUPS), max_size=2)),
    )


@st.composite
def directives(
    draw: st.DrawFn,
    jurisdictions: tuple[str, ...],
    models: tuple[str, ...],
    did: str,
    earlier: tuple[Directive, ...] = (),
) -> Directive:
    """One directive; it may supersede an earlier one of the same jurisdiction."""
    jurisdiction = draw(st.sampled_from(jurisdictions))
    action = draw(st.sampled_from([Action.SUSPEND, Action.SUSPEND, Action.WITHDRAW]))
    named = draw(
        st.just(frozenset({ALL_MODELS}))
        | st.frozensets(st.sampled_from(models), min_size=1, max_size=len(models))
    )
    effective = draw(st.sampled_from(GRID))
    expires = draw(st.none() | st.sampled_from([g for g in GRID if g > effective] or [None]))
    same = [d.id for d in earlier if d.jurisdiction == jurisdiction]
    supersedes = draw(st.none() | st.sampled_from(same)) if same else None
    audience = draw(audiences()) if action is Action.SUSPEND else Audience()
    return Directive(
        id=did,
        jurisdiction=jurisdiction,
        issuer=f"{jurisdiction.lower()}-authority",
        reference=f"directive {did}",
        action=action,
        models=named,
        audience=audience,
        effective=effective,
        expires=expires,
        supersedes=supersedes,
        source=f"directives/{did}.yaml",
        sha256="0" * 64,
    )


@st.composite
def fleets(draw: st.DrawFn, max_directives: int = 4) -> Fleet:
    """A valid fleet: 1-4 jurisdictions, 1-3 sites each, 1-3 models, 0-N directives."""
    jids = tuple(
        draw(
            st.lists(st.sampled_from(JURISDICTION_IDS), min_size=1, max_size=4, unique=True)
        )
    )
    # Disjoint country sets: each country goes to at most one jurisdiction.
    owners = draw(
        st.lists(st.sampled_from((None, *jids)), min_size=len(COUNTRIES), max_size=len(COUNTRIES))
    )
    countries = {
        j: frozenset(c for c, o in zip(COUNTRIES, owners, strict=True) if o == j) for j in jids
    }
    model_ids = tuple(f"m{i}" for i in range(draw(st.integers(1, 3))))
    models = {
        m: Model(
            id=m,
            origin=draw(st.sampled_from(jids)),
            export_control=draw(st.sampled_from(["open", "restricted", "restricted"])),
            artifact=f"s3://models/{m}/",
        )
        for m in model_ids
    }
    sites: dict[str, Site] = {}
    site_ids: dict[str, tuple[str, ...]] = {}
    for j in jids:
        n = draw(st.integers(1, 3))
        ids = tuple(f"{j.lower()}-s{i}" for i in range(n))
        site_ids[j] = ids
        for s in ids:
            governed_by = draw(st.frozensets(st.sampled_from(jids), max_size=2)) - {j}
            sites[s] = Site(
                id=s,
                jurisdiction=j,
                provider="local",
                region=s,
                country=next(iter(sorted(countries[j])), "ZZ"),
                operator=f"op-{j.lower()}",
                governed_by=governed_by,
                governing=governed_by | {j},
            )
    every_site = tuple(sites)
    jurisdictions: dict[str, Jurisdiction] = {}
    for j in jids:
        own = list(site_ids[j])
        failover = draw(st.permutations(own))[: draw(st.integers(0, len(own)))]
        if draw(st.booleans()):
            # a foreign site in the preference list: it still only counts when allowed
            failover = (*failover, draw(st.sampled_from(every_site)))
        failover = tuple(dict.fromkeys(failover))
        jurisdictions[j] = Jurisdiction(
            id=j,
            name=f"Jurisdiction {j}",
            countries=countries[j],
            authorities=(),
            directive_threshold=1,
            process_in=draw(st.frozensets(st.sampled_from(jids), max_size=len(jids))),
            export={"restricted": draw(st.frozensets(st.sampled_from(jids), max_size=2))},
            models=draw(st.frozensets(st.sampled_from(model_ids), max_size=len(model_ids))),
            sites=site_ids[j],
            failover=failover,
            min_sites_per_model=1,
            source=f"{j.lower()}.yaml",
        )
    made: list[Directive] = []
    for i in range(draw(st.integers(0, max_directives))):
        made.append(draw(directives(jids, model_ids, f"d{i}", tuple(made))))
    settings = FleetSettings(unlisted_countries=draw(st.sampled_from(list(Unlisted))))
    return Fleet(
        jurisdictions=jurisdictions,
        sites=sites,
        models=models,
        directives={d.id: d for d in made},
        settings=settings,
    )
