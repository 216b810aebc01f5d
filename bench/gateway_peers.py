"""The processes bench/gateway.py measures and how it measures them: the stub upstream, the
Sovereign gateway and authz, LiteLLM and nginx (each started on 127.0.0.1), and their CPU time.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import timeit
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

T = TypeVar("T")


# Requests to LiteLLM authenticate with its master key (it refuses to start without one), as
# requests to the gateway carry a signed token.
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 3


LITELLM_CONFIG = """\
model_list:
  - model_name: m1
    litellm_params:
      model: openai/m1
      api_base: {stub}/v1
      api_key: unused
      region_name: us
router_settings:
  enable_pre_call_checks: true
general_settings:
  master_key: {master_key}
litellm_settings:
  telemetry: false
  drop_params: true
"""


NGINX_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {work}/nginx-access.log;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  upstream stub {{ server 127.0.0.1:{stub_port}; keepalive 64; }}
  keepalive_requests 1000000;  # the load generator keeps its connections for the whole run
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://stub;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def serve_stub(port_file: Path) -> None:
    import uvicorn

    from orchestrator.stubs.upstream import build_stub_app

    # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (see server.bind).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port_file.write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(
        build_stub_app("us-1"), log_level="warning", access_log=False, loop="auto", http="auto"
    )  # uvloop and httptools when installed
    uvicorn.Server(config).run(sockets=[sock])


def wait_port_file(path: Path) -> int:
    deadline = time.monotonic() + 20
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise SystemExit("the stub upstream did not start")
        time.sleep(0.05)
    return int(path.read_text())


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), or NaN elsewhere."""
    return sum(cpu_split(pid))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one load phase, on uvloop when it is installed (cheaper for the generator)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine() -> str:
    per_loop = min(timeit.repeat("sum(range(10000))", number=200, repeat=3)) / 200 * 1e6
    load = os.getloadavg()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {load[0]:.1f}; "
        f"calibration sum(range(10000)) = {per_loop:.0f} us (a 2024 laptop: ~100 us)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc), for CPU of multi-process servers."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return out


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


async def wait_http(port: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return True
    return False


@dataclass
class Peer:
    name: str
    proc: subprocess.Popen[str]
    port: int
    request: bytes
    also: tuple[subprocess.Popen[str], ...] = ()  # processes it needs (nginx+authz: authz)

    def pids(self) -> list[int]:
        return [p for proc in (self.proc, *self.also) for p in process_tree(proc.pid)]


def start_authz(root: Path, key_file: Path, log: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "authz", "--fleet", str(root)]
        + ["--port", "0", "--token-key", str(key_file), "--probe-interval", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"sovereign authz did not start: {log.read_text()[-2000:]}")
    return proc, int(json.loads(line)["url"].rsplit(":", 1)[1])


def start_nginx_authz(
    work: Path, root: Path, authz_port: int
) -> tuple[subprocess.Popen[str] | None, int, str]:
    """nginx as ``sovereign export --format nginx`` writes it, in front of authz."""
    from orchestrator.fleet.loader import load_fleet
    from orchestrator.gateway.proxyconf import nginx_config

    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None, 0, "nginx not installed (make bench-peers: apt-get install nginx-light)"
    port = free_port()
    prefix = work / "nginx-authz"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    text = nginx_config(
        load_fleet(root), f"127.0.0.1:{authz_port}", f"127.0.0.1:{port}", worker_processes="1"
    )
    # the generator keeps its connections for the whole run (as for plain nginx)
    conf.write_text(
        text.replace(
            "    server_tokens off;", "    server_tokens off;\n    keepalive_requests 1000000;"
        )
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off; master_process off;"],
        stdout=subprocess.DEVNULL,
        stderr=open(prefix / "nginx.stderr", "w"),
        text=True,
    )
    if not run(wait_http(port, 20)) or proc.poll() is not None:
        proc.kill()
        return None, 0, f"nginx did not start: {(prefix / 'nginx.stderr').read_text()[-200:]}"
    return proc, port, ""


def start_sovereign(
    root: Path, key_file: Path, log: Path, workers: int = 1, profile: Path | None = None
) -> tuple[subprocess.Popen[str], int]:
    prof = ["-m", "cProfile", "-o", str(profile.resolve())] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *prof, "-m", "orchestrator", "gateway", "--fleet", str(root)]
        + ["--port", "0", "--token-key", str(key_file), "--probe-interval", "0", "--json"]
        + ["--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"sovereign gateway did not start: {log.read_text()[-2000:]}")
    return proc, int(json.loads(line)["url"].rsplit(":", 1)[1])


def start_litellm(work: Path, stub_port: int) -> tuple[subprocess.Popen[str] | None, int, str]:
    """The LiteLLM proxy in front of the stub, or (None, 0, why it is skipped)."""
    import importlib.util

    cli = Path(sys.executable).parent / "litellm"
    if importlib.util.find_spec("litellm") is None or not cli.exists():
        return None, 0, "litellm not installed (make bench-peers)"
    config = work / "litellm.yaml"
    config.write_text(
        LITELLM_CONFIG.format(stub=f"http://127.0.0.1:{stub_port}", master_key=LITELLM_KEY)
    )
    port = free_port()
    log = work / "litellm.log"
    proc = subprocess.Popen(
        [str(cli), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        + ["--num_workers", "1"],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from the network at start-up
            "LITELLM_LOG": "ERROR",
        },
    )
    if not run(wait_http(port, 180)) or proc.poll() is not None:
        proc.kill()
        tail = log.read_text()[-300:].strip().splitlines()
        return None, 0, f"litellm proxy did not start: {tail[-1] if tail else 'no output'}"
    return proc, port, ""


def start_nginx(work: Path, stub_port: int) -> tuple[subprocess.Popen[str] | None, int, str]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None, 0, "nginx not installed (make bench-peers: apt-get install nginx-light)"
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONFIG.format(work=work, stub_port=stub_port, port=port))
    proc = subprocess.Popen(
        [nginx, "-p", str(work), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "nginx.stderr", "w"),
        text=True,
    )
    if not run(wait_http(port, 20)) or proc.poll() is not None:
        proc.kill()
        return None, 0, f"nginx did not start: {(work / 'nginx.stderr').read_text()[-200:]}"
    return proc, port, ""
