"""The stub upstream answers like an OpenAI server and names the site that served."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.errors import UsageError
from orchestrator.stubs.server import is_loopback
from orchestrator.stubs.upstream import StubServer, start_stub


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("site-a")
    yield server
    server.stop()


def test_chat_completion_names_site_and_model(stub: StubServer) -> None:
    r = httpx.post(f"{stub.url}/v1/chat/completions", json={"model": "m1", "messages": []})
    assert r.status_code == 200
    assert r.headers["x-stub-site"] == "site-a"
    assert r.json()["choices"][0]["message"]["content"] == "served by site-a (m1)"
    assert stub.hits["m1"] == 1


def test_completions_and_embeddings(stub: StubServer) -> None:
    r = httpx.post(f"{stub.url}/v1/completions", json={"model": "m2", "prompt": "x"})
    assert r.json()["choices"][0]["text"] == "served by site-a (m2)"
    e = httpx.post(f"{stub.url}/v1/embeddings", json={"model": "m2", "input": ["a", "b"]})
    data = e.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert data[0]["embedding"] != data[1]["embedding"]


def test_stream_sends_chunks_then_done(stub: StubServer) -> None:
    stub.behaviour.chunk_delay_s = 0.05
    started = time.monotonic()
    arrivals: list[float] = []
    lines: list[str] = []
    with httpx.stream(
        "POST", f"{stub.url}/v1/chat/completions", json={"model": "m1", "stream": True}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line:
                arrivals.append(time.monotonic() - started)
                lines.append(line)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:])["choices"][0] for line in lines[:-1]]
    text = "".join(c["delta"].get("content", "") for c in chunks)
    assert text == "served by site-a (m1)"
    # Like OpenAI: every content chunk has no finish reason; one last chunk says "stop".
    assert [c["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert chunks[-1]["delta"] == {}
    # Chunks are spaced out by the stub, so the first arrives well before the last.
    assert arrivals[-1] - arrivals[0] >= 0.1


def test_site_dir_serves_only_deployed_models(tmp_path: Path) -> None:
    (tmp_path / "deployments").mkdir()
    (tmp_path / "deployments" / "olmo-3.json").write_text('{"status": "serving"}')
    (tmp_path / "deployments" / "mythos-5.json").write_text('{"status": "unhealthy"}')
    (tmp_path / "deployments" / "sarvam-2.json").write_text("not json")
    server = start_stub("site-b", site_dir=tmp_path)
    try:
        ok = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "olmo-3"})
        missing = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "fable-5"})
        broken = [
            httpx.post(f"{server.url}/v1/chat/completions", json={"model": m}).status_code
            for m in ("mythos-5", "sarvam-2")
        ]
        sneaky = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "../x"})
        listed = httpx.get(f"{server.url}/v1/models").json()
    finally:
        server.stop()
    assert ok.status_code == 200
    assert missing.status_code == 404
    assert broken == [404, 404]
    assert sneaky.status_code == 404
    assert [m["id"] for m in listed["data"]] == ["olmo-3"]


def test_fail_status_and_stop(stub: StubServer) -> None:
    stub.behaviour.fail_status = 503
    assert httpx.post(f"{stub.url}/v1/completions", json={"model": "m"}).status_code == 503
    assert httpx.get(f"{stub.url}/healthz").status_code == 503
    url = stub.url
    stub.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def test_bad_body_is_400(stub: StubServer) -> None:
    r = httpx.post(f"{stub.url}/v1/completions", content=b"not json")
    assert r.status_code == 400


def test_only_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    with pytest.raises(UsageError):
        StubServer("x", host="0.0.0.0")
