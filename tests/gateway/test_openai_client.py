"""The official ``openai`` client talks to the gateway as to OpenAI (``base_url``).

Streams and plain answers go through the real gateway to its stub upstreams; the client must
see the content, the finish reason of the last chunk, and a 451 as its own error type.
"""

from __future__ import annotations

import httpx
import openai

from tests.gateway.support import Keys, Running


def _client(gw: Running, token: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gw.url}/v1",
        api_key=token,
        max_retries=0,
        timeout=10,
        http_client=httpx.Client(trust_env=False),
    )


def test_chat_completion(keys: Keys, shared_gw: Running) -> None:
    with _client(shared_gw, keys.token("US", ["US"])) as client:
        answer = client.chat.completions.create(
            model="olmo-3", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.choices[0].message.content == "served by us-east (olmo-3)"
    assert answer.choices[0].finish_reason == "stop"


def test_stream_ends_with_stop(keys: Keys, shared_gw: Running) -> None:
    with _client(shared_gw, keys.token("US", ["US"])) as client:
        stream = client.chat.completions.create(
            model="olmo-3", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "served by us-east (olmo-3)"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_completions_stream_ends_with_stop(keys: Keys, shared_gw: Running) -> None:
    with _client(shared_gw, keys.token("US", ["US"])) as client:
        chunks = list(client.completions.create(model="olmo-3", prompt="hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "served by us-east (olmo-3)"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_refusal_is_a_451_error(keys: Keys, shared_gw: Running) -> None:
    with _client(shared_gw, keys.token("US", ["DE"])) as client:
        try:
            client.chat.completions.create(
                model="fable-5", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.APIStatusError as exc:
            assert exc.status_code == 451
            body = exc.response.json()
            assert body["explanation"]["route"] == []
        else:
            raise AssertionError("a suspended model was served")


def test_models_retrieve_answers_as_openai_does(keys: Keys, shared_gw: Running) -> None:
    with _client(shared_gw, keys.token("US", ["US"])) as client:
        model = client.models.retrieve("olmo-3")
        assert model.id == "olmo-3" and model.object == "model"
        assert "olmo-3" in {m.id for m in client.models.list()}
        try:
            client.models.retrieve("no-such-model")
        except openai.NotFoundError as exc:
            error = exc.response.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["code"] == "model_not_found"
        else:
            raise AssertionError("an unknown model was retrieved")
    with _client(shared_gw, keys.token("US", ["DE"])) as client:
        try:
            client.models.retrieve("fable-5")  # suspended for this principal: the law's answer
        except openai.APIStatusError as exc:
            assert exc.status_code == 451 and exc.response.json()["explanation"]["route"] == []
        else:
            raise AssertionError("a suspended model was retrieved")


def test_errors_carry_openai_types_and_every_answer_is_json(shared_gw: Running) -> None:
    with _client(shared_gw, "not-a-token") as client:
        try:
            client.models.list()
        except openai.AuthenticationError as exc:
            error = exc.response.json()["error"]
            assert error["type"] == "authentication_error" and error["code"]
        else:
            raise AssertionError("a bad token was accepted")
    with httpx.Client(trust_env=False, timeout=10) as http:
        for method, path, status in (
            ("GET", "/v1/nothing-here", 404),
            ("GET", "/v1/chat/completions", 405),
        ):
            r = http.request(method, f"{shared_gw.url}{path}")
            assert r.status_code == status
            assert r.json()["error"]["type"] == "invalid_request_error"
