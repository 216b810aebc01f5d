"""A real ``apply`` process for the crash campaign to kill.

``python -m tests.chaos.runner FLEET_DIR AT STEP_DELAY STATE_URL LEASE_SECONDS`` runs the one
apply sequence (``plan_and_apply``, as ``sovereign apply --yes --sites local --state URL``),
waiting STEP_DELAY seconds before each change so that a kill lands in the middle, with a lease
of LEASE_SECONDS so that a campaign can wait for one to expire. STATE_URL ``-`` is the embedded
default. Exits like the CLI: 0 applied, 1 refused or lease lost, 3 some sites failed, 4 locked.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from orchestrator.errors import SovereignError
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import open_session


def main(argv: list[str]) -> int:
    fleet_dir, at, delay, state, lease = argv
    try:
        session = open_session(
            Path(fleet_dir),
            None if state == "-" else state,
            at=datetime.fromisoformat(at),
            sites_local=True,
            lease_seconds=float(lease),
        )
    except SovereignError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.exit_code
    try:
        done = plan_and_apply(session, step_delay=float(delay), concurrency=2)
    except SovereignError as exc:
        sys.stderr.write(f"error: {type(exc).__name__}: {exc.message}\n")
        return exc.exit_code
    finally:
        session.close()
    return 0 if done.result is not None and done.result.ok else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
