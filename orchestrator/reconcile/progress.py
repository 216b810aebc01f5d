"""A rich progress display for apply: one task per target (site, table, DNS zone).

Shared by ``sovereign apply`` and the demo so that both show the same thing. Thread-safe:
apply workers report from several threads and rich locks its own state.
"""

from __future__ import annotations

from rich.progress import Progress, TaskID

from orchestrator.planning.plan import Change


class ProgressObserver:
    """An ``ApplyObserver`` that advances one rich progress task per target."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def started(self, target: str, total: int) -> None:
        self.tasks[target] = self.progress.add_task(target, total=total)

    def advanced(self, target: str, change: Change, ok: bool) -> None:
        del change
        self.progress.advance(self.tasks[target])
        if not ok:
            self.progress.update(self.tasks[target], description=f"[red]{target} (failed)")
