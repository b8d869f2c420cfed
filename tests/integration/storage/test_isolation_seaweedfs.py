"""A worker's own storage key opens its own prefixes and nothing else, on a real SeaweedFS.

Worker A gets the identity the ``storage_identity`` step makes (its prefix, and its team's shared
folder); the bucket also holds B's files and another team's. Every request A should not make is
answered AccessDenied by the server itself, and after A's identity is deleted its key opens nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from botocore.exceptions import ClientError as BotoClientError

from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.clients.objectstore import S3ObjectStore
from hiclaw_bot.clients.storage_identity import IamIdentities, Identity
from hiclaw_bot.devstack.seaweed import SeaweedServer
from hiclaw_bot.flows import names
from hiclaw_bot.flows.worker_identity import grants


@pytest.fixture
async def iam(seaweed: SeaweedServer, s3_store: S3ObjectStore) -> AsyncIterator[IamIdentities]:
    identities = await IamIdentities.open(bucket=s3_store.bucket, access_key=seaweed.access_key,
                                          secret_key=seaweed.secret_key, endpoint_url=seaweed.endpoint_url)
    try:
        yield identities
    finally:
        await identities.close()


async def open_as(seaweed: SeaweedServer, bucket: str, identity: Identity) -> S3ObjectStore:
    assert identity.access_key is not None
    assert identity.secret_key is not None
    return await S3ObjectStore.open(bucket=bucket, endpoint_url=seaweed.endpoint_url, access_key=identity.access_key,
                                    secret_key=identity.secret_key)


def worker() -> str:
    return f"w{uuid.uuid4().hex[:8]}"


async def test_a_worker_key_opens_its_prefixes_and_nothing_else(
        seaweed: SeaweedServer, s3_store: S3ObjectStore, iam: IamIdentities) -> None:
    a, b = worker(), worker()
    await s3_store.put(f"agents/{b}/openclaw.json", b"B's secrets")
    await s3_store.put("teams/other/shared/plan.md", b"other team")
    await s3_store.put("teams/red/private.md", b"the team's, not the members'")
    await s3_store.put("root.txt", b"the bot's")
    identity = await iam.ensure(names.storage_identity(a), grants(a, "red"), known_key=None)
    mine = await open_as(seaweed, s3_store.bucket, identity)
    try:
        assert await mine.put(f"agents/{a}/state/activity.json", b"{}")
        assert await mine.get(f"agents/{a}/state/activity.json") == b"{}"
        assert await mine.list(f"agents/{a}/") == [f"agents/{a}/state/activity.json"]
        assert await mine.put("teams/red/shared/notes.md", b"ours")
        assert await mine.list("teams/red/shared/") == ["teams/red/shared/notes.md"]
        for key in (f"agents/{b}/openclaw.json", "teams/other/shared/plan.md", "teams/red/private.md", "root.txt"):
            with pytest.raises(UnauthorizedError) as denied:
                await mine.get(key)
            assert denied.value.code == "AccessDenied", key
            with pytest.raises(UnauthorizedError) as denied:
                await mine.put(key, b"tampered")  # refused at its HEAD, whose 403 has no body
            assert denied.value.code in ("AccessDenied", "403"), key
            with pytest.raises(BotoClientError) as raw:  # a bare PUT, without our client's HEAD first
                await mine._client.put_object(Bucket=mine.bucket, Key=key, Body=b"tampered")
            assert raw.value.response["Error"]["Code"] == "AccessDenied", key
        for prefix in (f"agents/{b}/", "agents/", "teams/other/", "teams/red/", ""):
            with pytest.raises(UnauthorizedError) as denied:
                await mine.list(prefix)
            assert denied.value.code == "AccessDenied", prefix
        assert await s3_store.get(f"agents/{b}/openclaw.json") == b"B's secrets"
    finally:
        await mine.close()


async def test_ensure_keeps_one_user_with_one_known_key(
        seaweed: SeaweedServer, s3_store: S3ObjectStore, iam: IamIdentities) -> None:
    name = names.storage_identity(worker())
    first = await iam.ensure(name, ["agents/x/"], known_key=None)
    again = await iam.ensure(name, ["agents/x/"], known_key=first.access_key)
    assert again.access_key == first.access_key
    assert again.secret_key is None  # kept, not remade
    lost = await iam.ensure(name, ["agents/x/"], known_key=None)  # a crash lost the answer of the first
    assert lost.secret_key is not None
    assert lost.access_key != first.access_key
    observed = await iam.observe(name)
    assert observed is not None
    assert observed.access_key == lost.access_key
    assert (await iam.list(name)) == [name]
    await iam.delete(name)
    await iam.delete(name)  # already gone is success
    assert await iam.observe(name) is None


async def test_after_delete_the_key_opens_nothing(
        seaweed: SeaweedServer, s3_store: S3ObjectStore, iam: IamIdentities) -> None:
    a = worker()
    identity = await iam.ensure(names.storage_identity(a), grants(a, None), known_key=None)
    mine = await open_as(seaweed, s3_store.bucket, identity)
    try:
        await mine.put(f"agents/{a}/f.txt", b"x")
        await iam.delete(names.storage_identity(a))
        deadline = time.monotonic() + 10
        while True:  # the server's credential cache lets go within a few seconds
            try:
                await mine.get(f"agents/{a}/f.txt")
            except UnauthorizedError:
                break
            assert time.monotonic() < deadline, "a deleted identity's key still opens its files"
            await asyncio.sleep(0.2)
        with pytest.raises(UnauthorizedError):
            await mine.put(f"agents/{a}/f.txt", b"y")
        with pytest.raises(UnauthorizedError):
            await mine.list(f"agents/{a}/")
    finally:
        await mine.close()


async def test_leaving_a_team_takes_its_folder_away(
        seaweed: SeaweedServer, s3_store: S3ObjectStore, iam: IamIdentities) -> None:
    a = worker()
    identity = await iam.ensure(names.storage_identity(a), grants(a, "blue"), known_key=None)
    mine = await open_as(seaweed, s3_store.bucket, identity)
    try:
        assert await mine.put("teams/blue/shared/a.md", b"1")
        await iam.grant(names.storage_identity(a), grants(a, None))
        deadline = time.monotonic() + 10
        while True:
            try:
                await mine.get("teams/blue/shared/a.md")
            except UnauthorizedError:
                break
            assert time.monotonic() < deadline, "a worker that left its team still reads the team's folder"
            await asyncio.sleep(0.2)
        assert await mine.put(f"agents/{a}/still.md", b"mine")
    finally:
        await mine.close()
