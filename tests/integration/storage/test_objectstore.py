"""One suite for both object stores: a local directory, and S3 on a real SeaweedFS server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hiclaw_bot.clients.errors import InvalidRequestError, NotFoundError, UnauthorizedError
from hiclaw_bot.clients.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore, content_hash
from hiclaw_bot.devstack.seaweed import SeaweedServer

BAD_KEYS = ["", "/abs", "a//b", "a/./b", "a/../../etc/passwd", "..", "a/", "a\\b", "nul\0byte", ".hiclaw-tmp/x"]


@pytest.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[LocalObjectStore]:
    store = LocalObjectStore(tmp_path / "objects")
    yield store
    await store.close()


@pytest.fixture(params=["local_store", "s3_store"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each test runs on both implementations (the S3 one on a bucket of its own)."""
    chosen: ObjectStore = request.getfixturevalue(request.param)
    return chosen


async def test_put_skips_unchanged_content(store: ObjectStore) -> None:
    assert await store.put("agents/alice/openclaw.json", b'{"a": 1}\n') is True
    assert await store.put("agents/alice/openclaw.json", b'{"a": 1}\n') is False
    assert await store.put("agents/alice/openclaw.json", b'{"a": 2}\n') is True
    assert await store.get("agents/alice/openclaw.json") == b'{"a": 2}\n'


async def test_put_if_absent_never_overwrites(store: ObjectStore) -> None:
    assert await store.put_if_absent("agents/alice/SOUL.md", b"seed") is True
    assert await store.put_if_absent("agents/alice/SOUL.md", b"another seed") is False
    assert await store.get("agents/alice/SOUL.md") == b"seed"
    await store.put("agents/alice/SOUL.md", b"edited by the user")
    assert await store.put_if_absent("agents/alice/SOUL.md", b"seed") is False
    assert await store.get("agents/alice/SOUL.md") == b"edited by the user"


async def test_concurrent_seeding_writes_once(store: ObjectStore) -> None:
    # Few writers: SeaweedFS makes concurrent conditional writes on one key wait about a second each.
    results = await asyncio.gather(*(store.put_if_absent("seed/once", f"{i}".encode()) for i in range(3)))
    assert results.count(True) == 1  # os.link locally; If-None-Match on SeaweedFS
    assert await store.get("seed/once") == f"{results.index(True)}".encode()


async def test_missing_objects(store: ObjectStore) -> None:
    with pytest.raises(NotFoundError):
        await store.get("agents/nobody/openclaw.json")
    assert await store.exists("agents/nobody/openclaw.json") is False
    await store.put("agents/alice/a", b"")
    assert await store.exists("agents/alice/a") is True
    assert await store.exists("agents/alice") is False  # a "directory" is not an object
    assert await store.get("agents/alice/a") == b""


async def test_binary_content_round_trips(store: ObjectStore) -> None:
    data = bytes(range(256)) * 1000
    assert await store.put("skills/blob.bin", data) is True
    assert await store.get("skills/blob.bin") == data


async def test_list_is_a_sorted_string_prefix(store: ObjectStore) -> None:
    for key in ["agents/bob/x", "agents/alice/b/c.md", "agents/alice/a.json", "agents/alicia/z", "teams/t/k"]:
        await store.put(key, key.encode())
    assert await store.list("agents/alice/") == ["agents/alice/a.json", "agents/alice/b/c.md"]
    assert await store.list("agents/ali") == ["agents/alice/a.json", "agents/alice/b/c.md", "agents/alicia/z"]
    assert await store.list("nothing/") == []
    assert await store.list() == ["agents/alice/a.json", "agents/alice/b/c.md", "agents/alicia/z", "agents/bob/x",
                                  "teams/t/k"]


async def test_delete_prefix(store: ObjectStore) -> None:
    for key in ["agents/alice/a", "agents/alice/deep/b", "agents/alicia/c", "agents/bob/d"]:
        await store.put(key, b"x")
    assert await store.delete_prefix("agents/alice/") == 2
    assert await store.list() == ["agents/alicia/c", "agents/bob/d"]
    assert await store.delete_prefix("agents/alice/") == 0  # already gone is success
    with pytest.raises(InvalidRequestError, match="must end with '/'"):
        await store.delete_prefix("agents/ali")
    with pytest.raises(InvalidRequestError):
        await store.delete_prefix("")


async def test_bad_keys_are_refused_everywhere(store: ObjectStore) -> None:
    for key in BAD_KEYS:
        with pytest.raises(InvalidRequestError):
            await store.put(key, b"x")
        with pytest.raises(InvalidRequestError):
            await store.put_if_absent(key, b"x")
        with pytest.raises(InvalidRequestError):
            await store.get(key)
        with pytest.raises(InvalidRequestError):
            await store.exists(key)
    assert await store.list() == []


async def test_bad_prefixes_are_refused(store: ObjectStore) -> None:
    for prefix in ["../", "/etc/", "a//", "a/../b/"]:
        with pytest.raises(InvalidRequestError):
            await store.list(prefix)
        with pytest.raises(InvalidRequestError):
            await store.delete_prefix(prefix)


async def test_concurrent_writers_leave_one_whole_version(store: ObjectStore) -> None:
    versions = [bytes([i]) * 200_000 for i in range(8)]
    await asyncio.gather(*(store.put("agents/alice/big", v) for v in versions))
    assert await store.get("agents/alice/big") in versions


# ---- what only one implementation has


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def test_local_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    await store.put("a/b", b"1")
    await store.put_if_absent("a/c", b"2")
    await store.put_if_absent("a/c", b"3")
    assert _files(tmp_path) == ["a/b", "a/c"]
    assert await store.list() == ["a/b", "a/c"]


async def test_local_refuses_symlinks_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalObjectStore(tmp_path / "root")
    os.symlink(outside, tmp_path / "root" / "escape")
    with pytest.raises(InvalidRequestError, match="leaves the store"):
        await store.put("escape/file", b"x")
    assert not (outside / "file").exists()


async def test_s3_records_the_content_hash(s3_store: S3ObjectStore) -> None:
    client = s3_store._client
    await client.put_object(Bucket=s3_store.bucket, Key="foreign", Body=b"same")  # written by someone else
    assert await s3_store.put("foreign", b"same") is True  # no recorded hash: write it once more
    head = await client.head_object(Bucket=s3_store.bucket, Key="foreign")
    assert head["Metadata"]["sha256"] == content_hash(b"same")
    assert await s3_store.put("foreign", b"same") is False


async def test_s3_reopening_an_existing_bucket(seaweed: SeaweedServer, s3_store: S3ObjectStore) -> None:
    await s3_store.put("k", b"v")
    again = await S3ObjectStore.open(bucket=s3_store.bucket, endpoint_url=seaweed.endpoint_url,
                                     access_key=seaweed.access_key, secret_key=seaweed.secret_key)
    try:
        assert await again.get("k") == b"v"
    finally:
        await again.close()


async def test_s3_racing_bucket_creators_both_succeed(seaweed: SeaweedServer) -> None:
    stores = await asyncio.gather(*(S3ObjectStore.open(
        bucket=f"race-{uuid.uuid4().hex[:12]}", endpoint_url=seaweed.endpoint_url, access_key=seaweed.access_key,
        secret_key=seaweed.secret_key) for _ in range(2)))
    try:
        # With both clients connected, both HEADs miss and one creator is told BucketAlreadyOwnedByYou.
        bucket = f"race-{uuid.uuid4().hex[:12]}"
        for store in stores:
            store.bucket = bucket
        await asyncio.gather(*(store._ensure_bucket(seaweed.region) for store in stores))
        assert await stores[0].put("k", b"v") is True
        assert await stores[1].put("k", b"v") is False
    finally:
        for store in stores:
            await store.close()


async def test_s3_wrong_secret_is_unauthorized(seaweed: SeaweedServer) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        await S3ObjectStore.open(bucket="any-bucket", endpoint_url=seaweed.endpoint_url,
                                 access_key=seaweed.access_key, secret_key="not-the-secret-key")
    assert "not-the-secret-key" not in str(caught.value)


def test_seaweed_listens_on_loopback_and_hides_its_secret(seaweed: SeaweedServer) -> None:
    assert seaweed.endpoint_url.startswith("http://127.0.0.1:")
    assert seaweed.secret_key not in repr(seaweed)
    assert os.environ.get("AWS_EC2_METADATA_DISABLED") == "true"


async def test_local_files_are_the_bots_alone(tmp_path: Path) -> None:
    """0600 files, 0700 directories at every level the store makes, seeds included."""
    store = LocalObjectStore(tmp_path / "objects")
    await store.put("agents/a/config/openclaw.json", b"{}")
    await store.put_if_absent("agents/a/SOUL.md", b"soul")
    root = tmp_path / "objects"
    for path in (root / "agents/a/config/openclaw.json", root / "agents/a/SOUL.md"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    for path in (root, root / "agents", root / "agents/a", root / "agents/a/config"):
        assert path.stat().st_mode & 0o777 == 0o700, path
