"""The GCS side of a GCP site: its artifact bucket, the artifacts and the deployment manifests.

One bucket per site, in the site's region (``sovereign-<site>[-<suffix>]``), labelled
``sovereign-managed=true`` and ``sovereign-site=<id>``, uniform access, public access
prevented. Ownership is also written into a marker object ``.sovereign-bucket.json`` (metadata
``sovereign-managed``/``sovereign-site``), because label support differs between GCS and the
emulators the tests run against: a bucket is Sovereign's when its labels say so, or when it has
no ``sovereign-*`` labels at all and its marker says so. A bucket whose labels name another
site, or a namesake with neither, is never read into a plan nor touched.

Artifacts are copied in from ``gs://`` sources with server-side rewrites, or streamed from any
other source (``s3://``, ``https://``, ``file://``) through ``providers.transfer``: resumable
uploads in bounded chunks, verified against the source's size and checksum before the upload
completes (a mismatch abandons the upload and deletes anything at the key), then committed by a
manifest ``<model>/.sovereign-artifact.json``, as on AWS. A deployment at a GCP site is recorded
as ``deployments/<model>.json`` with status ``declared``: the intent record that the Pulumi stack
in ``infra/`` provisions serving capacity from. It is not a running endpoint.

Over 400 lines on purpose: everything the GCP provider does in GCS (bucket, artifacts, manifests,
copies), as ``providers/aws/s3.py`` does in S3, so that the two clouds read side by side.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from orchestrator.adaptors import gcp
from orchestrator.adaptors.gcp import call, lookup
from orchestrator.errors import PermanentProviderError
from orchestrator.fleet.artifacts import GCS
from orchestrator.fleet.model import Site
from orchestrator.providers.naming import bucket_name
from orchestrator.providers.sources import relative_name, selected_keys
from orchestrator.providers.transfer import CHUNK, SourceReader, VerifyingStream

LABEL_MANAGED = "sovereign-managed"
LABEL_SITE = "sovereign-site"
META_MODEL = "sovereign-model"
BUCKET_MARKER = ".sovereign-bucket.json"
MANIFEST = ".sovereign-artifact.json"
DEPLOYMENTS = "deployments/"
SYNTHETIC_OBJECT = "weights.synthetic"

ENDPOINT_OPTION = "gcs_endpoint_url"
PROJECT_OPTION = "gcp_project"
RETRY_OPTION = "gcs_retry_timeout"
# Seconds of the storage library's own retries per call: 0 (none), because the reconciler
# retries each change (RetryPolicy); setting it stacks a second layer (docs/providers.md,
# "Retries"). The GCS state store keeps the library's default retries: nobody retries above it.
DEFAULT_RETRY_TIMEOUT = 0.0


def gcs_bucket_name(site_id: str, suffix: str = "") -> str:
    # GCS refuses names containing "google"; the AWS rules are otherwise a subset of GCS's.
    return bucket_name(site_id, suffix).replace("google", "g00gle")


def label_value(value: str) -> str:
    """GCS label values: lowercase letters, digits, ``_`` and ``-``, at most 63 characters."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in value.lower())
    return cleaned[:63]


def ownership(site_id: str, model_id: str | None = None) -> dict[str, str]:
    """The labels that mark what this provider creates for a site (and a model)."""
    labels = {LABEL_MANAGED: "true", LABEL_SITE: label_value(site_id)}
    if model_id is not None:
        labels[META_MODEL] = label_value(model_id)
    return labels


class GcsClients:
    """google-cloud-storage clients, one per endpoint, created on first use (thread-safe).

    Without an endpoint option the client follows the library's own rules: application default
    credentials, or ``STORAGE_EMULATOR_HOST`` (anonymous) when set. ``gcs_endpoint_url`` and
    ``gcs_endpoint_url.<region>`` name an emulator or test server and use anonymous credentials.
    """

    def __init__(self, options: Mapping[str, str]) -> None:
        self._options = options
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def endpoint_for(self, region: str) -> str | None:
        return self._options.get(f"{ENDPOINT_OPTION}.{region}") or self._options.get(
            ENDPOINT_OPTION
        )

    def retry(self) -> Any:
        """The library's retry for a provider call: None (no retries) unless the option asks."""
        timeout = float(self._options.get(RETRY_OPTION, DEFAULT_RETRY_TIMEOUT))
        return gcp.retry(timeout) if timeout > 0 else None

    def client(self, region: str) -> Any:
        endpoint = self.endpoint_for(region)
        with self._lock:
            found = self._clients.get(endpoint)
            if found is not None:
                return found
            created = gcp.storage_client(self._options.get(PROJECT_OPTION), endpoint)
            self._clients[endpoint] = created
            return created


class SiteStore:
    """Bucket, artifacts and deployment manifests of GCP sites."""

    def __init__(self, clients: GcsClients, options: Mapping[str, str]) -> None:
        self._clients = clients
        self._options = options
        self._suffix = options.get("bucket_suffix", "")

    def bucket_for(self, site: Site) -> str:
        return gcs_bucket_name(site.id, self._suffix)

    def _bucket(self, site: Site) -> Any:
        return self._clients.client(site.region).bucket(self.bucket_for(site))

    # -- the bucket ------------------------------------------------------------------------

    def _get(self, site: Site) -> Any | None:
        client = self._clients.client(site.region)
        return lookup(
            site.id,
            "storage.buckets.get",
            client.get_bucket,
            self.bucket_for(site),
            retry=self._clients.retry(),
        )

    def _is_ours(self, site: Site, bucket: Any) -> bool:
        labels = dict(bucket.labels or {})
        if any(k.startswith("sovereign-") for k in labels):
            return labels == {**labels, **ownership(site.id)}
        marker = lookup(
            site.id,
            "storage.objects.get",
            bucket.get_blob,
            BUCKET_MARKER,
            retry=self._clients.retry(),
        )
        meta = dict(getattr(marker, "metadata", None) or {})
        return meta.get(LABEL_MANAGED) == "true" and meta.get(LABEL_SITE) == site.id

    def managed_bucket(self, site: Site) -> Any | None:
        bucket = self._get(site)
        return bucket if bucket is not None and self._is_ours(site, bucket) else None

    def ensure_bucket(self, site: Site) -> Any:
        """Create (or confirm) the site bucket: ours, in the site's region."""
        bucket = self._get(site)
        if bucket is None:
            bucket = self._create(site)
        elif not self._is_ours(site, bucket):
            raise PermanentProviderError(
                f"site {site.id}: bucket {bucket.name} exists but is not labelled as "
                "Sovereign's for this site; refusing to adopt or modify it",
                hint="delete or rename that bucket, or set the bucket_suffix option",
            )
        location = str(bucket.location or "").lower()
        if location != site.region.lower():
            raise PermanentProviderError(
                f"site {site.id}: bucket {bucket.name} is in {location or 'an unknown location'}"
                f", not {site.region}; refusing to store artifacts outside the site's region"
            )
        return bucket

    def _create(self, site: Site) -> Any:
        client = self._clients.client(site.region)
        bucket = client.bucket(self.bucket_for(site))
        bucket.labels = ownership(site.id)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"

        def create() -> bool:
            try:
                bucket.create(location=site.region, retry=self._clients.retry())
            except Exception as exc:
                if gcp.is_sdk_error(exc) and gcp.classify(exc) is gcp.Failure.CONFLICT:
                    return False  # the name is held: by us (a crashed run) or someone else
                raise  # mapped by ``call``
            return True

        if not call(site.id, "storage.buckets.create", create):
            # Someone (maybe a crashed earlier run of ours) holds the name: re-check ownership.
            existing = self._get(site)
            if existing is None or not self._is_ours(site, existing):
                raise PermanentProviderError(
                    f"site {site.id}: the bucket name {bucket.name} is taken",
                    hint="set the bucket_suffix option to a string unique to your fleet",
                )
            return existing
        marker = bucket.blob(BUCKET_MARKER)
        marker.metadata = {LABEL_MANAGED: "true", LABEL_SITE: site.id}
        call(
            site.id,
            "storage.objects.create",
            marker.upload_from_string,
            json.dumps({"site": site.id}),
            content_type="application/json",
        )
        return self._get(site) or bucket

    # -- reading ---------------------------------------------------------------------------

    def _blobs(self, site: Site, bucket: Any, prefix: str = "") -> dict[str, Any]:
        client = self._clients.client(site.region)

        def collect() -> dict[str, Any]:
            return {
                b.name: b
                for b in client.list_blobs(bucket, prefix=prefix, retry=self._clients.retry())
            }

        found: dict[str, Any] = lookup(site.id, "storage.objects.list", collect) or {}
        return found

    def _read_json(self, site: Site, blob: Any) -> dict[str, Any] | None:
        data = lookup(
            site.id, "storage.objects.get", blob.download_as_bytes, retry=self._clients.retry()
        )
        if data is None:
            return None
        try:
            parsed = json.loads(data)
        except ValueError:
            return None  # unreadable: treat as absent so the next apply rewrites it
        return parsed if isinstance(parsed, dict) else None

    def observe(self, site: Site) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """(model -> artifact source, model -> declared deployment spec) of a managed bucket."""
        bucket = self.managed_bucket(site)
        if bucket is None:
            return {}, {}
        blobs = self._blobs(site, bucket)
        artifacts: dict[str, str] = {}
        deployments: dict[str, dict[str, str]] = {}
        for name in sorted(blobs):
            if name.startswith(DEPLOYMENTS) and name.endswith(".json"):
                record = self._read_json(site, blobs[name])
                if record is not None and record.get("site") == site.id:
                    spec = record.get("spec", {})
                    model = name[len(DEPLOYMENTS) : -len(".json")]
                    deployments[model] = {str(k): str(v) for k, v in spec.items()}
                continue
            model, _, rest = name.partition("/")
            if rest != MANIFEST:
                continue
            manifest = self._read_json(site, blobs[name])
            if manifest is not None and all(o in blobs for o in manifest.get("objects", [])):
                artifacts[model] = str(manifest.get("source", ""))
        return artifacts, deployments

    # -- artifacts -------------------------------------------------------------------------

    def put_artifact(
        self, site: Site, model_id: str, source: str, reader: SourceReader | None
    ) -> None:
        """Copy the model's weights into the site bucket; ``source`` is the artifact spec
        (recorded), ``reader`` the chosen mirror, None for an offline synthetic stand-in."""
        if model_id + "/" == DEPLOYMENTS:
            raise PermanentProviderError(
                f"site {site.id}: a model named {model_id!r} would collide with the "
                "deployment manifests"
            )
        bucket = self.ensure_bucket(site)
        meta = {LABEL_MANAGED: "true", LABEL_SITE: site.id, META_MODEL: model_id}
        if reader is None:
            blob = bucket.blob(f"{model_id}/{SYNTHETIC_OBJECT}")
            blob.metadata = meta
            call(
                site.id,
                "storage.objects.create",
                blob.upload_from_string,
                f"synthetic weights of {model_id} (offline demo)\n",
            )
            written = [blob.name]
        elif reader.kind == GCS:
            written = self._copy_gcs(site, bucket, model_id, reader.uri, meta)
        else:
            written = self._stream(site, bucket, model_id, reader, meta)
        existing = self._blobs(site, bucket, f"{model_id}/")
        stale = set(existing) - set(written) - {f"{model_id}/{MANIFEST}"}
        self._delete_all(site, bucket, f"{model_id}/", only=stale)
        manifest = bucket.blob(f"{model_id}/{MANIFEST}")
        manifest.metadata = meta
        call(
            site.id,
            "storage.objects.create",
            manifest.upload_from_string,
            json.dumps(
                {
                    "model": model_id,
                    "source": source,
                    "copied_from": reader.uri if reader is not None else "synthetic",
                    "objects": written,
                },
                sort_keys=True,
            ),
            content_type="application/json",
        )

    def _copy_gcs(
        self, site: Site, bucket: Any, model_id: str, source: str, meta: dict[str, str]
    ) -> list[str]:
        parts = urlsplit(source)
        prefix = parts.path.lstrip("/")
        client = self._clients.client(site.region)
        src = client.bucket(parts.netloc)

        def names() -> list[str]:
            return [
                b.name for b in client.list_blobs(src, prefix=prefix, retry=self._clients.retry())
            ]

        listed = lookup(site.id, "storage.objects.list", names)
        keys = selected_keys(prefix, listed or [])
        if not keys:
            raise PermanentProviderError(
                f"site {site.id}: artifact source of {model_id} holds no objects: {source}",
                hint="check the model's artifact URI in models.yaml",
            )
        written: list[str] = []
        for key in keys:
            dest = bucket.blob(f"{model_id}/{relative_name(prefix, key)}")
            dest.metadata = meta
            token: str | None = None
            while True:  # rewrite copies large objects in several calls, across locations
                token, _done, _total = call(
                    site.id,
                    "storage.objects.create",
                    dest.rewrite,
                    src.blob(key),
                    token=token,
                    retry=self._clients.retry(),
                )
                if token is None:
                    break
            written.append(dest.name)
        return written

    def _stream(
        self, site: Site, bucket: Any, model_id: str, reader: SourceReader, meta: dict[str, str]
    ) -> list[str]:
        """Stream every object of a foreign source into the bucket, verified (see module)."""
        written: list[str] = []
        for obj in reader.objects():
            name = f"{model_id}/{obj.name}"
            stream, described = reader.open(obj)
            verifying = VerifyingStream(
                stream, described, what=f"site {site.id}: {reader.uri} -> gs://{bucket.name}/{name}"
            )
            dest = bucket.blob(name, chunk_size=CHUNK)
            dest.metadata = meta
            try:
                call(
                    site.id,
                    "storage.objects.create",
                    dest.upload_from_file,
                    verifying,
                    size=described.size,
                    rewind=False,
                )
                verifying.finish()
            except BaseException:
                self._delete_all(site, bucket, name, only={name})  # no partial object
                raise
            finally:
                verifying.close()
            written.append(name)
        return written

    def remove_artifact(self, site: Site, model_id: str) -> None:
        bucket = self.managed_bucket(site)
        if bucket is not None:
            self._delete_all(site, bucket, f"{model_id}/")

    def _delete_all(
        self, site: Site, bucket: Any, prefix: str, only: set[str] | None = None
    ) -> None:
        """Delete every generation of every object under ``prefix`` (or of ``only``)."""
        if only is not None and not only:
            return
        client = self._clients.client(site.region)

        def generations() -> list[Any]:
            return list(
                client.list_blobs(bucket, prefix=prefix, versions=True, retry=self._clients.retry())
            )

        for blob in lookup(site.id, "storage.objects.list", generations) or []:
            if only is not None and blob.name not in only:
                continue
            lookup(
                site.id,
                "storage.objects.delete",
                bucket.delete_blob,
                blob.name,
                generation=blob.generation,
                retry=self._clients.retry(),
            )

    # -- deployment manifests --------------------------------------------------------------

    def put_deployment(self, site: Site, model_id: str, spec: Mapping[str, str]) -> None:
        bucket = self.ensure_bucket(site)
        blob = bucket.blob(f"{DEPLOYMENTS}{model_id}.json")
        blob.metadata = {LABEL_MANAGED: "true", LABEL_SITE: site.id, META_MODEL: model_id}
        record = {
            "model": model_id,
            "site": site.id,
            "region": site.region,
            "spec": dict(spec),
            "status": "declared",
            "note": "intent record; serving capacity is provisioned by the Pulumi stack in infra/",
        }
        call(
            site.id,
            "storage.objects.create",
            blob.upload_from_string,
            json.dumps(record, sort_keys=True),
            content_type="application/json",
        )

    def remove_deployment(self, site: Site, model_id: str) -> None:
        bucket = self.managed_bucket(site)
        if bucket is not None:
            self._delete_all(
                site,
                bucket,
                f"{DEPLOYMENTS}{model_id}.json",
                only={f"{DEPLOYMENTS}{model_id}.json"},
            )
