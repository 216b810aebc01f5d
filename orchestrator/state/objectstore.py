"""Object-storage state stores (s3://, gs://): the same interface over conditional writes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.errors import StateError

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore
    from orchestrator.state.url import StateLocation


def open_object_store(where: StateLocation, *, create: bool, lease_seconds: float) -> StateStore:
    raise StateError(
        f"{where.scheme}:// state is not available yet",
        hint="use the default SQLite state (omit --state) or --state sqlite:///PATH",
    )
