"""The one country validator: fleet files, CLI options, batch lines and token claims agree,
and a wrong code gets a "did you mean"."""

from __future__ import annotations

import pycountry
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import UsageError
from orchestrator.fleet.countries import (
    COMMON_ALIASES,
    COUNTRY_EXPECTED,
    country_code,
    country_hint,
    is_country,
    parse_country,
    suggest_country,
)

ISO = sorted(c.alpha_2 for c in pycountry.countries)


@given(st.sampled_from(ISO), st.booleans())
def test_every_iso_code_is_a_country_in_any_case(code: str, lower: bool) -> None:
    assert is_country(code)
    typed = code.lower() if lower else code
    assert country_code(typed) == code
    assert parse_country(f" {typed} ", "residency") == code
    assert suggest_country(code) is None  # already right: nothing to suggest
    if lower:
        assert not is_country(typed)  # fleet files spell codes in upper case
        assert suggest_country(typed) == code


@given(st.text(max_size=6))
def test_anything_else_is_refused_with_a_hint_never_a_crash(text: str) -> None:
    code = country_code(text)
    if code is not None:
        assert code in ISO and code == text.upper()
        return
    with pytest.raises(UsageError) as caught:
        parse_country(text, "nationality")
    assert caught.value.message == f"invalid nationality {text!r}"
    assert caught.value.hint is not None and caught.value.hint.endswith(COUNTRY_EXPECTED)
    suggestion = suggest_country(text)
    assert suggestion is None or suggestion in ISO


@pytest.mark.parametrize(("typed", "meant"), sorted(COMMON_ALIASES.items()))
def test_a_common_non_iso_code_gets_its_iso_code(typed: str, meant: str) -> None:
    assert country_code(typed) is None
    assert meant in ISO
    assert suggest_country(typed) == meant
    assert suggest_country(typed.lower()) == meant
    assert country_hint(typed) == f"did you mean {meant}? {COUNTRY_EXPECTED}"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("Germany", "DE"), ("germany", "DE"), ("Germny", "DE"), ("DEU", "DE"), ("usa", "US")],
)
def test_a_name_an_alpha3_code_or_a_near_miss_gets_a_suggestion(typed: str, meant: str) -> None:
    assert country_code(typed) is None
    assert suggest_country(typed) == meant


def test_a_two_letter_typo_suggests_the_closest_code_the_fleet_declares() -> None:
    assert suggest_country("DX", declared={"DE", "FR"}) == "DE"
    assert suggest_country("QQ", declared={"DE", "FR"}) is None
    assert suggest_country("QQ") is None


def test_declared_codes_are_accepted_without_iso_data() -> None:
    # a fleet's countries passed ISO validation when it was loaded; they are taken as given
    assert country_code("de", declared={"DE"}) == "DE"
    assert parse_country("fr", "residency", {"FR"}) == "FR"
