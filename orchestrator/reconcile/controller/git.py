"""Pulling the fleet: a git checkout kept at the tip of one branch.

Part of the controller (``orchestrator.reconcile.controller``: its docstring says what the
controller does and when).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import (
    SovereignError,
    UsageError,
)


@dataclass(frozen=True)
class GitSource:
    """A fleet kept in git: ``url`` at ``branch``, checked out in ``checkout``."""

    url: str
    branch: str
    checkout: Path

    def pull(self) -> str:
        """Clone once, then fetch and reset to the branch head; returns the commit."""
        if not (self.checkout / ".git").is_dir():
            self.checkout.parent.mkdir(parents=True, exist_ok=True)
            _git(
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                self.branch,
                self.url,
                str(self.checkout),
            )
        else:
            _git(
                "-C", str(self.checkout), "fetch", "--quiet", "--depth", "1", "origin", self.branch
            )
            _git("-C", str(self.checkout), "reset", "--quiet", "--hard", "FETCH_HEAD")
        return _git("-C", str(self.checkout), "rev-parse", "HEAD").strip()


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=300, check=False
        )
    except FileNotFoundError:
        raise UsageError(
            "the controller's --git needs the git command", hint="install git, or pass --fleet DIR"
        ) from None
    except subprocess.TimeoutExpired:
        raise SovereignError(f"git {args[0]} timed out after 300 s") from None
    if done.returncode != 0:
        raise SovereignError(
            f"git {' '.join(a for a in args if not a.startswith('-'))[:200]} failed: "
            f"{done.stderr.strip()[:500]}",
            hint="check --git URL, --branch and the credentials git uses",
        )
    return done.stdout
