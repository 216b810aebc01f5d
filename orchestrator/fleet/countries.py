"""Country codes: the one validator for every place a country enters (fleet files, CLI options,
``explain --batch`` lines, gateway token claims), and the "did you mean" that goes with it.

A country is an ISO 3166-1 alpha-2 code assigned by ISO (pycountry's data). Where a person
types it (CLI, batch lines, token claims) any case is accepted and the upper-case code is what
counts; fleet files must spell it in upper case (``fleet.schema``), as docs/fleet-format.md writes
them. ``declared`` lets a caller that holds a fleet accept the codes the fleet declares without
loading pycountry (``explain`` answers before pycountry is imported for the codes a fleet
uses); every declared code passed ISO validation when the fleet was loaded, so the answer is
the same.

When a value is not a country, ``suggest_country`` offers the likely one: the ISO code of a
common non-ISO code (UK -> GB, EL -> GR, the EU's code for Greece, and a few retired codes),
the code of a country named in full or by its alpha-3 code (Germany, DEU -> DE), the upper-case
form of a valid code (de -> DE), or the closest code the fleet declares or closest country name
(difflib).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
from collections.abc import Collection
from functools import cache
from pathlib import Path

from orchestrator.errors import UsageError

# Codes people use that ISO does not assign (or no longer does), and the ISO code they mean.
COMMON_ALIASES: dict[str, str] = {
    "UK": "GB",  # United Kingdom: exceptionally reserved, the ISO code is GB
    "EL": "GR",  # Greece in EU usage
    "FX": "FR",  # Metropolitan France
    "TP": "TL",  # East Timor, before Timor-Leste
    "ZR": "CD",  # Zaire, now the Democratic Republic of the Congo
    "BU": "MM",  # Burma, now Myanmar
}

COUNTRY_EXPECTED = "expected an ISO 3166-1 alpha-2 country code such as US, DE or JP"


@cache
def iso_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code, loaded on first use. Read straight from pycountry's data
    file: importing pycountry (its version look-up, its database classes) costs more CPU than
    ``sovereign validate`` spends on everything else it checks. Same data, same answer; if the
    file cannot be found or read, pycountry's own API is the fallback."""
    codes = _iso_codes_from_data_file()
    if codes:
        return codes
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries)


def _iso_codes_from_data_file() -> frozenset[str]:
    # find_spec locates the package on disk without executing its __init__.
    spec = importlib.util.find_spec("pycountry")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "databases" / "iso3166-1.json"
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["3166-1"]
            return frozenset(str(e["alpha_2"]) for e in entries)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return frozenset()


@cache
def _names() -> dict[str, str]:
    """Lower-case country names (common, official and plain) -> alpha-2 code."""
    import pycountry

    names: dict[str, str] = {}
    for c in pycountry.countries:
        for attr in ("name", "common_name", "official_name"):
            name = getattr(c, attr, None)
            if isinstance(name, str):
                names.setdefault(name.lower(), c.alpha_2)
    return names


_ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def ascii_upper(value: str) -> str | None:
    """``value`` in upper case when it is exactly two ASCII letters ``A-Z``/``a-z``, else None.

    The strict check comes before any case mapping: ``str.upper()`` maps other letters onto
    ASCII (the long s ``"uſ"`` becomes ``"US"``, the dotless i ``"ın"`` becomes ``"IN"``), and a
    nationality the law reads must be the code the person or the token wrote, not one Unicode
    case folding makes of it."""
    if len(value) != 2 or not all(ch in _ASCII_LETTERS for ch in value):
        return None
    return value.upper()


def is_country(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 code spelt in upper case."""
    return len(code) == 2 and code.isascii() and code.isupper() and code in iso_codes()


def country_code(value: str, declared: Collection[str] = ()) -> str | None:
    """The upper-case code ``value`` names (any case), or None when it names no country.
    Codes in ``declared`` (a fleet's countries, already ISO-checked when it was loaded) are
    accepted without consulting ISO data."""
    code = ascii_upper(value)
    if code is None:
        return None
    if code in declared or code in iso_codes():
        return code
    return None


def suggest_country(value: str, declared: Collection[str] = ()) -> str | None:
    """The country ``value`` most likely means, or None; never ``value`` itself when that is
    already a valid upper-case code. ``declared``: codes or ids the caller also accepts (a
    fleet's countries, or its jurisdiction ids where an entry may name one), offered when
    close to a two-letter ``value``."""
    text = value.strip()
    if not text.isascii():
        return None  # never offer the code a Unicode case mapping would make ("uſ" -> US)
    upper = text.upper()
    if upper in COMMON_ALIASES:
        return COMMON_ALIASES[upper]
    valid = country_code(upper, declared)
    if valid is not None:
        return valid if valid != text else None
    if len(text) == 2:
        close = difflib.get_close_matches(upper, sorted(declared), n=1, cutoff=0.5)
        return close[0] if close else None
    if len(text) == 3 and text.isascii() and text.isalpha():
        import pycountry

        found = pycountry.countries.get(alpha_3=upper)
        if found is not None:
            return str(found.alpha_2)
    names = _names()
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    close = difflib.get_close_matches(lowered, list(names), n=1, cutoff=0.8)
    return names[close[0]] if close else None


def country_hint(value: str, declared: Collection[str] = ()) -> str:
    """What a valid value looks like, with the likely one first when there is one."""
    suggestion = suggest_country(value, declared)
    if suggestion is None:
        return COUNTRY_EXPECTED
    return f"did you mean {suggestion}? {COUNTRY_EXPECTED}"


def parse_country(value: str, what: str, declared: Collection[str] = ()) -> str:
    """``value`` (any case, surrounding blanks ignored) as an upper-case country code; a
    ``UsageError`` naming ``what`` with a "did you mean" hint otherwise."""
    code = country_code(value.strip(), declared)
    if code is None:
        raise UsageError(f"invalid {what} {value!r}", hint=country_hint(value, declared))
    return code
