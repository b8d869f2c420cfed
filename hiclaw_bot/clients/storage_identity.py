"""Per-worker object-store identities: each worker gets a key that opens only its own prefixes.

The bot's own (master) key opens the whole bucket, so it never leaves the bot. A worker instead
gets an identity named after it, whose policy allows object reads, writes and deletes, and
listing, under a few prefixes only (``agents/<w>/``, plus ``teams/<T>/shared/`` for a member of
team ``T``). The flows see the small :class:`StorageIdentities` interface, so another store
(MinIO's admin API, AWS IAM proper) is one more implementation:

* :class:`IamIdentities` speaks AWS's own IAM calls through botocore's ``iam`` client, which
  SeaweedFS (4.48, ``weed mini -s3.iam.readOnly=false``) serves on its S3 port: ``CreateUser``,
  ``CreateAccessKey``, ``PutUserPolicy`` and their deletes. The same calls work on AWS IAM.
* :class:`LocalIdentities` is for ``storage.kind: local``: there is no key to hand out; a worker
  is handed its own directory (``agents/<w>/``) and nothing above it.

The server generates the secret key, so it cannot be made before the call as other secrets are:
:meth:`StorageIdentities.ensure` is given the access key the bot last stored (if any), keeps the
user's keys that match it, and replaces any other key (one made by a call whose answer a crash
lost) with a fresh one, whose secret the caller stores at once. A retry therefore always ends
with exactly one user holding exactly one key that the bot knows.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import json
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from hiclaw_bot.clients.errors import (
    ClientError,
    InvalidRequestError,
    NotFoundError,
    PermanentClientError,
    TransientClientError,
    UnauthorizedError,
)

__all__ = ["IamIdentities", "Identity", "LocalIdentities", "StorageIdentities", "policy_document"]

POLICY_NAME = "hiclaw-prefixes"
_SYSTEM = "iam"
_GONE = frozenset({"NoSuchEntity", "NoSuchEntityException"})
_EXISTS = frozenset({"EntityAlreadyExists"})


@dataclass(frozen=True)
class Identity:
    """A worker's storage identity. ``secret_key`` is set only when this call made a new key."""

    name: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    prefixes: tuple[str, ...] = ()


class StorageIdentities(Protocol):
    """Identities in the object store, found and managed by name."""

    async def observe(self, name: str) -> Identity | None:
        """The identity and its access key (never its secret), or ``None`` when it does not exist."""
        ...

    async def ensure(self, name: str, prefixes: Sequence[str], *, known_key: str | None) -> Identity:
        """Make ``name`` exist with exactly one key and a policy for exactly ``prefixes``.

        ``known_key`` is the access key whose secret the caller holds: it is kept if the server
        still has it; any other key is deleted and a new one made (returned with its secret).
        """
        ...

    async def grant(self, name: str, prefixes: Sequence[str]) -> None:
        """Replace the identity's policy with one for ``prefixes`` (:class:`NotFoundError` if absent)."""
        ...

    async def delete(self, name: str) -> None:
        """Remove the identity, its keys and policy; "already gone" is success."""
        ...

    async def list(self, prefix: str) -> builtins.list[str]:
        """The names of every identity starting with ``prefix``."""
        ...

    async def close(self) -> None: ...


def policy_document(bucket: str, prefixes: Sequence[str]) -> dict[str, Any]:
    """Objects under ``prefixes`` may be read, written and deleted, and only they may be listed."""
    for prefix in prefixes:
        if not prefix.endswith("/") or prefix.startswith("/") or "*" in prefix or ".." in prefix:
            raise InvalidRequestError(_SYSTEM, f"invalid prefix to grant: {prefix!r}")
    objects = [f"arn:aws:s3:::{bucket}/{prefix}*" for prefix in sorted(prefixes)]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
             "Resource": objects},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"],
             "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in sorted(prefixes)]}}},
        ],
    }


class IamIdentities:
    """IAM users scoped to prefixes of one bucket. Open with :meth:`open`, release with :meth:`close`."""

    def __init__(self, client: Any, bucket: str, stack: AsyncExitStack) -> None:
        # ``Any``: the pinned stubs cover the S3 client only, and the IAM stubs are not in our index.
        self._client = client
        self.bucket = bucket
        self._stack = stack

    def __repr__(self) -> str:
        return f"IamIdentities(bucket={self.bucket!r})"

    @classmethod
    async def open(cls, *, bucket: str, access_key: str, secret_key: str, endpoint_url: str | None,
                   region: str = "us-east-1", request_timeout: float = 10.0) -> IamIdentities:
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        config = AioConfig(retries={"max_attempts": 3, "mode": "standard"},
                           connect_timeout=request_timeout, read_timeout=request_timeout)
        stack = AsyncExitStack()
        client = await stack.enter_async_context(get_session().create_client(
            "iam", endpoint_url=endpoint_url, region_name=region, config=config,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        ))
        return cls(client, bucket, stack)

    async def observe(self, name: str) -> Identity | None:
        try:
            with _errors(f"get user {name}"):
                await self._client.get_user(UserName=name)
        except NotFoundError:
            return None
        keys = await self._keys(name)
        return Identity(name, access_key=keys[0] if len(keys) == 1 else None)

    async def ensure(self, name: str, prefixes: Sequence[str], *, known_key: str | None) -> Identity:
        with _errors(f"create user {name}"):
            await _tolerate(self._client.create_user(UserName=name), _EXISTS)
        await self.grant(name, prefixes)
        keys = await self._keys(name)
        for key in keys:
            if key != known_key:
                with _errors(f"delete a stale key of {name}"):
                    await _tolerate(self._client.delete_access_key(UserName=name, AccessKeyId=key), _GONE)
        if known_key is not None and known_key in keys:
            return Identity(name, access_key=known_key, prefixes=tuple(prefixes))
        with _errors(f"create a key for {name}"):
            made = (await self._client.create_access_key(UserName=name))["AccessKey"]
        return Identity(name, access_key=made["AccessKeyId"], secret_key=made["SecretAccessKey"],
                        prefixes=tuple(prefixes))

    async def grant(self, name: str, prefixes: Sequence[str]) -> None:
        document = json.dumps(policy_document(self.bucket, prefixes), sort_keys=True)
        with _errors(f"put the policy of {name}"):
            await self._client.put_user_policy(UserName=name, PolicyName=POLICY_NAME, PolicyDocument=document)

    async def delete(self, name: str) -> None:
        if await self.observe(name) is None:
            return
        keys = await self._keys(name)
        with _errors(f"delete user {name}"):
            for key in keys:
                await _tolerate(self._client.delete_access_key(UserName=name, AccessKeyId=key), _GONE)
            await _tolerate(self._client.delete_user_policy(UserName=name, PolicyName=POLICY_NAME), _GONE)
            await _tolerate(self._client.delete_user(UserName=name), _GONE)

    async def list(self, prefix: str) -> builtins.list[str]:
        found: builtins.list[str] = []
        with _errors("list users"):
            paginator = self._client.get_paginator("list_users")
            async for page in paginator.paginate():
                found += [user["UserName"] for user in page.get("Users", [])]
        return sorted(name for name in found if name.startswith(prefix))

    async def close(self) -> None:
        await self._stack.aclose()

    async def _keys(self, name: str) -> builtins.list[str]:
        with _errors(f"list the keys of {name}"):
            answer = await self._client.list_access_keys(UserName=name)
        return sorted(key["AccessKeyId"] for key in answer.get("AccessKeyMetadata", []))


class LocalIdentities:
    """``storage.kind: local``: no keys; a worker is handed only its own directory.

    With ``owner`` (the uid and gid a confined worker runs as, by identity name), ``ensure`` makes
    the worker's own prefix its own (0700, owned by it, with everything in it) and the folders above
    passable but not listable (0711), so it reaches its files and no one else's; the store gives
    what it writes later the owner of the directory it lands in. A team's shared folder cannot
    belong to several uids, so on a local store it stays the bot's (see docs/SECURITY.md).

    Without ``owner`` (workers run as the bot's user) there is nothing to do. Nothing exists apart
    from the directory, so there is nothing to list or delete: the delete removes the prefix.
    """

    def __init__(self, root: Path | None = None, owner: Callable[[str], tuple[int, int]] | None = None) -> None:
        self.root = root
        self.owner = owner

    async def observe(self, name: str) -> Identity | None:
        return Identity(name)

    async def ensure(self, name: str, prefixes: Sequence[str], *, known_key: str | None) -> Identity:
        if self.root is not None and self.owner is not None:
            await asyncio.to_thread(self._give, self.root, self.owner(name), prefixes)
        return Identity(name, prefixes=tuple(prefixes))

    @staticmethod
    def _give(root: Path, ids: tuple[int, int], prefixes: Sequence[str]) -> None:
        for prefix in prefixes:
            if not prefix.startswith("agents/"):
                continue
            own = root / prefix
            own.mkdir(parents=True, exist_ok=True, mode=0o700)
            for passage in (root, *[root / p for p in Path(prefix).parents if str(p) != "."]):
                if passage != own:
                    passage.chmod(0o711)
            fd = os.open(own, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                _own_tree(fd, ids)
            finally:
                os.close(fd)

    async def grant(self, name: str, prefixes: Sequence[str]) -> None:
        return None

    async def delete(self, name: str) -> None:
        return None

    async def list(self, prefix: str) -> builtins.list[str]:
        return []

    async def close(self) -> None:
        return None


def _own_tree(directory: int, ids: tuple[int, int]) -> None:
    """Give the directory open as ``directory``, and everything under it, to ``ids`` (0700 folders).

    The tree is live: the worker and the skills step may write into it meanwhile, and the store
    renames ``.hiclaw-tmp-*`` files into place. Each folder is chowned *before* it is listed, so
    whatever appears in it after the listing takes its new owner from it (the store's
    ``_inherit_owner``); a listing during which an entry vanished (a temp file renamed into a name
    the listing missed) is taken again. Nothing follows a symlink: entries are reached by file
    descriptor and chowned with ``follow_symlinks=False``, so a link the worker planted cannot turn
    this root-run walk onto a file outside its prefix.
    """
    os.fchown(directory, *ids)
    os.fchmod(directory, 0o700)
    while True:
        vanished, folders = False, []
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    os.chown(entry.name, *ids, dir_fd=directory, follow_symlinks=False)
                except FileNotFoundError:
                    vanished = True
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
        if not vanished:
            break
    for name in folders:
        try:
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):  # gone, or swapped for a link
                continue
            raise
        try:
            _own_tree(inner, ids)
        finally:
            os.close(inner)


async def _tolerate(call: Awaitable[Any], codes: frozenset[str]) -> None:
    """Await an idempotent call: an answer with one of ``codes`` means the wanted state holds."""
    try:
        await call
    except BotoClientError as exc:
        if _code(exc) not in codes:
            raise


def _code(exc: BotoClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Map botocore's errors to the client tree; messages carry codes and names, never keys."""
    try:
        yield
    except BotoClientError as exc:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{what}: {code or status}"
        error: ClientError
        if code in _GONE or status == 404:
            error = NotFoundError(_SYSTEM, text, status=status, code=code)
        elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            error = UnauthorizedError(_SYSTEM, text, status=status, code=code)
        elif code in ("Throttling", "ServiceFailure", "InternalError") or status == 429 or (status or 0) >= 500:
            error = TransientClientError(_SYSTEM, text, status=status, code=code)
        else:
            error = PermanentClientError(_SYSTEM, text, status=status, code=code)
        raise error from None
    except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
        raise TransientClientError(_SYSTEM, f"{what}: {type(exc).__name__}") from None
