"""A real HTTPS server on 127.0.0.1 with a throwaway CA, serving fixed bodies and headers.

https artifact sources are tested against it: TLS verified against the CA it writes (passed to
Sovereign as the ``https_ca_bundle`` option), Content-Length and digest headers as a real
server sends them, and a route whose published digest is wrong, for the integrity tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cloud_servers import LOOPBACK


@dataclass(frozen=True)
class Route:
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    head: bool = True  # False: answer HEAD with 405, as GET-only servers do


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA); returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sovereign-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class HttpsServer:
    url: str  # https://127.0.0.1:PORT
    ca_bundle: Path
    routes: dict[str, Route]


@contextmanager
def https_server(directory: Path) -> Iterator[HttpsServer]:
    """Serve ``server.routes`` (path -> Route, filled in by the caller) over TLS."""
    routes: dict[str, Route] = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(route.body)))
            self.send_header("Content-Type", "application/octet-stream")
            for name, value in route.headers:
                self.send_header(name, value)
            self.end_headers()
            if with_body:
                self.wfile.write(route.body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            route = routes.get(self.path)
            if route is not None and not route.head:
                self.send_error(405)
                return
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    cert, key = _certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpsServer(f"https://{LOOPBACK}:{server.server_address[1]}", cert, routes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
