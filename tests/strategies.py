"""Hypothesis strategies that generate valid ``Fleet`` values, principals and instants.

Fleets are built directly as frozen core values (no YAML), small enough for exhaustive checks
per example but covering every feature the rules look at: shared and foreign processing,
export lists, ``governed_by``, failover lists, unlisted countries (deny and any), suspend and
withdraw directives with every audience predicate, ``*`` models, expiry and supersession.
Other areas may reuse ``fleets()``, ``principals()`` and ``instants()``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

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
T = TypeVar("T")


def instants() -> st.SearchStrategy[datetime]:
    """Instants around and exactly at the directive grid (before, on, between, after)."""
    return _INSTANTS


def _pick(draw: st.DrawFn, seq: tuple[T, ...] | list[T]) -> T:
    # Index draws over cached integer strategies: building fresh sampled_from strategies
    # inside composites costs hypothesis far more validation time than the tests themselves.
    return seq[draw(st.integers(0, len(seq) - 1))]


def _subset(draw: st.DrawFn, seq: tuple[T, ...] | list[T], max_size: int = 99) -> frozenset[T]:
    mask = draw(st.integers(0, 2 ** len(seq) - 1))
    return frozenset([x for i, x in enumerate(seq) if mask >> i & 1][:max_size])


def _countries_or_none(draw: st.DrawFn) -> frozenset[str] | None:
    if not draw(st.booleans()):
        return None
    return _subset(draw, ALL_COUNTRIES, 3) or frozenset({_pick(draw, ALL_COUNTRIES)})


@st.composite
def principals(draw: st.DrawFn, countries: tuple[str, ...] = ALL_COUNTRIES) -> Principal:
    return Principal(_pick(draw, countries), _subset(draw, countries, 2), _subset(draw, GROUPS))


@st.composite
def audiences(draw: st.DrawFn) -> Audience:
    return Audience(
        nationality_in=_countries_or_none(draw),
        nationality_not_in=_countries_or_none(draw),
        residency_in=_countries_or_none(draw),
        residency_not_in=_countries_or_none(draw),
        except_groups=_subset(draw, GROUPS),
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
    return _directive(draw, jurisdictions, models, did, earlier)


def _directive(
    draw: st.DrawFn,
    jurisdictions: tuple[str, ...],
    models: tuple[str, ...],
    did: str,
    earlier: tuple[Directive, ...],
) -> Directive:
    jurisdiction = _pick(draw, jurisdictions)
    action = _pick(draw, (Action.SUSPEND, Action.SUSPEND, Action.WITHDRAW))
    if draw(st.integers(0, 3)) == 0:
        named = frozenset({ALL_MODELS})
    else:
        named = _subset(draw, models) or frozenset({_pick(draw, models)})
    effective = _pick(draw, GRID)
    later = [g for g in GRID if g > effective]
    expires = _pick(draw, later) if later and draw(st.booleans()) else None
    same = [d.id for d in earlier if d.jurisdiction == jurisdiction]
    supersedes = _pick(draw, same) if same and draw(st.booleans()) else None
    if supersedes is not None and draw(st.integers(0, 3)) == 0:
        # names only what it supersedes (docs/fleet-format.md)
        action, named = Action.LIFT, frozenset()
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
    jids = tuple(sorted(_subset(draw, JURISDICTION_IDS))) or (_pick(draw, JURISDICTION_IDS),)
    # Disjoint country sets: each country goes to at most one jurisdiction.
    owners = [_pick(draw, (None, *jids)) for _ in COUNTRIES]
    countries = {
        j: frozenset(c for c, o in zip(COUNTRIES, owners, strict=True) if o == j) for j in jids
    }
    model_ids = tuple(f"m{i}" for i in range(draw(st.integers(1, 3))))
    models = {
        m: Model(
            id=m,
            origin=_pick(draw, jids),
            export_control=_pick(draw, ("open", "restricted", "restricted")),
            artifact=f"s3://models/{m}/",
        )
        for m in model_ids
    }
    sites: dict[str, Site] = {}
    site_ids: dict[str, tuple[str, ...]] = {}
    for j in jids:
        ids = tuple(f"{j.lower()}-s{i}" for i in range(draw(st.integers(1, 3))))
        site_ids[j] = ids
        for s in ids:
            governed_by = _subset(draw, jids, 2) - {j}
            country = next(iter(sorted(countries[j])), "ZZ")
            if draw(st.integers(0, 3)) == 0:
                # foreign soil: the site stands in another jurisdiction's country (or none),
                # and the law of the soil binds it there (fleet.model.governing_set)
                country = _pick(draw, COUNTRIES)
            sites[s] = Site(
                id=s,
                jurisdiction=j,
                provider="local",
                region=s,
                country=country,
                operator=f"op-{j.lower()}",
                governed_by=governed_by,
                governing=governed_by | {j},  # the Fleet adds the soil
            )
    every_site = tuple(sites)
    jurisdictions: dict[str, Jurisdiction] = {}
    for j in jids:
        own = list(site_ids[j])
        failover_list: list[str] = []
        while own and draw(st.booleans()):
            failover_list.append(own.pop(draw(st.integers(0, len(own) - 1))))
        if draw(st.booleans()):
            # a foreign site in the preference list: it still only counts when allowed
            failover_list.append(_pick(draw, every_site))
        jurisdictions[j] = Jurisdiction(
            id=j,
            name=f"Jurisdiction {j}",
            countries=countries[j],
            authorities=(),
            directive_threshold=1,
            process_in=_subset(draw, jids),
            export={"restricted": _subset(draw, jids, 2)},
            models=_subset(draw, model_ids),
            sites=site_ids[j],
            failover=tuple(dict.fromkeys(failover_list)),
            min_sites_per_model=1,
            source=f"{j.lower()}.yaml",
        )
    made: list[Directive] = []
    for i in range(draw(st.integers(0, max_directives))):
        made.append(_directive(draw, jids, model_ids, f"d{i}", tuple(made)))
    settings = FleetSettings(unlisted_countries=_pick(draw, (Unlisted.DENY, Unlisted.ANY)))
    return Fleet(
        jurisdictions=jurisdictions,
        sites=sites,
        models=models,
        directives={d.id: d for d in made},
        settings=settings,
    )


_INSTANTS: st.SearchStrategy[datetime] = st.one_of(
    st.builds(
        lambda d: BASE + timedelta(days=d),
        st.sampled_from([-1, 0, 1, 2, 3, 5, 7, 9, 10, 11, 12, 14]),
    ),
    st.sampled_from(GRID),
    st.builds(
        lambda g, s: g + timedelta(seconds=s), st.sampled_from(GRID), st.sampled_from([-1, 1, 3600])
    ),
)
