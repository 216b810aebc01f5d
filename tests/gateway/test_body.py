"""The body the gateway routes on is the body the upstream reads (issue 20, parser differential).

A body with the same key twice (``{"model": "fable-5", ..., "model": "olmo-3"}``) was routed
on the last ``model`` while its raw bytes went upstream, where a parser that keeps the first
key would serve fable-5 to a principal refused fable-5. A body nested 100,000 deep was a 500.
Both are now a 400 in the gateway's error shape, and no upstream is touched. Unicode that
``str.upper()`` maps onto a country code (``"uſ"`` -> ``US``) is a 401, not a nationality.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.gateway.body import MAX_DEPTH, BodyError, depth_of, parse_body
from tests.gateway.support import Keys, Running

CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}


def _post(
    client: httpx.Client, gw: Running, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return client.post(gw.url + CHAT, content=body, headers={**headers, **JSON})


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "olmo-3", "messages": [], "model": "fable-5"}',
        b'{"model": "fable-5", "messages": [], "mod\\u0065l": "olmo-3"}',
        b'{"model": "olmo-3", "messages": [{"role": "user", "role": "system"}]}',
        b'{"model": "olmo-3", "temperature": NaN}',
        b'{"model": "olmo-3", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"model": "olmo-3", "x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
        '{"model": "olmo-3"}'.encode("utf-16"),
        b"\xef\xbb\xbf" + b'{"model": "olmo-3"}',
    ],
    ids=["dup-model", "dup-escaped", "dup-nested", "nan", "deep", "depth-65", "utf16", "bom"],
)
def test_ambiguous_or_deep_bodies_are_a_400_and_touch_no_upstream(
    body: bytes, keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    before = shared_gw.hits()
    r = _post(client, shared_gw, body, keys.headers("US", ["DE"]))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert shared_gw.hits() == before


def test_a_body_at_the_depth_limit_is_served(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    depth = MAX_DEPTH - 1  # plus the outer object
    body = b'{"model": "olmo-3", "x": ' + b"[" * depth + b"]" * depth + b"}"
    r = _post(client, shared_gw, body, keys.headers("US", ["US"]))
    assert r.status_code == 200, r.text


def test_a_unicode_nationality_that_upper_cases_to_us_is_refused(
    keys: Keys, shared_gw: Running, client: httpx.Client
) -> None:
    # A German national in the US is suspended from fable-5 at every US site (US_SUSPEND).
    body = json.dumps({"model": "fable-5", "messages": []}).encode()
    assert _post(client, shared_gw, body, keys.headers("US", ["DE"])).status_code == 451
    for fake in ("uſ", "Uſ", "ｕｓ"):
        r = _post(client, shared_gw, body, keys.headers("US", [fake]))
        assert r.status_code == 401, (fake, r.text)
    r = _post(client, shared_gw, body, keys.headers("ın", []))  # dotless i: not IN
    assert r.status_code == 401


def test_parse_body_agrees_with_the_standard_parser_on_unambiguous_json() -> None:
    for text in ('{"a": [1, {"b": "[{"}]}', "[]", '"x"', '{"model": "m", "s": "\\"]]"}'):
        assert parse_body(text.encode()) == json.loads(text)
    brackets_in_a_string = b'["' + b"[{" * MAX_DEPTH + b'\\"[" ]'
    assert depth_of(brackets_in_a_string) == 1
    with pytest.raises(BodyError):
        parse_body(b'{"a": 1, "a": 1}')


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(deadline=None, max_examples=200)
@given(_JSON)
def test_parse_body_reads_every_document_json_dumps_writes(value: object) -> None:
    assert parse_body(json.dumps(value).encode()) == value
