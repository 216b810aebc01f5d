"""What a reviewer needs beside a plan: the impact of each directive it brings (docs/cli.md).

A plan lists resource changes; a reviewer of a pull request that adds or changes a directive
also needs to know whom it stops serving. ``directive_reviews`` compares the working fleet with
the fleet last applied and, for each directive that is new or whose file changed, runs the
``impact`` what-if against the working fleet without it: the cells refused, rerouted and
restored. Pure apart from reading the applied fleet through the session.
"""

from __future__ import annotations

from orchestrator.fleet.loader import load_fleet_files
from orchestrator.policy.impact import Impact, impact
from orchestrator.reconcile.session import Session


def directive_reviews(session: Session) -> tuple[tuple[str, Impact], ...]:
    """``(status, impact)`` for every directive that is ``new`` or ``changed`` since the
    applied fleet (every directive of the fleet when nothing was applied yet), by id."""
    applied = session.store.applied_fleet()
    before = {} if applied is None else load_fleet_files(applied.files, "applied").directives
    fleet = session.fleet
    out: list[tuple[str, Impact]] = []
    for did in sorted(fleet.directives):
        d = fleet.directives[did]
        old = before.get(did)
        if old is not None and old.sha256 == d.sha256:
            continue
        base = fleet.with_directives({k: v for k, v in fleet.directives.items() if k != did})
        out.append(("new" if old is None else "changed", impact(base, d, session.at)))
    return tuple(out)
