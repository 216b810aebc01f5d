"""One layer of retries per call, counted on the wire (docs/providers.md, "Retries").

A proxy on 127.0.0.1 stands in front of a real moto server: it answers the first ``throttle``
requests with S3's 503 ``SlowDown`` and forwards the rest. The counts are what reaches it.
"""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from orchestrator.adaptors import aws
from orchestrator.errors import TransientProviderError
from orchestrator.providers.aws.session import AwsClients
from orchestrator.reconcile.retry import MAX_ATTEMPTS, RetryPolicy, call_with_retry

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
NO_WAIT = RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay=0, max_delay=0)


class ThrottlingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlsplit(upstream)
        self.throttle = 0
        self.seen = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reset(self, throttle: int) -> None:
        with self.lock:
            self.throttle, self.seen = throttle, 0


class _Handler(BaseHTTPRequestHandler):
    server: ThrottlingProxy
    protocol_version = "HTTP/1.1"
    hop_by_hop: ClassVar[set[str]] = {"connection", "keep-alive", "transfer-encoding"}

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen += 1
            throttled = self.server.seen <= self.server.throttle
        if throttled:
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOW_DOWN)))
            self.end_headers()
            self.wfile.write(SLOW_DOWN)
            return
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in self.hop_by_hop}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in self.hop_by_hop and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(moto_url: str) -> Iterator[ThrottlingProxy]:
    server = ThrottlingProxy(moto_url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from tests.cloud_servers import cloud_credentials, moto_server

    with cloud_credentials(), moto_server() as url:
        yield url


def _provider_s3(proxy: ThrottlingProxy) -> object:
    return AwsClients({"aws_endpoint_url": proxy.url}).client("s3", "us-east-1")


def test_a_provider_call_that_keeps_failing_costs_max_attempts_calls(
    proxy: ThrottlingProxy,
) -> None:
    s3 = _provider_s3(proxy)
    proxy.reset(throttle=1_000)
    with pytest.raises(TransientProviderError):
        call_with_retry(
            lambda: aws.call("site", "s3:ListAllMyBuckets", s3.list_buckets),  # type: ignore[attr-defined]
            NO_WAIT,
        )
    assert proxy.seen == MAX_ATTEMPTS  # not MAX_ATTEMPTS x botocore's attempts


def test_a_throttled_provider_call_succeeds_on_a_later_attempt(proxy: ThrottlingProxy) -> None:
    s3 = _provider_s3(proxy)
    bucket = f"retry-{uuid.uuid4().hex[:12]}"
    proxy.reset(throttle=2)
    _, attempts = call_with_retry(
        lambda: aws.call("site", "s3:CreateBucket", s3.create_bucket, Bucket=bucket),  # type: ignore[attr-defined]
        NO_WAIT,
    )
    assert attempts == 3 and proxy.seen == 3
    proxy.reset(throttle=0)
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}  # type: ignore[attr-defined]


def test_a_state_store_call_is_retried_by_botocore_alone(proxy: ThrottlingProxy) -> None:
    s3 = aws.client("s3", "us-east-1", endpoint_url=proxy.url)
    proxy.reset(throttle=1_000)
    with pytest.raises(TransientProviderError):
        aws.call("state", "s3:ListAllMyBuckets", s3.list_buckets)
    assert proxy.seen == aws.DEFAULT_MAX_ATTEMPTS
