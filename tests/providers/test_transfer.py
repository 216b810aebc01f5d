"""The verified stream and the artifact-source forms, as properties over random inputs."""

from __future__ import annotations

import hashlib
import io
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleet.artifacts import artifact_spec, mirrors_of, source_kind
from orchestrator.providers.sources import choose_mirror, selected_keys
from orchestrator.providers.transfer import (
    CHUNK,
    PROGRESS_MIN_BYTES,
    ArtifactIntegrityError,
    Checksum,
    SourceObject,
    VerifyingStream,
)


class _Bytes(io.BytesIO):
    pass


def _drain(stream: VerifyingStream, chunk: int) -> bytes:
    out = b""
    while True:
        data = stream.read(chunk)
        if not data:
            break
        out += data
    stream.finish()
    return out


@settings(deadline=None)
@given(st.binary(max_size=4096), st.integers(1, 700), st.sampled_from(["md5", "sha256", None]))
def test_a_faithful_stream_passes_whole(data: bytes, chunk: int, algorithm: str | None) -> None:
    checksum = (
        None if algorithm is None else Checksum(algorithm, hashlib.new(algorithm, data).digest())
    )
    obj = SourceObject("k", "k", len(data), checksum)
    stream = VerifyingStream(_Bytes(data), obj, what="t")
    assert _drain(stream, chunk) == data
    assert stream.sha256 == hashlib.sha256(data).hexdigest()


@settings(deadline=None)
@given(
    st.binary(min_size=1, max_size=4096),
    st.integers(1, 700),
    st.sampled_from(["size-short", "size-long", "checksum"]),
)
def test_a_mismatch_raises_before_the_last_bytes_are_handed_out(
    data: bytes, chunk: int, fault: str
) -> None:
    size = len(data)
    digest = hashlib.sha256(data).digest()
    if fault == "size-short":
        size -= 1
    elif fault == "size-long":
        size += 1
    else:
        digest = hashlib.sha256(data + b"x").digest()
    obj = SourceObject("k", "k", size, Checksum("sha256", digest))
    stream = VerifyingStream(_Bytes(data), obj, what="t")
    handed_out = b""
    with pytest.raises(ArtifactIntegrityError):
        while True:
            piece = stream.read(chunk)
            if not piece:
                stream.finish()
                break
            handed_out += piece
    # Whatever the consumer received, it never received the whole, unverified object.
    assert handed_out != data or fault == "size-long"
    assert len(handed_out) < len(data) or fault == "size-long"


_SOURCES = st.one_of(
    st.builds(
        lambda b, p: f"s3://{b}/{p}",
        st.from_regex(r"[a-z0-9-]{3,12}", fullmatch=True),
        st.from_regex(r"[a-z0-9/._-]{0,20}", fullmatch=True),
    ),
    st.builds(
        lambda b, p: f"gs://{b}/{p}",
        st.from_regex(r"[a-z0-9-]{3,12}", fullmatch=True),
        st.from_regex(r"[a-z0-9/._-]{0,20}", fullmatch=True),
    ),
    st.builds(
        lambda p: f"https://example.com/{p}", st.from_regex(r"[a-z0-9/._-]{1,20}", fullmatch=True)
    ),
    st.builds(lambda p: f"weights/{p}", st.from_regex(r"[a-z0-9._-]{1,20}", fullmatch=True)),
)


@settings(deadline=None)
@given(st.lists(_SOURCES, min_size=1, max_size=4))
def test_mirror_lists_round_trip_through_their_spec(mirrors: list[str]) -> None:
    assert mirrors_of(artifact_spec(mirrors)) == tuple(mirrors)
    assert all(source_kind(m) is not None for m in mirrors)


@settings(deadline=None)
@given(
    st.sampled_from(["http", "ftp", "gopher", "sftp", "s4", "hdfs"]),
    st.text(min_size=1, max_size=10),
)
def test_other_schemes_are_not_sources(scheme: str, rest: str) -> None:
    assert source_kind(f"{scheme}://host/{rest}") is None


@settings(deadline=None)
@given(st.lists(_SOURCES, min_size=2, max_size=5), st.sampled_from(["s3", "gs", "file"]))
def test_the_own_cloud_mirror_is_taken_first_when_readable(mirrors: list[str], own: str) -> None:
    chosen = choose_mirror(mirrors, own, lambda uri: None)
    own_mirrors = [m for m in mirrors if source_kind(m) == own]
    assert chosen == (own_mirrors[0] if own_mirrors else mirrors[0])


@settings(deadline=None)
@given(st.lists(st.from_regex(r"(dir|dir-old|other)(/[a-z]{1,3}){0,2}/?", fullmatch=True)))
def test_a_prefix_selects_the_object_or_its_folder_never_a_sibling(keys: list[str]) -> None:
    chosen = selected_keys("dir", keys)
    assert all(k == "dir" or k.startswith("dir/") for k in chosen)
    assert not any(k.endswith("/") for k in chosen)
    assert set(chosen) == {
        k for k in keys if (k == "dir" or k.startswith("dir/")) and not k.endswith("/")
    }


class _Zeros:
    """``size`` zero bytes, without holding them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1, /) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        self.left -= n
        return bytes(n)

    def close(self) -> None:
        pass


def test_a_large_copy_reports_its_progress(caplog: pytest.LogCaptureFixture) -> None:
    size = PROGRESS_MIN_BYTES + CHUNK
    obj = SourceObject("k", "weights.safetensors", size, None)
    stream = VerifyingStream(_Zeros(size), obj, what="site s: s3://b/m -> gs://t/m")
    with caplog.at_level(logging.INFO, logger="orchestrator.transfer"):
        assert len(_drain(stream, CHUNK)) == size
    lines = [r.getMessage() for r in caplog.records if r.name == "orchestrator.transfer"]
    assert lines and lines[-1].startswith("site s: s3://b/m -> gs://t/m: 72 of 72 MiB (100%")
    # Small objects stay quiet.
    caplog.clear()
    small = VerifyingStream(_Zeros(CHUNK), obj._replace(size=CHUNK), what="small")
    with caplog.at_level(logging.INFO, logger="orchestrator.transfer"):
        _drain(small, CHUNK)
    assert not caplog.records
