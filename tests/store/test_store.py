"""The media store's contract, held by both implementations: a local folder, and S3 (a real
SeaweedFS server)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from scenecap.core.errors import StoredObjectMissing, StoreUnavailable
from scenecap.store import MediaStore
from scenecap.store.local import LocalStore
from scenecap.store.s3 import S3Store
from tests.support.seaweedfs import REGION, S3Server


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MediaStore]:
    if request.param == "file":
        yield LocalStore(f"file://{tmp_path / 'store'}")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    prefix = f"tests/{uuid.uuid4().hex}"
    store = S3Store(server.store_url(prefix), endpoint_url=server.endpoint_url, region=REGION)
    yield store
    store.delete_prefix("")


async def chunks_of(data: bytes, size: int, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise RuntimeError("the client went away")
        yield data[start : start + size]


def test_what_is_put_comes_back(store: MediaStore) -> None:
    store.put("jobs/1/thumbnails/0.jpg", b"\xff\xd8 a thumbnail")
    assert store.get("jobs/1/thumbnails/0.jpg") == b"\xff\xd8 a thumbnail"
    assert store.size("jobs/1/thumbnails/0.jpg") == 14


def test_a_stream_is_stored_whole(store: MediaStore) -> None:
    data = os.urandom(12 * 1024 * 1024 + 123)  # more than one multipart part
    asyncio.run(store.put_stream("uploads/a", chunks_of(data, 64 * 1024)))
    assert store.size("uploads/a") == len(data)
    with store.open("uploads/a") as reader:
        assert hashlib.sha256(reader.read()).digest() == hashlib.sha256(data).digest()


def test_a_stream_that_fails_leaves_nothing(store: MediaStore) -> None:
    data = os.urandom(12 * 1024 * 1024)
    with pytest.raises(RuntimeError, match="went away"):
        asyncio.run(store.put_stream("uploads/b", chunks_of(data, 64 * 1024, fail_after=9 << 20)))
    assert store.size("uploads/b") is None
    assert list(store.list("uploads/")) == []


def test_a_reader_reads_the_range_it_is_asked_for(store: MediaStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    store.put("jobs/2/media", data)
    with store.open("jobs/2/media") as reader:
        reader.seek(2_500_000)
        assert reader.read(1000) == data[2_500_000:2_501_000]
        assert reader.tell() == 2_501_000
        reader.seek(10)
        assert reader.read(5) == data[10:15]


def test_files_go_in_and_come_out_streamed(store: MediaStore, tmp_path: Path) -> None:
    original = tmp_path / "video.mp4"
    original.write_bytes(os.urandom(5 * 1024 * 1024))
    store.put_file("jobs/3/media", original)
    copy = tmp_path / "copy.mp4"
    store.download("jobs/3/media", copy)
    assert copy.read_bytes() == original.read_bytes()


def test_a_copy_outlives_its_source(store: MediaStore) -> None:
    store.put("uploads/c", b"uploaded bytes")
    store.copy("uploads/c", "jobs/4/media")
    store.delete_prefix("uploads/c")
    assert store.get("jobs/4/media") == b"uploaded bytes"


def test_list_and_delete_go_by_prefix(store: MediaStore) -> None:
    for key in ("jobs/1/media", "jobs/1/thumbnails/0.jpg", "jobs/10/media", "uploads/d"):
        store.put(key, key.encode())
    assert sorted(o.key for o in store.list("jobs/1/")) == [
        "jobs/1/media",
        "jobs/1/thumbnails/0.jpg",
    ]
    assert store.delete_prefix("jobs/1/") == 2
    assert sorted(o.key for o in store.list("")) == ["jobs/10/media", "uploads/d"]


def test_a_missing_object_is_said_to_be_missing(store: MediaStore, tmp_path: Path) -> None:
    assert store.size("jobs/none/media") is None
    with pytest.raises(StoredObjectMissing):
        store.get("jobs/none/media")
    with pytest.raises(StoredObjectMissing):
        store.download("jobs/none/media", tmp_path / "x")
    with pytest.raises(StoredObjectMissing):
        store.copy("jobs/none/media", "jobs/other/media")


def test_a_working_store_answers_its_ping(store: MediaStore) -> None:
    store.ping()


class TestUnavailable:
    def test_a_folder_that_cannot_be_written(self, tmp_path: Path) -> None:
        blocked = tmp_path / "a-file"
        blocked.write_text("not a folder")
        with pytest.raises(StoreUnavailable):
            LocalStore(f"file://{blocked}").ping()

    def test_a_server_that_is_not_there(self) -> None:
        dead = S3Store("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9", region=REGION)
        with pytest.raises(StoreUnavailable):
            dead.ping()
        with pytest.raises(StoreUnavailable):
            dead.put("x", b"y")

    def test_credentials_the_server_refuses(
        self, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        store = S3Store(
            s3_server.store_url("x"), endpoint_url=s3_server.endpoint_url, region=REGION
        )
        with pytest.raises(StoreUnavailable):
            store.ping()

    def test_a_bucket_that_does_not_exist(self, s3_server: S3Server) -> None:
        store = S3Store("s3://no-such-bucket/x", endpoint_url=s3_server.endpoint_url, region=REGION)
        with pytest.raises(StoreUnavailable):
            store.ping()


def test_a_local_key_cannot_leave_its_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a store key"):
        LocalStore(f"file://{tmp_path}").put("../outside", b"x")
