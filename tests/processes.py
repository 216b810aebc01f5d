"""Processes a test starts: each in its own process group, all of them killed at the end.

``spawn`` is ``subprocess.Popen`` with two guarantees a plain ``Popen`` lacks:

- the child leads a new session (``start_new_session``), so killing its group
  (``os.killpg``) takes whatever it started with it, and a Ctrl-C meant for pytest is not
  delivered to it half-way through a step a test is timing;
- on Linux the child asks the kernel for ``SIGKILL`` when the thread that started it dies
  (``PR_SET_PDEATHSIG``), so pytest killed with ``SIGKILL`` (a CI timeout) leaves no controller
  or gateway running.

The fixture or test that spawns a process kills it with ``kill_group`` in its ``finally`` or
finalizer. Every spawned process is also remembered, and ``kill_all`` (at the end of the pytest
session, ``tests/conftest.py``, and at interpreter exit) kills the group of each one still
running, whatever test forgot it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from typing import Any

__all__ = ["kill_all", "kill_group", "spawn"]

_PR_SET_PDEATHSIG = 1
_LIVE: list[subprocess.Popen[Any]] = []
_LOCK = threading.Lock()


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(args, **kwargs)`` in a new process group, killed with its test."""
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("preexec_fn", _die_with_parent)
    proc: subprocess.Popen[Any] = subprocess.Popen(args, **kwargs)
    with _LOCK:
        _LIVE.append(proc)
    return proc


def kill_group(proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGKILL the process group ``proc`` leads (if still running) and reap ``proc``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    else:
        # the leader is gone; children it left in its group go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def kill_all() -> None:
    """Kill every process ``spawn`` started that is still running (and its group)."""
    with _LOCK:
        live = list(_LIVE)
        _LIVE.clear()
    for proc in live:
        kill_group(proc)


atexit.register(kill_all)
