"""A stand-in OpenAI-compatible model server for one site, on loopback (development only).

Local sites have no real inference endpoint, yet the gateway must send their traffic somewhere
real so that routing, failover and streaming are exercised over actual HTTP. This stub is that
somewhere: every reply names the site and the model (``served by <site> (<model>)`` and the
``X-Stub-Site`` header), so a caller can prove where a request went.

With ``site_dir`` the stub serves only the models the local provider deployed there (a manifest
``<site_dir>/deployments/<model>.json`` with ``"status": "serving"``) and answers 404 for the
rest: it serves what was really deployed, not what someone hoped was.

Streams end as OpenAI's do: content chunks, then one chunk with an empty delta and
``finish_reason: "stop"``, then ``data: [DONE]`` (clients such as the official ``openai``
package read the finish reason from that last chunk).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator.stubs.server import BackgroundServer

__all__ = ["StubBehaviour", "StubServer", "build_stub_app", "start_stub"]

_EMBEDDING_DIM = 8


@dataclass
class StubBehaviour:
    """Knobs a test or demo turns at run time (read on every request, so changes apply at once).

    ``fail_status`` makes every model request answer that status (e.g. 503) to exercise
    failover; ``delay_s`` holds each reply back (timeouts); streams send ``stream_chunks``
    chunks ``chunk_delay_s`` apart so a caller can see they arrive unbuffered.
    """

    fail_status: int | None = None
    delay_s: float = 0.0
    stream_chunks: int = 4
    chunk_delay_s: float = 0.02
    hits: Counter[str] = field(default_factory=Counter)  # model id -> requests answered
    last_headers: dict[str, str] = field(default_factory=dict)  # of the last model request


def _text_for(site_id: str, model: str) -> str:
    return f"served by {site_id} ({model})"


def _embedding_for(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 6) for b in digest[:_EMBEDDING_DIM]]


class _StubSite:
    """One stub site's request handlers (``build_stub_app`` routes to them)."""

    def __init__(
        self,
        site_id: str,
        site_dir: Path | None,
        fixed_models: tuple[str, ...],
        state: StubBehaviour,
    ) -> None:
        self.site_id = site_id
        self.site_dir = site_dir
        self.fixed_models = fixed_models
        self.state = state
        self.headers = {"X-Stub-Site": site_id}

    def deployed(self, manifest: Path) -> bool:
        # Fail closed: only a readable manifest that says "serving" counts (the local provider
        # marks a deployment whose artifact went missing as something else).
        try:
            doc = json.loads(manifest.read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and doc.get("status") == "serving"

    def served_models(self) -> list[str]:
        if self.site_dir is not None:
            deployments = self.site_dir / "deployments"
            if not deployments.is_dir():
                return []
            return sorted(p.stem for p in deployments.glob("*.json") if self.deployed(p))
        return sorted(self.fixed_models)

    def serves(self, model: str) -> bool:
        if self.site_dir is not None:
            # A path-like model id must never reach outside the deployments folder.
            if not model or "/" in model or "\\" in model or model.startswith("."):
                return False
            return self.deployed(self.site_dir / "deployments" / f"{model}.json")
        return not self.fixed_models or model in self.fixed_models

    def error(self, status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": message, "type": kind, "site": self.site_id}},
            status_code=status,
            headers=self.headers,
        )

    async def read_model(self, request: Request) -> tuple[dict[str, Any], str] | JSONResponse:
        self.state.last_headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            return self.error(400, "request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self.error(400, "the body needs a string 'model'", "invalid_request_error")
        model: str = body["model"]
        if self.state.delay_s:
            await asyncio.sleep(self.state.delay_s)
        if self.state.fail_status is not None:
            return self.error(self.state.fail_status, "stub told to fail", "stub_failure")
        if not self.serves(model):
            return self.error(
                404, f"model {model!r} is not deployed at {self.site_id}", "model_not_found"
            )
        self.state.hits[model] += 1
        return body, model

    def sse(self, chunks: Iterable[dict[str, Any]]) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for i, chunk in enumerate(chunks):
                if i and self.state.chunk_delay_s:
                    await asyncio.sleep(self.state.chunk_delay_s)
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={**self.headers, "Cache-Control": "no-cache"},
        )

    def pieces(self, text: str) -> list[str]:
        n = max(1, self.state.stream_chunks)
        words = text.split(" ")
        size = max(1, -(-len(words) // n))
        parts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        parts = [p if i == 0 else " " + p for i, p in enumerate(parts)]
        return parts + [""] * (n - len(parts))

    async def chat(self, request: Request) -> Response:
        parsed = await self.read_model(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        body, model = parsed
        text = _text_for(self.site_id, model)
        rid = f"chatcmpl-{self.site_id}-{self.state.hits[model]}"
        created = int(time.time())
        if body.get("stream") is True:

            def chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
                return {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            return self.sse(
                [chunk({"role": "assistant", "content": part}, None) for part in self.pieces(text)]
                + [chunk({}, "stop")]
            )
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
            headers=self.headers,
        )

    async def completions(self, request: Request) -> Response:
        parsed = await self.read_model(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        body, model = parsed
        text = _text_for(self.site_id, model)
        rid = f"cmpl-{self.site_id}-{self.state.hits[model]}"
        created = int(time.time())
        if body.get("stream") is True:
            return self.sse(
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "text": part, "finish_reason": finish}],
                }
                for part, finish in [*((p, None) for p in self.pieces(text)), ("", "stop")]
            )
        return JSONResponse(
            {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
            },
            headers=self.headers,
        )

    async def embeddings(self, request: Request) -> Response:
        parsed = await self.read_model(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        body, model = parsed
        raw = body.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        return JSONResponse(
            {
                "object": "list",
                "model": model,
                "site": self.site_id,
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": _embedding_for(f"{self.site_id}:{model}:{item}"),
                    }
                    for i, item in enumerate(inputs)
                ],
            },
            headers=self.headers,
        )

    async def list_models(self, request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "owned_by": self.site_id}
                    for m in self.served_models()
                ],
            },
            headers=self.headers,
        )

    async def healthz(self, request: Request) -> Response:
        if self.state.fail_status is not None:
            return self.error(self.state.fail_status, "stub told to fail", "stub_failure")
        return JSONResponse({"status": "ok", "site": self.site_id}, headers=self.headers)


def build_stub_app(
    site_id: str,
    site_dir: Path | None = None,
    models: Iterable[str] = (),
    behaviour: StubBehaviour | None = None,
) -> Starlette:
    """The ASGI app of one stub site. ``models`` are served when no ``site_dir`` is given
    (and any model is served when both are empty)."""
    site = _StubSite(
        site_id, site_dir, tuple(models), behaviour if behaviour is not None else StubBehaviour()
    )
    return Starlette(
        routes=[
            Route("/v1/chat/completions", site.chat, methods=["POST"]),
            Route("/v1/completions", site.completions, methods=["POST"]),
            Route("/v1/embeddings", site.embeddings, methods=["POST"]),
            Route("/v1/models", site.list_models, methods=["GET"]),
            Route("/healthz", site.healthz, methods=["GET"]),
        ]
    )


class StubServer(BackgroundServer):
    """One stub site running on loopback; ``behaviour`` is live (change it while it runs)."""

    def __init__(
        self,
        site_id: str,
        host: str = "127.0.0.1",
        port: int = 0,
        site_dir: Path | None = None,
        models: Iterable[str] = (),
    ) -> None:
        self.site_id = site_id
        self.site_dir = site_dir
        self.behaviour = StubBehaviour()
        app = build_stub_app(site_id, site_dir, models, self.behaviour)
        super().__init__(app, host, port, name=f"stub-{site_id}")

    @property
    def hits(self) -> Counter[str]:
        """Requests answered successfully, per model."""
        return self.behaviour.hits

    @property
    def total_hits(self) -> int:
        return sum(self.behaviour.hits.values())


def start_stub(
    site_id: str,
    host: str = "127.0.0.1",
    port: int = 0,
    site_dir: Path | None = None,
    models: Iterable[str] = (),
) -> StubServer:
    """Start a stub upstream for ``site_id`` and return it once it accepts connections."""
    stub = StubServer(site_id, host, port, site_dir, models)
    stub.start()
    return stub
