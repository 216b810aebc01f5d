"""The controller's HTTP server: ``/healthz`` and ``/metrics``.

Part of the controller (``orchestrator.reconcile.controller``: its docstring says what the
controller does and when).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)

from orchestrator.errors import (
    UsageError,
)
from orchestrator.reconcile.controller.loop import Controller


def serve_http(controller: Controller, host: str, port: int) -> ThreadingHTTPServer:
    """``/healthz`` (200 while the loop is alive, 503 when it stalled; JSON with leadership
    and the last pass) and ``/metrics`` (Prometheus text), in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = generate_latest(controller.metrics.registry)
                self._send(200, body, CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                info = controller.health_json()
                code = 503 if info["status"] == "stalled" else 200
                self._send(code, json.dumps(info).encode(), "application/json")
            else:
                self._send(404, b'{"error": "not found: /healthz, /metrics"}', "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # the controller's JSON log is the log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another --port"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="controller-http", daemon=True).start()
    return server
