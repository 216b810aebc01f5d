"""The local provider: a site is a directory, so the whole product runs offline and for real.

``sovereign demo``, the end-to-end tests and ``--sites local`` need a provider that really
stores artifacts and deployments without a cloud account. A site is
``<state_dir>/sites/<site-id>/``::

    artifacts/<model>/...               the weights, really copied from the model's source
    artifacts/<model>/.sovereign.json   what was copied: source URI, per-file sha256, digest
    deployments/<model>.json            the deployment manifest (status, artifact digest, spec)

Sources: ``file:///ABS/PATH``, ``file://./REL/PATH`` or a plain path (relative ones resolved
against the fleet directory; a directory copies the tree) are copied as files; ``s3://``,
``gs://`` and ``https://`` sources are streamed in and verified against the source's size and
checksum (``providers.transfer``). With ``offline_artifacts`` (``--sites local``) a model with
no local mirror is staged as a small deterministic synthetic artifact instead: no network.

``observe`` reads what is really on disk, verifying every artifact file against its manifest:
a file deleted or edited by hand shows up as drift, and a deployment whose artifact is missing
or differs from the one it was made from is reported as unhealthy, never as serving.
Artifacts are written to a temporary directory and renamed into place, so a crash (even
SIGKILL) never leaves a half-copied artifact behind under its real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import PermanentProviderError, TransientProviderError
from orchestrator.fleet.artifacts import FILE, mirrors_of, source_kind
from orchestrator.fleet.model import Site
from orchestrator.providers.base import (
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
    SiteProvider,
    spec_of,
)
from orchestrator.providers.sources import FileSource, pinned_sha256
from orchestrator.providers.transfer import CHUNK, ArtifactIntegrityError, VerifyingStream

ARTIFACT_MANIFEST = ".sovereign.json"
SYNTHETIC_WEIGHTS = "weights.safetensors"
SYNTHETIC_SIZE = 4096
_TMP_PREFIX = ".tmp-"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tree_files(root: Path) -> Iterator[Path]:
    """Every regular file below ``root`` except our manifest, in a stable order."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ARTIFACT_MANIFEST:
            yield path


def _digest_of(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode())
        h.update(b"\0")
        h.update(files[rel].encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def synthetic_weights(model_id: str, source: str) -> bytes:
    """Deterministic stand-in bytes for a remote artifact (same model and URI, same bytes)."""
    seed = hashlib.sha256(f"{model_id}\n{source}".encode()).digest()
    blocks = bytearray()
    counter = 0
    while len(blocks) < SYNTHETIC_SIZE:
        blocks += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(blocks[:SYNTHETIC_SIZE])


class LocalProvider(SiteProvider):
    """Sites as directories under ``<state_dir>/sites``; artifacts really copied."""

    name = "local"

    def __init__(self, context: ProviderContext) -> None:
        self._context = context
        self.root = context.state_dir / "sites"

    # -- layout -----------------------------------------------------------------------------

    def site_dir(self, site_id: str) -> Path:
        return self.root / site_id

    def artifact_dir(self, site_id: str, model_id: str) -> Path:
        return self.site_dir(site_id) / "artifacts" / model_id

    def deployment_file(self, site_id: str, model_id: str) -> Path:
        return self.site_dir(site_id) / "deployments" / f"{model_id}.json"

    # -- observe ----------------------------------------------------------------------------

    def artifact_digest(self, site_id: str, model_id: str) -> str | None:
        """The digest of an intact artifact, or None when it is missing or damaged."""
        manifest = self._read_artifact_manifest(self.artifact_dir(site_id, model_id))
        if manifest is None or self._damage(self.artifact_dir(site_id, model_id), manifest):
            return None
        digest = manifest.get("digest")
        return digest if isinstance(digest, str) else None

    def observe(self, site: Site) -> frozenset[Resource]:
        found: set[Resource] = set()
        artifacts = self.site_dir(site.id) / "artifacts"
        intact: dict[str, str] = {}
        if artifacts.is_dir():
            for entry in sorted(artifacts.iterdir()):
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                resource, digest = self._observe_artifact(site.id, entry)
                found.add(resource)
                if digest is not None:
                    intact[entry.name] = digest
        deployments = self.site_dir(site.id) / "deployments"
        if deployments.is_dir():
            for entry in sorted(deployments.glob("*.json")):
                found.add(self._observe_deployment(site.id, entry, intact))
        return frozenset(found)

    def _read_artifact_manifest(self, path: Path) -> dict[str, object] | None:
        try:
            data = json.loads((path / ARTIFACT_MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _damage(self, path: Path, manifest: dict[str, object]) -> str | None:
        """Why the artifact on disk differs from what was copied, or None if it is intact."""
        files = manifest.get("files")
        if not isinstance(files, dict):
            return "manifest unreadable"
        on_disk = {p.relative_to(path).as_posix() for p in _tree_files(path)}
        missing = sorted(set(files) - on_disk)
        if missing:
            return f"missing {missing[0]}"
        extra = sorted(on_disk - set(files))
        if extra:
            return f"unexpected {extra[0]}"
        for rel, digest in sorted(files.items()):
            if _sha256_file(path / rel) != digest:
                return f"modified {rel}"
        return None

    def _observe_artifact(self, site_id: str, path: Path) -> tuple[Resource, str | None]:
        manifest = self._read_artifact_manifest(path)
        if manifest is None:
            spec = spec_of(source="unknown", integrity="manifest missing")
            return Resource(ResourceKind.ARTIFACT, site_id, path.name, spec=spec), None
        source = str(manifest.get("source", "unknown"))
        damage = self._damage(path, manifest)
        if damage is not None:
            spec = spec_of(source=source, integrity=damage)
            return Resource(ResourceKind.ARTIFACT, site_id, path.name, spec=spec), None
        digest = manifest.get("digest")
        resource = Resource(ResourceKind.ARTIFACT, site_id, path.name, spec=spec_of(source=source))
        return resource, digest if isinstance(digest, str) else None

    def _observe_deployment(self, site_id: str, path: Path, intact: dict[str, str]) -> Resource:
        model_id = path.stem
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
            spec = spec_of(health="manifest unreadable")
            return Resource(ResourceKind.DEPLOYMENT, site_id, model_id, spec=spec)
        values: dict[str, str | int | None] = {str(k): str(v) for k, v in manifest["spec"].items()}
        if manifest.get("status") != "serving":
            values["health"] = f"status {manifest.get('status')!r}"
        elif model_id not in intact:
            values["health"] = "artifact missing"
        elif manifest.get("artifact_digest") != intact[model_id]:
            values["health"] = "artifact changed since deployment"
        return Resource(ResourceKind.DEPLOYMENT, site_id, model_id, spec=spec_of(**values))

    # -- apply ------------------------------------------------------------------------------

    def apply(self, site: Site, change: ResourceChange) -> None:
        try:
            super().apply(site, change)
        except OSError as exc:
            # A full disk or a permission problem may clear up; the reconciler retries.
            raise TransientProviderError(
                f"local site {site.id}: {change.resource.address}: {exc}",
                hint=f"check that {self.site_dir(site.id)} is writable and has space",
            ) from exc

    def put_artifact(self, site: Site, resource: Resource) -> None:
        self._write_artifact(site.id, resource)

    def remove_artifact(self, site: Site, resource: Resource) -> None:
        self._delete_artifact(site.id, resource.model)

    def put_deployment(self, site: Site, resource: Resource) -> None:
        self._write_deployment(site.id, resource)

    def remove_deployment(self, site: Site, resource: Resource) -> None:
        self.deployment_file(site.id, resource.model).unlink(missing_ok=True)

    def _delete_artifact(self, site_id: str, model_id: str) -> None:
        path = self.artifact_dir(site_id, model_id)
        if not path.exists():
            return
        # Rename first so that a crash mid-delete leaves a temp dir, never a damaged artifact.
        grave = path.parent / f"{_TMP_PREFIX}{model_id}-deleting"
        if grave.exists():
            shutil.rmtree(grave)
        path.rename(grave)
        shutil.rmtree(grave)

    def _write_deployment(self, site_id: str, resource: Resource) -> None:
        digest = self.artifact_digest(site_id, resource.model)
        if digest is None:
            # Fail closed: never mark a deployment serving without its weights.
            raise PermanentProviderError(
                f"cannot deploy {resource.model} at {site_id}: its artifact is missing or damaged",
                hint="the plan creates the artifact before the deployment; re-run plan and apply",
            )
        manifest = {
            "model": resource.model,
            "site": site_id,
            "status": "serving",
            "artifact_digest": digest,
            "spec": resource.spec_dict(),
        }
        path = self.deployment_file(site_id, resource.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)

    def _write_artifact(self, site_id: str, resource: Resource) -> None:
        source = self.artifact_source(resource)
        final = self.artifact_dir(site_id, resource.model)
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f"{_TMP_PREFIX}{resource.model}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{resource.model}-", dir=final.parent))
        try:
            self._fill(staging, resource)
            files = {
                p.relative_to(staging).as_posix(): _sha256_file(p) for p in _tree_files(staging)
            }
            manifest = {"source": source, "files": files, "digest": _digest_of(files)}
            (staging / ARTIFACT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            if final.exists():
                self._delete_artifact(site_id, resource.model)
            staging.rename(final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _fill(self, staging: Path, resource: Resource) -> None:
        model_id, spec = resource.model, self.artifact_source(resource)
        mirrors = mirrors_of(spec)
        if self._context.offline_artifacts and all(source_kind(m) != FILE for m in mirrors):
            # --sites local: no network; a small deterministic stand-in of the remote weights.
            (staging / SYNTHETIC_WEIGHTS).write_bytes(synthetic_weights(model_id, spec))
            (staging / "SOURCE").write_text(spec + "\n")
            return
        reader = self.source_reader(resource, FILE)
        if isinstance(reader, FileSource):
            path = reader.path  # the same host: a plain copy
            if path.is_dir():
                shutil.copytree(path, staging, dirs_exist_ok=True)
            elif path.is_file():
                shutil.copy2(path, staging / path.name)
                pinned = pinned_sha256(reader.uri)
                if pinned is not None and _sha256_file(staging / path.name) != pinned.digest.hex():
                    raise ArtifactIntegrityError(
                        f"site {resource.target}: {reader.uri}: the file's sha256 is not the "
                        "pinned one; nothing was kept",
                        hint="check the file, or the #sha256= pinned in models.yaml",
                    )
            else:
                reader.objects()  # raises: says what it resolved to and how to fix it
            return
        for obj in reader.objects():
            target = staging / obj.name
            if not target.resolve().is_relative_to(staging.resolve()):
                raise PermanentProviderError(
                    f"{reader.uri}: object {obj.name!r} would land outside the artifact directory"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            stream, described = reader.open(obj)
            verifying = VerifyingStream(
                stream, described, what=f"site {resource.target}: {reader.uri} -> {obj.name}"
            )
            try:
                with target.open("wb") as out:  # the staging directory goes on any failure
                    shutil.copyfileobj(verifying, out, CHUNK)
                verifying.finish()
            finally:
                verifying.close()
