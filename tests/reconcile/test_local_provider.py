"""The local provider against a real directory: copies, observation, drift, failures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator.errors import PermanentProviderError, TransientProviderError
from orchestrator.fleet.model import Site
from orchestrator.providers import create_provider
from orchestrator.providers.base import (
    Op,
    Provider,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    spec_of,
)
from orchestrator.providers.local import SYNTHETIC_WEIGHTS, LocalProvider, synthetic_weights
from orchestrator.providers.transfer import ArtifactIntegrityError
from tests.cloud_servers import free_port

SITE = Site(
    id="s1",
    jurisdiction="US",
    provider="local",
    region="r",
    country="US",
    operator="op",
    governed_by=frozenset(),
    governing=frozenset({"US"}),
)


def artifact(model: str, source: str) -> Resource:
    return Resource(ResourceKind.ARTIFACT, SITE.id, model, spec=spec_of(source=source))


def deployment(model: str, count: int = 1) -> Resource:
    return Resource(ResourceKind.DEPLOYMENT, SITE.id, model, spec=spec_of(instance_count=count))


def create(p: LocalProvider, r: Resource) -> None:
    p.apply(SITE, ResourceChange(Op.CREATE, None, r))


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    (root / "weights" / "tree" / "sub").mkdir(parents=True)
    (root / "weights" / "tree" / "a.bin").write_bytes(b"a" * 100)
    (root / "weights" / "tree" / "sub" / "b.bin").write_bytes(b"b" * 10)
    (root / "weights" / "single.bin").write_bytes(b"single")
    return root


def provider(fleet_dir: Path, offline: bool = False, **options: str) -> LocalProvider:
    ctx = ProviderContext(
        state_dir=fleet_dir / ".sovereign",
        offline_artifacts=offline,
        options={"fleet_dir": str(fleet_dir), **options},
    )
    p = create_provider("local", ctx)
    assert isinstance(p, LocalProvider) and isinstance(p, Provider)
    return p


def test_copies_a_directory_tree_and_observes_it(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    a, d = artifact("m", "weights/tree"), deployment("m")
    create(p, a)
    create(p, d)
    copied = p.artifact_dir(SITE.id, "m")
    assert (copied / "a.bin").read_bytes() == b"a" * 100
    assert (copied / "sub" / "b.bin").read_bytes() == b"b" * 10
    assert p.observe(SITE) == frozenset({a, d})
    assert not [x for x in copied.parent.iterdir() if x.name.startswith(".tmp")]


def test_file_url_and_absolute_path(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    url = artifact("m1", f"file://{fleet_dir}/weights/single.bin")
    abs_path = artifact("m2", str(fleet_dir / "weights" / "single.bin"))
    create(p, url)
    create(p, abs_path)
    assert (p.artifact_dir(SITE.id, "m1") / "single.bin").read_bytes() == b"single"
    assert p.observe(SITE) == frozenset({url, abs_path})


def test_deleting_a_file_by_hand_is_drift(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    a, d = artifact("m", "weights/tree"), deployment("m")
    create(p, a)
    create(p, d)
    (p.artifact_dir(SITE.id, "m") / "sub" / "b.bin").unlink()
    seen = {r.kind: r for r in p.observe(SITE)}
    assert seen[ResourceKind.ARTIFACT].spec_dict() == {
        "source": "weights/tree",
        "integrity": "missing sub/b.bin",
    }
    # A deployment whose weights are damaged is not a healthy deployment.
    assert seen[ResourceKind.DEPLOYMENT].spec_dict()["health"] == "artifact missing"
    # Re-applying the artifact repairs both.
    p.apply(SITE, ResourceChange(Op.UPDATE, seen[ResourceKind.ARTIFACT], a))
    assert p.observe(SITE) == frozenset({a, d})


def test_edited_file_and_extra_file_are_drift(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    create(p, artifact("m", "weights/tree"))
    target = p.artifact_dir(SITE.id, "m") / "a.bin"
    target.write_bytes(b"tampered")
    (only,) = p.observe(SITE)
    assert only.spec_dict()["integrity"] == "modified a.bin"
    target.write_bytes(b"a" * 100)
    (target.parent / "extra").write_text("x")
    (only,) = p.observe(SITE)
    assert only.spec_dict()["integrity"] == "unexpected extra"


def test_deleted_deployment_manifest_disappears(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    a, d = artifact("m", "weights/tree"), deployment("m", 2)
    create(p, a)
    create(p, d)
    p.deployment_file(SITE.id, "m").unlink()
    assert p.observe(SITE) == frozenset({a})
    p.deployment_file(SITE.id, "m").write_text("{not json")
    (broken,) = [r for r in p.observe(SITE) if r.kind is ResourceKind.DEPLOYMENT]
    assert broken.spec_dict() == {"health": "manifest unreadable"}


def test_delete_is_idempotent(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    a, d = artifact("m", "weights/tree"), deployment("m")
    create(p, a)
    create(p, d)
    for _ in range(2):
        p.apply(SITE, ResourceChange(Op.DELETE, d, None))
        p.apply(SITE, ResourceChange(Op.DELETE, a, None))
    assert p.observe(SITE) == frozenset()


def test_remote_sources_offline_are_synthetic_and_deterministic(fleet_dir: Path) -> None:
    p = provider(fleet_dir, offline=True)
    a = artifact("fable-5", "s3://acme-models/fable-5/")
    create(p, a)
    path = p.artifact_dir(SITE.id, "fable-5")
    assert (path / "SOURCE").read_text() == "s3://acme-models/fable-5/\n"
    weights = (path / SYNTHETIC_WEIGHTS).read_bytes()
    assert weights == synthetic_weights("fable-5", "s3://acme-models/fable-5/")
    assert weights != synthetic_weights("mythos-5", "s3://acme-models/mythos-5/")
    assert p.observe(SITE) == frozenset({a})


def test_unreachable_remote_source_fails_the_change_and_leaves_nothing(fleet_dir: Path) -> None:
    # A gs:// source is streamed in (tests/providers/test_sources.py); here its server is down.
    closed = f"http://127.0.0.1:{free_port()}"
    p = provider(fleet_dir, offline=False, gcs_endpoint_url=closed, gcs_retry_timeout="0.5")
    with pytest.raises(TransientProviderError) as err:
        create(p, artifact("m", "gs://bucket/m/"))
    assert "gs://bucket/m/" in err.value.message
    assert p.observe(SITE) == frozenset()
    assert list((p.site_dir(SITE.id) / "artifacts").iterdir()) == []


def test_missing_source_and_deploy_without_artifact_fail_permanently(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    with pytest.raises(PermanentProviderError, match="not found"):
        create(p, artifact("m", "weights/nope"))
    with pytest.raises(PermanentProviderError, match="missing or damaged"):
        create(p, deployment("m"))
    assert p.observe(SITE) == frozenset()


def test_unwritable_site_is_transient(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    p.root.mkdir(parents=True)
    p.site_dir(SITE.id).write_text("a file where the site directory should be")
    with pytest.raises(TransientProviderError):
        create(p, artifact("m", "weights/tree"))


def test_leftover_temp_dirs_are_ignored_and_cleaned(fleet_dir: Path) -> None:
    p = provider(fleet_dir)
    stale = p.site_dir(SITE.id) / "artifacts" / ".tmp-m-crashed"
    stale.mkdir(parents=True)
    (stale / "half").write_bytes(b"x")
    assert p.observe(SITE) == frozenset()
    create(p, artifact("m", "weights/tree"))
    assert not stale.exists()


def test_a_pinned_sha256_is_checked_on_a_local_copy(fleet_dir: Path) -> None:
    weights = fleet_dir / "weights" / "pinned.bin"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"pinned weights")
    good = hashlib.sha256(b"pinned weights").hexdigest()
    p = provider(fleet_dir)
    create(p, artifact("m", f"file://{weights}#sha256={good}"))
    assert {r.model for r in p.observe(SITE)} == {"m"}
    bad = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ArtifactIntegrityError):
        create(p, artifact("n", f"file://{weights}#sha256={bad}"))
    assert {r.model for r in p.observe(SITE)} == {"m"}  # nothing kept of n
