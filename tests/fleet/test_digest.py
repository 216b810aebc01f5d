"""The one fleet digest: what the loader, the state, plans and the gateway call a fleet version."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import StateError
from orchestrator.fleet.digest import fleet_digest
from orchestrator.fleet.loader import load_fleet, read_fleet_files
from orchestrator.fleet.model import derived_digest
from orchestrator.policy.table import fleet_version
from orchestrator.reconcile.sequence import plan_and_apply
from orchestrator.reconcile.session import open_session
from orchestrator.state.sqlite import SqliteStateStore
from tests.fleet.builder import FleetFactory

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)
file_sets = st.dictionaries(names, st.binary(max_size=20), min_size=1, max_size=5)


@given(file_sets, st.data())
def test_digest_is_order_free_and_names_every_path_and_byte(
    files: dict[str, bytes], data: st.DataObject
) -> None:
    base = fleet_digest(files)
    assert base == fleet_digest(dict(reversed(list(files.items()))))
    rel = data.draw(st.sampled_from(sorted(files)))
    assert fleet_digest({**files, rel: files[rel] + b"x"}) != base
    renamed = {(k + "x" if k == rel else k): v for k, v in files.items()}
    assert fleet_digest(renamed) != base
    without = {k: v for k, v in files.items() if k != rel}
    assert fleet_digest(without) != base


def test_fleet_state_plan_and_gateway_share_one_digest(
    signed_fleet_factory: FleetFactory,
) -> None:
    root = signed_fleet_factory()
    fleet = load_fleet(root)
    assert fleet.digest == fleet_digest(read_fleet_files(root))
    session = open_session(root, None, at=datetime(2026, 6, 13, tzinfo=UTC), sites_local=True)
    try:
        done = plan_and_apply(session)
        applied = session.store.applied_fleet()
    finally:
        session.close()
    assert done.plan.fleet_digest == fleet.digest
    assert applied is not None and applied.digest == fleet.digest
    db = sqlite3.connect(root / ".sovereign" / "state.db")
    try:
        (stored,) = db.execute("SELECT digest FROM applied_fleet").fetchone()
    finally:
        db.close()
    assert stored == fleet.digest


def test_a_state_recorded_with_the_old_digest_still_verifies(tmp_path: Path) -> None:
    files = {"eu.yaml": b"a\n", "directives/d.yaml": b"b\n"}
    store = SqliteStateStore(tmp_path / "state.db")
    with store.lock("apply") as lease:
        store.record_applied_fleet(lease, files)
    listing = [[p, hashlib.sha256(d).hexdigest()] for p, d in sorted(files.items())]
    old = hashlib.sha256(
        json.dumps(listing, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("UPDATE applied_fleet SET digest = ?", (old,))
    db.commit()
    applied = store.applied_fleet()
    assert applied is not None and applied.digest == fleet_digest(files)
    db.execute("UPDATE applied_fleet SET digest = ?", ("0" * 64,))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="does not match its digest"):
        store.applied_fleet()
    store.close()


def test_with_directives_never_keeps_a_stale_digest(example_fleet_dir: Path) -> None:
    fleet = load_fleet(example_fleet_dir)
    ids = sorted(fleet.directives)
    assert ids, "the example fleet has directives"
    same = fleet.with_directives(dict(fleet.directives))
    assert same.digest == fleet.digest
    versions = {fleet.digest}
    for drop in ids:
        fewer = fleet.with_directives({i: d for i, d in fleet.directives.items() if i != drop})
        assert fewer.digest not in versions
        versions.add(fewer.digest)
        assert fleet_version(fewer) != fleet_version(fleet)
    none = fleet.with_directives({})
    assert none.digest not in versions
    first = fleet.directives[ids[0]]
    moved = fleet.with_directives(
        {**fleet.directives, first.id: replace(first, expires=datetime(2099, 1, 1, tzinfo=UTC))}
    )
    assert moved.digest not in versions | {none.digest}
    # derived digests are deterministic: the same what-if names the same version
    assert moved.digest == derived_digest(fleet.digest, moved.directives)
