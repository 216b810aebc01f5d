"""Artifact buckets: one versioned, private, tagged bucket per AWS site, in the site's region.

Model weights are copied server-side from an ``s3://`` source (a managed multipart copy), or
streamed from any other source (``gs://``, ``https://``, ``file://``) through
``providers.transfer`` as multipart uploads of bounded size, each object verified against the
source's size and checksum before its upload completes (a mismatch aborts the upload and
deletes every version at the key: no partial object). Either way they land in
``<model>/...`` of the site bucket, then a manifest ``<model>/.sovereign-artifact.json`` is
written last: the manifest is the commit marker, so a half-finished copy is never observed as
a stored artifact, and an object deleted behind our back makes the artifact observed as
missing (drift). Removal deletes every *version* of every object under the model's prefix: a
delete marker would leave the weights in a region the law says they must leave.

Over 400 lines on purpose: everything the AWS provider does in S3 (bucket, artifacts, copies,
version deletes), as ``providers/gcp/storage.py`` does in GCS, so that the two clouds read side by
side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

from orchestrator.adaptors import aws
from orchestrator.adaptors.aws import (
    ACCESS_DENIED_CODES,
    call,
    error_code,
    lookup,
    pages,
)
from orchestrator.errors import PermanentProviderError
from orchestrator.fleet.artifacts import S3
from orchestrator.fleet.model import Site
from orchestrator.providers.aws.naming import (
    bucket_name,
    is_managed_by,
    managed_tags,
    tag_dict,
    tag_list,
)
from orchestrator.providers.aws.session import AwsClients
from orchestrator.providers.base import Resource, ResourceKind, spec_of
from orchestrator.providers.sources import relative_name, selected_keys
from orchestrator.providers.transfer import CHUNK, SourceReader, VerifyingStream

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

MANIFEST = ".sovereign-artifact.json"
SYNTHETIC_OBJECT = "weights.synthetic"
_DELETE_BATCH = 1000  # DeleteObjects limit


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix); refuses anything else."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise PermanentProviderError(
            f"artifact source {uri!r} is not an s3:// URI",
            hint="AWS sites copy weights from s3://BUCKET/PREFIX/ sources",
        )
    return parts.netloc, parts.path.lstrip("/")


def _tagging_header(tags: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(tags.items()))


class ArtifactBuckets:
    """The S3 side of an AWS site: its bucket and the model artifacts in it."""

    def __init__(self, clients: AwsClients, suffix: str = "") -> None:
        self._clients = clients
        self._suffix = suffix

    def bucket_for(self, site: Site) -> str:
        return bucket_name(site.id, self._suffix)

    def _s3(self, site: Site) -> S3Client:
        return self._clients.s3(site.region)

    # -- the bucket ------------------------------------------------------------------------

    def _tags(self, site: Site, bucket: str) -> dict[str, str] | None:
        """The bucket's tags; None when the bucket does not exist."""
        s3 = self._s3(site)
        try:
            if lookup(site.id, "s3:ListBucket", s3.head_bucket, Bucket=bucket) is None:
                return None
        except PermanentProviderError as exc:
            if exc.__cause__ is None or error_code(exc.__cause__) not in ACCESS_DENIED_CODES:
                raise
            # HeadBucket answers 403 both for a missing permission and for a bucket that
            # another account owns; say both.
            raise PermanentProviderError(
                f"site {site.id}: bucket {bucket} is not accessible: either another account "
                "owns that name, or the credentials lack s3:ListBucket",
                hint="set the bucket_suffix option to a string unique to your fleet, or grant "
                "s3:ListBucket on arn:aws:s3:::sovereign-*",
            ) from exc
        found = lookup(site.id, "s3:GetBucketTagging", s3.get_bucket_tagging, Bucket=bucket)
        return tag_dict(found.get("TagSet") if found else None)

    def managed_bucket(self, site: Site) -> str | None:
        """The site's bucket if it exists AND carries this site's tags, else None."""
        bucket = self.bucket_for(site)
        tags = self._tags(site, bucket)
        return bucket if tags is not None and is_managed_by(tags, site.id) else None

    def ensure_bucket(self, site: Site) -> str:
        """Create (or confirm) the site bucket: right region, tagged, versioned, private."""
        s3 = self._s3(site)
        bucket = self.bucket_for(site)
        tags = self._tags(site, bucket)
        if tags is None:
            self._create(site, bucket)
        elif not tags and self._is_remnant(site, bucket):
            self._tag(site, bucket)  # our own create, cut off before its tags
        elif not is_managed_by(tags, site.id):
            raise PermanentProviderError(
                f"site {site.id}: bucket {bucket} exists but is not tagged as Sovereign's for "
                "this site; refusing to adopt or modify it",
                hint="delete or rename that bucket, or set the bucket_suffix option so "
                "Sovereign uses another name",
            )
        location = call(site.id, "s3:GetBucketLocation", s3.get_bucket_location, Bucket=bucket)
        region = location.get("LocationConstraint") or "us-east-1"
        if region != site.region:
            raise PermanentProviderError(
                f"site {site.id}: bucket {bucket} is in {region}, not {site.region}; "
                "refusing to store artifacts outside the site's region"
            )
        call(
            site.id,
            "s3:PutBucketPublicAccessBlock",
            s3.put_public_access_block,
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        call(
            site.id,
            "s3:PutBucketVersioning",
            s3.put_bucket_versioning,
            Bucket=bucket,
            VersioningConfiguration={"Status": "Enabled"},
        )
        return bucket

    def _create(self, site: Site, bucket: str) -> None:
        s3 = self._s3(site)
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if site.region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": site.region}
        try:
            call(site.id, "s3:CreateBucket", s3.create_bucket, **kwargs)
        except PermanentProviderError as exc:
            code = error_code(exc.__cause__) if exc.__cause__ is not None else ""
            if code == "BucketAlreadyExists":
                raise PermanentProviderError(
                    f"site {site.id}: the bucket name {bucket} is taken by another account",
                    hint="set the bucket_suffix option to a string unique to your fleet",
                ) from exc
            if code != "BucketAlreadyOwnedByYou":
                raise
            if self._is_remnant(site, bucket):
                # Most likely our own create: it reached S3 but its answer was lost and the
                # retry met the bucket. Bare and empty, it holds nothing of anyone's.
                self._tag(site, bucket)
                return
            # It appeared since we looked: someone else made it, so it is not ours to tag.
            raise PermanentProviderError(
                f"site {site.id}: bucket {bucket} was created by someone else meanwhile; "
                "refusing to adopt it",
                hint="delete or rename that bucket, or set the bucket_suffix option",
            ) from exc
        # Tag first, so that even a bucket left half-configured by a crash is recognisably ours.
        self._tag(site, bucket)

    def _tag(self, site: Site, bucket: str) -> None:
        call(
            site.id,
            "s3:PutBucketTagging",
            self._s3(site).put_bucket_tagging,
            Bucket=bucket,
            Tagging={"TagSet": tag_list(managed_tags(site.id))},
        )

    def _is_remnant(self, site: Site, bucket: str) -> bool:
        """Whether a bucket of this site's name that carries no tags is what a create cut short
        leaves (the create reached S3, its tagging did not): no object or object version in it,
        and no bucket policy. Such a bucket holds nothing and grants nothing, so tagging it as
        ours adopts no one's data; any bucket with content or a policy is refused as before."""
        s3 = self._s3(site)
        versions = lookup(
            site.id,
            "s3:ListBucketVersions",
            s3.list_object_versions,
            Bucket=bucket,
            MaxKeys=1,
        )
        if versions is None or versions.get("Versions") or versions.get("DeleteMarkers"):
            return False
        policy = lookup(site.id, "s3:GetBucketPolicy", s3.get_bucket_policy, Bucket=bucket)
        return policy is None

    # -- artifacts -------------------------------------------------------------------------

    def _keys(self, site: Site, bucket: str, prefix: str) -> dict[str, int] | None:
        found = pages(
            site.id,
            "s3:ListBucket",
            self._s3(site),
            "list_objects_v2",
            Bucket=bucket,
            Prefix=prefix,
        )
        if found is None:
            return None
        return {o["Key"]: int(o.get("Size", 0)) for page in found for o in page.get("Contents", [])}

    def observe(self, site: Site) -> frozenset[Resource]:
        """Stored artifacts whose manifest exists and whose every object is still present."""
        bucket = self.managed_bucket(site)
        if bucket is None:
            return frozenset()
        keys = self._keys(site, bucket, "") or {}
        found: set[Resource] = set()
        for key in sorted(keys):
            model, _, name = key.partition("/")
            if name != MANIFEST:
                continue
            manifest = self._read_manifest(site, bucket, key)
            if manifest is None:
                continue
            if all(k in keys for k in manifest.get("objects", [])):
                found.add(
                    Resource(
                        kind=ResourceKind.ARTIFACT,
                        target=site.id,
                        model=model,
                        spec=spec_of(source=str(manifest.get("source", ""))),
                    )
                )
        return frozenset(found)

    def _read_manifest(self, site: Site, bucket: str, key: str) -> dict[str, Any] | None:
        s3 = self._s3(site)
        got = lookup(site.id, "s3:GetObject", s3.get_object, Bucket=bucket, Key=key)
        if got is None:
            return None
        body = call(site.id, "s3:GetObject", got["Body"].read)
        try:
            manifest = json.loads(body)
        except ValueError:
            return None  # a corrupt manifest is an artifact we cannot vouch for: re-copy it
        return manifest if isinstance(manifest, dict) else None

    def put(
        self, site: Site, model_id: str, source: str, reader: SourceReader | None = None
    ) -> None:
        """Copy the model's weights into the site bucket (idempotent). ``source`` is the
        artifact spec (recorded in the manifest, compared by ``observe``); ``reader`` the
        mirror chosen to copy from, None for an offline run's synthetic stand-in."""
        bucket = self.ensure_bucket(site)
        s3 = self._s3(site)
        tags = managed_tags(site.id, model_id)
        copied_from = reader.uri if reader is not None else "synthetic"
        metadata = {"sovereign-model": model_id, "sovereign-source": quote(copied_from, safe=":/")}
        if reader is None:
            written = [f"{model_id}/{SYNTHETIC_OBJECT}"]
            call(
                site.id,
                "s3:PutObject",
                s3.put_object,
                Bucket=bucket,
                Key=written[0],
                Body=f"synthetic weights of {model_id} (offline demo)\n".encode(),
                Metadata=metadata,
                Tagging=_tagging_header(tags),
            )
        elif reader.kind == S3:
            written = self._copy_from(site, bucket, model_id, reader.uri, tags, metadata)
        else:
            written = self._stream_from(site, bucket, model_id, reader, tags, metadata)
        stale = set(self._keys(site, bucket, f"{model_id}/") or {}) - set(written)
        stale.discard(f"{model_id}/{MANIFEST}")
        self._delete_versions(site, bucket, sorted(stale))
        manifest = {
            "model": model_id,
            "source": source,
            "copied_from": copied_from,
            "objects": written,
        }
        call(
            site.id,
            "s3:PutObject",
            s3.put_object,
            Bucket=bucket,
            Key=f"{model_id}/{MANIFEST}",
            Body=json.dumps(manifest, sort_keys=True).encode(),
            ContentType="application/json",
            Metadata={"sovereign-model": model_id},
            Tagging=_tagging_header(tags),
        )

    def _copy_from(
        self,
        site: Site,
        bucket: str,
        model_id: str,
        source: str,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> list[str]:
        src_bucket, prefix = parse_s3_uri(source)
        s3 = self._s3(site)
        listed = self._keys(site, src_bucket, prefix)
        if listed is None:
            raise PermanentProviderError(
                f"site {site.id}: artifact source bucket of {model_id} does not exist: {source}"
            )
        objects = selected_keys(prefix, list(listed))
        if not objects:
            raise PermanentProviderError(
                f"site {site.id}: artifact source of {model_id} holds no objects: {source}",
                hint="check the model's artifact URI in models.yaml",
            )
        written: list[str] = []
        for key in objects:
            dest = f"{model_id}/{relative_name(prefix, key)}"
            call(
                site.id,
                "s3:PutObject",
                s3.copy,
                CopySource={"Bucket": src_bucket, "Key": key},
                Bucket=bucket,
                Key=dest,
                ExtraArgs={
                    "MetadataDirective": "REPLACE",
                    "Metadata": metadata,
                    "TaggingDirective": "REPLACE",
                    "Tagging": _tagging_header(tags),
                },
            )
            written.append(dest)
        return written

    def _stream_from(
        self,
        site: Site,
        bucket: str,
        model_id: str,
        reader: SourceReader,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> list[str]:
        """Stream every object of a foreign source into the bucket, verified (see module)."""
        s3 = self._s3(site)
        config = aws.transfer_config(chunk=CHUNK, max_concurrency=4)
        written: list[str] = []
        for obj in reader.objects():
            key = f"{model_id}/{obj.name}"
            stream, described = reader.open(obj)
            verifying = VerifyingStream(
                stream, described, what=f"site {site.id}: {reader.uri} -> s3://{bucket}/{key}"
            )
            try:
                call(
                    site.id,
                    "s3:PutObject",
                    s3.upload_fileobj,
                    Fileobj=cast("IO[bytes]", verifying),  # read() is all boto3 asks of it
                    Bucket=bucket,
                    Key=key,
                    ExtraArgs={"Metadata": metadata, "Tagging": _tagging_header(tags)},
                    Config=config,
                )
                verifying.finish()
            except BaseException:
                self._delete_versions(site, bucket, [key])  # never leave a partial object
                raise
            finally:
                verifying.close()
            written.append(key)
        return written

    def remove(self, site: Site, model_id: str) -> None:
        """Delete every version of the model's objects; a missing bucket means already gone."""
        bucket = self.managed_bucket(site)
        if bucket is None:
            return  # nothing of ours is there (an untagged bucket is never touched)
        found = pages(
            site.id,
            "s3:ListBucketVersions",
            self._s3(site),
            "list_object_versions",
            Bucket=bucket,
            Prefix=f"{model_id}/",
        )
        versions: list[ObjectIdentifierTypeDef] = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for page in found or []
            for v in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
        ]
        self._delete(site, bucket, versions)

    def _delete_versions(self, site: Site, bucket: str, keys: Iterable[str]) -> None:
        wanted = set(keys)
        if not wanted:
            return
        found = pages(
            site.id,
            "s3:ListBucketVersions",
            self._s3(site),
            "list_object_versions",
            Bucket=bucket,
        )
        self._delete(
            site,
            bucket,
            [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for page in found or []
                for v in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
                if v["Key"] in wanted
            ],
        )

    def _delete(self, site: Site, bucket: str, objects: list[ObjectIdentifierTypeDef]) -> None:
        s3 = self._s3(site)
        for start in range(0, len(objects), _DELETE_BATCH):
            batch = objects[start : start + _DELETE_BATCH]
            result = call(
                site.id,
                "s3:DeleteObjectVersion",
                s3.delete_objects,
                Bucket=bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            errors = [e for e in result.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise PermanentProviderError(
                    f"site {site.id}: could not delete {len(errors)} object version(s) of "
                    f"{bucket}, e.g. {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message', '')}",
                    hint="grant s3:DeleteObjectVersion on the artifact bucket",
                )
