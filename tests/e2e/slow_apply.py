"""A real process that applies a fleet slowly, so a test can catch an apply in the middle.

Run as ``python -m tests.e2e.slow_apply FLEET_DIR AT STEP_DELAY CONCURRENCY``: the same
``plan_and_apply`` sequence as ``sovereign apply --yes --sites local``, waiting STEP_DELAY
seconds before each change. Exits like the CLI: 0 applied, 3 some sites failed, 4 locked.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from orchestrator.errors import SovereignError
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import open_session


def main(argv: list[str]) -> int:
    fleet_dir, at, delay, concurrency = argv
    session = open_session(Path(fleet_dir), None, at=datetime.fromisoformat(at), sites_local=True)
    try:
        done = plan_and_apply(session, step_delay=float(delay), concurrency=int(concurrency))
    except SovereignError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.exit_code
    finally:
        session.close()
    return 0 if done.result is not None and done.result.ok else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
