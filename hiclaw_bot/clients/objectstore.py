"""Object storage behind one interface: an S3-compatible bucket, or a plain local directory.

Workers pull their config and skills from object storage (S3, OSS, MinIO, SeaweedFS in production;
a directory in the embedded dev stack), and the flows must not care which. Three guarantees matter
to them, and both implementations give all three:

* **Atomic writes.** A worker pulling its files every few minutes never sees half a file: S3 objects
  appear whole, and local files are written to a temporary file and ``os.replace``-d into place.
* **Unchanged content is not rewritten.** :meth:`ObjectStore.put` compares content hashes (S3: a
  ``sha256`` object metadata entry; local: the file itself) and returns ``False`` without writing,
  so a retried or repeated "push config" step does not make every worker reload.
* **Seed-only files stay the user's.** :meth:`ObjectStore.put_if_absent` writes only when the key is
  missing (``SOUL.md`` is seeded once, then belongs to whoever edits it).

Keys are ``/``-separated relative paths; empty segments, ``.`` and ``..`` are refused everywhere, so
a key can never escape the local root or mean different objects on the two backends.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import mimetypes
import os
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from hiclaw_bot.clients.errors import (
    ClientError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentClientError,
    TransientClientError,
    UnauthorizedError,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["LocalObjectStore", "ObjectStore", "S3ObjectStore", "content_hash"]

_TMP_DIR = ".hiclaw-tmp"
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"})
_TRANSIENT = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling"})


def content_hash(data: bytes) -> str:
    """The hash recorded with every object: hex SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


class ObjectStore(Protocol):
    """What the flows need from object storage."""

    async def put(self, key: str, data: bytes) -> bool:
        """Write ``data`` atomically; ``False`` (and no write) when the stored content is identical."""
        ...

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write only when ``key`` does not exist yet; ``True`` when this call wrote it."""
        ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`NotFoundError` when it does not exist."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def list(self, prefix: str = "") -> builtins.list[str]:
        """Every key starting with ``prefix`` (a plain string prefix, as in S3), sorted."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (which must end in ``/``); returns how many were deleted."""
        ...

    async def close(self) -> None: ...


def _check_key(system: str, key: str) -> str:
    segments = key.split("/")
    if not key or "\\" in key or "\0" in key or any(s in ("", ".", "..") for s in segments):
        raise InvalidRequestError(system, f"invalid object key {key!r}")
    if any(s.startswith(_TMP_DIR) for s in segments):
        raise InvalidRequestError(system, f"object key {key!r} uses a reserved name")
    return key


def _check_prefix(system: str, prefix: str, *, deleting: bool = False) -> str:
    if deleting and not prefix.endswith("/"):
        raise InvalidRequestError(system, f"a prefix to delete must end with '/': {prefix!r}")
    if prefix:
        _check_key(system, prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


# --------------------------------------------------------------------------------------------
# S3


class S3ObjectStore:
    """An S3-compatible bucket through aiobotocore. Open with :meth:`open`, release with :meth:`close`."""

    system = "s3"

    def __init__(self, client: S3Client, bucket: str, endpoint_url: str | None, stack: AsyncExitStack) -> None:
        self._client = client
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self._stack = stack

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

    @classmethod
    async def open(cls, *, bucket: str, access_key: str, secret_key: str, endpoint_url: str | None = None,
                   region: str = "us-east-1", path_style: bool = True, request_timeout: float = 10.0) -> S3ObjectStore:
        """Connect and make sure ``bucket`` exists (creating it when the credentials allow)."""
        # Credentials are always explicit: botocore's chain must never probe the EC2 metadata address.
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        config = AioConfig(
            s3={"addressing_style": "path" if path_style else "virtual"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=request_timeout, read_timeout=request_timeout,
            # Third-party S3 servers differ in their support of the newer default checksums.
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        stack = AsyncExitStack()
        client = await stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        ))
        store = cls(client, bucket, endpoint_url, stack)
        try:
            await store._ensure_bucket(region)
        except BaseException:
            await stack.aclose()
            raise
        return store

    async def _ensure_bucket(self, region: str) -> None:
        try:
            with self._errors("head bucket", ""):
                await self._client.head_bucket(Bucket=self.bucket)
            return
        except NotFoundError:
            pass
        except UnauthorizedError:
            # A worker's own key may not look at the bucket, only at its prefixes in it. A HEAD
            # answer has no body, so ask again with a GET, whose answer names the reason: a key
            # that is valid but scoped is AccessDenied, a wrong one SignatureDoesNotMatch.
            try:
                with self._errors("list bucket", ""):
                    await self._client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            except UnauthorizedError as denied:
                if denied.code != "AccessDenied":
                    raise
            return
        try:
            if region == "us-east-1":
                await self._client.create_bucket(Bucket=self.bucket)
            else:
                await self._client.create_bucket(
                    Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
        except BotoClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":  # a concurrent creator of ours: fine
                raise _s3_error(exc, f"create bucket {self.bucket}") from None

    async def put(self, key: str, data: bytes) -> bool:
        _check_key(self.system, key)
        digest = content_hash(data)
        with contextlib.suppress(NotFoundError), self._errors("head", key):
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == digest:
                return False
        with self._errors("put", key):
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata={"sha256": digest},
                                          ContentType=_content_type(key))
        return True

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        if await self.exists(key):
            return False
        try:
            # If-None-Match closes the race on servers that honour it; the HEAD above covers the rest.
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*",
                                          Metadata={"sha256": content_hash(data)}, ContentType=_content_type(key))
        except BotoClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise _s3_error(exc, f"put {self.bucket}/{key}") from None
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise _s3_error(exc, f"put {self.bucket}/{key}") from None
        return True

    async def get(self, key: str) -> bytes:
        _check_key(self.system, key)
        with self._errors("get", key):
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                return await body.read()

    async def exists(self, key: str) -> bool:
        _check_key(self.system, key)
        with contextlib.suppress(NotFoundError), self._errors("head", key):
            await self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        return False

    async def list(self, prefix: str = "") -> builtins.list[str]:
        _check_prefix(self.system, prefix)
        keys: builtins.list[str] = []
        with self._errors("list", prefix):
            async for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                      Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []) if "Key" in item)
        return sorted(keys)

    async def delete_prefix(self, prefix: str) -> int:
        _check_prefix(self.system, prefix, deleting=True)
        keys = await self.list(prefix)
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            with self._errors("delete", prefix):
                response = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            if errors := response.get("Errors"):
                raise TransientClientError(self.system, f"delete {self.bucket}/{prefix}: {len(errors)} keys failed")
        return len(keys)

    async def close(self) -> None:
        await self._stack.aclose()

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        try:
            yield
        except (BotoClientError, BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise _s3_error(exc, f"{operation} {self.bucket}/{key}") from None


def _code(exc: BotoClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _s3_error(exc: BaseException, what: str) -> ClientError:
    """Map botocore's errors to the client tree; the message holds codes and names, never credentials.

    Anything that is not an answer from the server (botocore's connection errors, an aiohttp error,
    a timeout) means the server could not be reached: transient.
    """
    if not isinstance(exc, BotoClientError):
        return TransientClientError("s3", f"{what}: {type(exc).__name__}")
    code = _code(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = f"{what}: {code or status}"
    if code in _NOT_FOUND:
        return NotFoundError("s3", text, status=status, code=code)
    if code in _DENIED:
        return UnauthorizedError("s3", text, status=status, code=code)
    if code in _TRANSIENT or status == 429 or (status or 0) >= 500:
        return TransientClientError("s3", text, status=status, code=code)
    if status == 409:
        return ConflictError("s3", text, status=status, code=code)
    if status == 400:
        return InvalidRequestError("s3", text, status=status, code=code)
    return PermanentClientError("s3", text, status=status, code=code)


def _content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


# --------------------------------------------------------------------------------------------
# A local directory


def _make_dirs(directory: Path) -> None:
    """``mkdir -p`` with every new level 0700: a worker's files are nobody else's to list."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for level in reversed(missing):
        with contextlib.suppress(FileExistsError):
            level.mkdir(mode=0o700)
            _inherit_owner(level)


def _inherit_owner(path: Path) -> None:
    """Give ``path`` the owner of its directory, when we may (as root).

    A worker confined to a uid of its own owns its ``agents/<w>/`` directory; what the bot writes
    there must stay readable to it, and 0600 files written as root would not be.
    """
    if os.geteuid() != 0:
        return
    parent, own = path.parent.stat(), path.stat()
    if (parent.st_uid, parent.st_gid) != (own.st_uid, own.st_gid):
        os.chown(path, parent.st_uid, parent.st_gid)


class LocalObjectStore:
    """A directory as an object store (the embedded default): one file per key under ``root``.

    Files are 0600 and directories 0700: on a machine shared with workers, the bot's copies of
    every worker's config (with its Matrix token and gateway key) are the bot's alone.

    Temporary files are written beside their target as ``.hiclaw-tmp-<random>`` (same directory,
    so ``os.replace`` is atomic, and a confined worker writing its own directory can make them),
    and names starting with ``.hiclaw-tmp`` are reserved. File I/O runs in threads to keep the
    event loop free.
    """

    system = "localfs"

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = self.root / _check_key(self.system, key)
        if not path.resolve().is_relative_to(self.root):  # a symlink inside the root pointing out
            raise InvalidRequestError(self.system, f"object key {key!r} leaves the store")
        return path

    def _temp_file(self, directory: Path, data: bytes) -> Path:
        temp = directory / f"{_TMP_DIR}-{uuid.uuid4().hex}"
        with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _inherit_owner(temp)
        return temp

    async def put(self, key: str, data: bytes) -> bool:
        path = self._path(key)

        def write() -> bool:
            with contextlib.suppress(FileNotFoundError):
                if content_hash(path.read_bytes()) == content_hash(data):
                    return False
            _make_dirs(path.parent)
            os.replace(self._temp_file(path.parent, data), path)
            return True

        return await asyncio.to_thread(write)

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)

        def write() -> bool:
            _make_dirs(path.parent)
            temp = self._temp_file(path.parent, data)
            try:
                os.link(temp, path)  # fails if the key exists: create-if-absent in one step
            except FileExistsError:
                return False
            finally:
                temp.unlink()
            return True

        return await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(self.system, f"no object {key!r}") from None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def list(self, prefix: str = "") -> builtins.list[str]:
        _check_prefix(self.system, prefix)
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[str]:
        top = self.root / prefix.rpartition("/")[0]
        keys = []
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if not d.startswith(_TMP_DIR)]
            for name in files:
                if name.startswith(_TMP_DIR):
                    continue
                key = (Path(directory) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    async def delete_prefix(self, prefix: str) -> int:
        _check_prefix(self.system, prefix, deleting=True)

        def delete() -> int:
            keys = self._list(prefix)
            for key in keys:
                (self.root / key).unlink(missing_ok=True)
            top = self.root / prefix
            for directory, _, _ in sorted(os.walk(top), key=lambda entry: len(entry[0]), reverse=True):
                with contextlib.suppress(OSError):
                    Path(directory).rmdir()  # only empty ones go
            return len(keys)

        return await asyncio.to_thread(delete)

    async def close(self) -> None:
        """Nothing to release; present for the interface."""
