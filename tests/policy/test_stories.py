"""The seed story on the example fleet ``regions/``: who is served fable-5, mythos-5 and olmo-3
before the US directive, while it is in force, and after its amendment for trusted partners."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.fleet.loader import load_fleet
from orchestrator.fleet.model import Fleet
from orchestrator.fleet.signing import signature_path
from orchestrator.policy import rules
from orchestrator.policy.explain import explain
from orchestrator.policy.impact import impact
from orchestrator.policy.principal import Principal
from orchestrator.policy.table import RouteTable

REGIONS = Path(__file__).resolve().parents[2] / "regions"

US_SITES = ("aws-us-east-1", "gcp-us-central1")
EU_SITES = ("aws-eu-central-1", "gcp-europe-west4")
JP_SITES = ("aws-ap-northeast-1", "gcp-asia-northeast1")
JP_LOCAL = ("gcp-asia-northeast1",)  # the JP site no US directive binds
REFUSED: tuple[str, ...] = ()

PRINCIPALS = {
    "us-national-in-us": Principal.of("US", ["US"]),
    "german-in-us": Principal.of("US", ["DE"]),
    "german-in-germany": Principal.of("DE", ["DE"]),
    "japanese-in-japan": Principal.of("JP", ["JP"]),
    "unknown-in-us": Principal.of("US"),
    "german-partner-in-us": Principal.of("US", ["DE"], ["trusted-partners"]),
}
JUNE_11 = datetime(2026, 6, 11, 12, tzinfo=UTC)  # before any directive
JUNE_13 = datetime(2026, 6, 13, 12, tzinfo=UTC)  # us-doc-2026-06-12 in force
JUNE_27 = datetime(2026, 6, 27, 12, tzinfo=UTC)  # us-doc-2026-06-26 replaces it

# (principal, date) -> route of fable-5 and of mythos-5 (the directive names both)
RESTRICTED = {
    ("us-national-in-us", JUNE_11): US_SITES,
    ("us-national-in-us", JUNE_13): US_SITES,
    ("us-national-in-us", JUNE_27): US_SITES,
    ("german-in-us", JUNE_11): US_SITES,
    ("german-in-us", JUNE_13): REFUSED,
    ("german-in-us", JUNE_27): REFUSED,
    ("german-in-germany", JUNE_11): EU_SITES,
    ("german-in-germany", JUNE_13): EU_SITES,
    ("german-in-germany", JUNE_27): EU_SITES,
    ("japanese-in-japan", JUNE_11): JP_SITES,
    ("japanese-in-japan", JUNE_13): JP_LOCAL,
    ("japanese-in-japan", JUNE_27): JP_LOCAL,
    ("unknown-in-us", JUNE_11): US_SITES,
    ("unknown-in-us", JUNE_13): REFUSED,
    ("unknown-in-us", JUNE_27): REFUSED,
    ("german-partner-in-us", JUNE_11): US_SITES,
    ("german-partner-in-us", JUNE_13): REFUSED,
    ("german-partner-in-us", JUNE_27): US_SITES,
}
OLMO = {
    "us-national-in-us": US_SITES,
    "german-in-us": US_SITES,
    "german-in-germany": EU_SITES,
    "japanese-in-japan": JP_SITES,
    "unknown-in-us": US_SITES,
    "german-partner-in-us": US_SITES,
}


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(REGIONS)


@pytest.fixture(scope="module")
def table(fleet: Fleet) -> RouteTable:
    return RouteTable.compile(fleet)


@pytest.mark.parametrize(("who", "at"), sorted(RESTRICTED, key=str))
@pytest.mark.parametrize("model", ["fable-5", "mythos-5"])
def test_restricted_models(
    fleet: Fleet, table: RouteTable, who: str, at: datetime, model: str
) -> None:
    principal = PRINCIPALS[who]
    expected = RESTRICTED[(who, at)]
    assert table.route(model, principal, at) == expected
    assert rules.route(fleet, model, principal, at) == expected
    assert explain(fleet, model, principal, at).route == expected


@pytest.mark.parametrize("at", [JUNE_11, JUNE_13, JUNE_27])
@pytest.mark.parametrize("who", sorted(OLMO))
def test_open_model_never_changes(table: RouteTable, who: str, at: datetime) -> None:
    assert table.route("olmo-3", PRINCIPALS[who], at) == OLMO[who]


def _reason_refs(fleet: Fleet, who: str, model: str, at: datetime, site: str) -> list[tuple]:
    decision = explain(fleet, model, PRINCIPALS[who], at).sites[site]
    return [(r.rule.value, r.ref) for r in decision.reasons]


@pytest.mark.parametrize("who", ["german-in-us", "unknown-in-us", "german-partner-in-us"])
def test_refusal_names_the_june_12_directive(fleet: Fleet, who: str) -> None:
    for site in US_SITES:
        assert _reason_refs(fleet, who, "fable-5", JUNE_13, site) == [
            ("directive", "us-doc-2026-06-12")
        ]


@pytest.mark.parametrize("who", ["german-in-us", "unknown-in-us"])
def test_after_amendment_refusal_names_the_june_26_directive(fleet: Fleet, who: str) -> None:
    for site in US_SITES:
        assert _reason_refs(fleet, who, "mythos-5", JUNE_27, site) == [
            ("directive", "us-doc-2026-06-26")
        ]


def test_japanese_reroute_is_explained_at_the_us_operated_site(fleet: Fleet) -> None:
    e = explain(fleet, "fable-5", PRINCIPALS["japanese-in-japan"], JUNE_13)
    assert e.home == "JP"
    assert _reason_refs(fleet, "japanese-in-japan", "fable-5", JUNE_13, "aws-ap-northeast-1") == [
        ("directive", "us-doc-2026-06-12")
    ]
    assert e.sites["gcp-asia-northeast1"].allowed


def test_spec5_json_shape(fleet: Fleet) -> None:
    doc = explain(fleet, "fable-5", PRINCIPALS["german-in-germany"], JUNE_13).to_json()
    assert list(doc) == ["model", "principal", "home", "route", "sites"]
    assert doc["principal"] == {"residency": "DE", "nationalities": ["DE"], "groups": []}
    assert doc["home"] == "EU"
    assert doc["route"] == list(EU_SITES)
    assert set(doc["sites"]) == set(fleet.sites)  # type: ignore[arg-type]
    us = doc["sites"]["aws-us-east-1"]  # type: ignore[index]
    assert us["allowed"] is False
    assert [r["rule"] for r in us["reasons"]] == ["residency", "directive"]


def test_unlisted_residency_is_refused_without_residency_reason(fleet: Fleet) -> None:
    e = explain(fleet, "olmo-3", Principal.of("BR", ["BR"]), JUNE_11)
    assert e.home is None and e.route == ()
    for decision in e.sites.values():
        rules_seen = [r.rule.value for r in decision.reasons]
        assert rules_seen[0] == "no_jurisdiction"
        assert "residency" not in rules_seen


@pytest.mark.parametrize(
    ("directive_id", "base_ids"),
    [("us-doc-2026-06-12", ()), ("us-doc-2026-06-26", ("us-doc-2026-06-12",))],
)
def test_nobody_outside_the_directives_reach_loses_service(
    fleet: Fleet, directive_id: str, base_ids: tuple[str, ...]
) -> None:
    base = fleet.with_directives({d: fleet.directives[d] for d in base_ids})
    result = impact(base, fleet.directives[directive_id], JUNE_11)
    assert result.collateral == 0
    assert result.changes
    assert {c.model for c in result.changes} == {"fable-5", "mythos-5"}
    assert {c.home for c in result.changes} == {"US", "JP"}
    for c in result.changes:
        assert "US" not in c.nationalities  # US nationals are outside the audience
        touched = set(c.before) ^ set(c.after)
        assert touched <= {*US_SITES, "aws-ap-northeast-1"}
    effects = {(c.home, c.effect.value) for c in result.changes}
    if directive_id == "us-doc-2026-06-12":
        assert effects == {("US", "refused"), ("JP", "rerouted")}
    else:  # the amendment only gives trusted partners their routes back
        assert effects == {("US", "restored"), ("JP", "rerouted")}
        assert all(c.groups == ("trusted-partners",) for c in result.changes)


def test_example_directives_are_signed() -> None:
    for d in ("us-doc-2026-06-12", "us-doc-2026-06-26"):
        assert signature_path(REGIONS / "directives" / f"{d}.yaml").is_file()
