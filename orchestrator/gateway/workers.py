"""``sovereign gateway --workers N``: N gateway processes sharing one port (``SO_REUSEPORT``);
``sovereign authz --workers N`` the same for authz processes (and their gRPC port).

One Python process serves at most one core's worth of requests. Each worker is a complete
gateway built from the same ``GatewaySpec``: it loads, verifies and compiles its own table,
follows applies on its own change signal and reload interval, keeps its own health book,
metrics and stub upstreams. The kernel spreads new connections over the workers' listening
sockets. Nothing is shared, so nothing needs a lock, and a worker that dies takes only its own
connections with it: the supervisor (this module, in the parent process) starts another.

The parent reserves the port first (bound, not listening: it never receives a connection), so
``--port 0`` gives every worker the same port. It reports ready only when every worker has
loaded its table and is listening; if one cannot (nothing applied, a bad key), all stop and the
first worker's reason is the error.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from orchestrator.errors import SovereignError, UsageError
from orchestrator.gateway.authz import Authz
from orchestrator.gateway.authz_server import AuthzServer
from orchestrator.gateway.launch import GatewaySpec
from orchestrator.gateway.server import bind, event_loop_factory, run

__all__ = ["serve_workers"]

_READY_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 10.0
_RESTART_BACKOFF_S = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _die_with_supervisor(supervisor: int) -> bool:
    """Ask the kernel for SIGTERM when the supervisor dies (Linux ``PR_SET_PDEATHSIG``): a
    worker leads its own session, so nothing else would stop it once a supervisor killed with
    SIGKILL (an OOM kill, a CI timeout) can no longer. False when the supervisor is already
    gone (it died before the request took effect)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == supervisor


def _worker(
    spec: GatewaySpec, host: str, port: int, index: int, report: Any, supervisor: int
) -> None:
    """One worker process: build, load, bind (SO_REUSEPORT), report, serve until SIGTERM
    (from the supervisor, or from the kernel when the supervisor dies)."""
    os.setsid()  # a terminal's Ctrl-C reaches the supervisor only; it stops us with SIGTERM
    signal.signal(signal.SIGTERM, _raise_stop)
    if not _die_with_supervisor(supervisor):
        return
    try:
        gateway = spec.for_worker(index).build()  # a gateway, or sovereign authz (AuthzSpec)
        serving = gateway.load_initial()
        sock = bind(host, port, reuse_port=True)
    except SovereignError as exc:
        report.put(("error", index, str(exc), exc.hint))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the supervisor, which exits 1
        report.put(("error", index, f"{type(exc).__name__}: {exc}", None))
        return
    report.put(("ready", index, serving.table.version, serving.table.serial, serving.source))
    try:
        if isinstance(gateway, Authz):
            AuthzServer(gateway, sock).serve_forever(event_loop_factory())
        else:
            run(gateway, host, port, sock)
    except (_Stop, KeyboardInterrupt):
        pass


def serve_workers(
    spec: GatewaySpec,
    host: str,
    port: int,
    workers: int,
    on_ready: Callable[[int, dict[str, Any]], None],
    on_event: Callable[[str], None],
) -> None:
    """Run ``workers`` gateway processes on ``host:port`` until SIGINT/SIGTERM.

    ``on_ready(port, info)`` is called once every worker serves (``info``: table, serial,
    source of the first); ``on_event`` gets one line per worker restart."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads inherited
    reserve = bind(host, port, reuse_port=True, listen=False)
    port = int(reserve.getsockname()[1])
    report = ctx.Queue()
    procs: dict[int, BaseProcess] = {}

    def start(index: int) -> None:
        proc = ctx.Process(
            target=_worker,
            args=(spec, host, port, index, report, os.getpid()),
            name=f"gateway-{index}",
        )
        proc.start()
        procs[index] = proc

    def stop_all() -> None:
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for proc in procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()

    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        for index in range(workers):
            start(index)
        first: dict[str, Any] | None = None
        deadline = time.monotonic() + _READY_TIMEOUT_S
        for _ in range(workers):
            try:
                message = report.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise UsageError(
                    f"the gateway workers did not start within {_READY_TIMEOUT_S:.0f} s"
                ) from None
            if message[0] == "error":
                _, index, text, hint = message
                raise UsageError(f"gateway worker {index}: {text}", hint=hint)
            if first is None:
                first = {"table": message[2], "serial": message[3], "source": message[4]}
        assert first is not None
        on_ready(port, first)
        while True:
            time.sleep(0.2)
            for index, proc in list(procs.items()):
                if not proc.is_alive():
                    on_event(
                        f"gateway worker {index} (pid {proc.pid}) exited with code "
                        f"{proc.exitcode}; starting another"
                    )
                    time.sleep(_RESTART_BACKOFF_S)
                    start(index)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_all()
        reserve.close()
        report.close()
