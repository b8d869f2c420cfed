"""The ``storage_identity`` step: each worker gets an object-store key of its own.

The bot's master key opens every worker's files, so it stays in the bot. A worker is given an
identity (:mod:`hiclaw_bot.clients.storage_identity`) that opens ``agents/<w>/`` and, for a member
of team ``T``, ``teams/<T>/shared/``; nothing else. A team leader gets the same as a member: it
reaches its members through Matrix, and the bot writes the member rooms into its config, so it has
no need of their files.

The key's secret is made by the server, so it is stored (as one secret, ``access:secret``) right
after the call that made it; a crash in between leaves a key the bot cannot use, which the next
attempt replaces (see :meth:`~hiclaw_bot.clients.storage_identity.StorageIdentities.ensure`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hiclaw_bot.agent.env import LocalStorage, S3Storage, StorageAccess
from hiclaw_bot.config import LocalStorageConfig, S3StorageConfig
from hiclaw_bot.engine import Done, Outcome, PermanentError, ResourceRef, Step, StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows.services import Services
from storage import Store

STORAGE_KEY = "storage_key"
"""The name of the worker's ``access:secret`` pair in the secret store."""


def grants(worker: str, team: str | None) -> list[str]:
    """The prefixes ``worker`` may use: its own, and its team's shared folder."""
    return [names.worker_prefix(worker), *([names.team_shared_prefix(team)] if team else [])]


def _subject(worker: str) -> str:
    return f"worker:{worker}"


async def worker_storage(services: Services, store: Store, worker: str) -> StorageAccess:
    """How ``worker`` reaches its files: its own key to the bucket, or (local) the store's directory."""
    storage = services.config.storage
    if isinstance(storage, LocalStorageConfig):
        return LocalStorage(storage.directory)
    pair = await store.secrets.get(_subject(worker), STORAGE_KEY)
    if pair is None:
        raise PermanentError(f"worker {worker} has no storage identity yet")
    access, _, secret = pair.reveal().partition(":")
    return s3_access(storage, access, secret)


def s3_access(storage: S3StorageConfig, access: str, secret: str) -> S3Storage:
    """The bucket at its worker-facing address (``storage.worker_endpoint``), opened with ``access``."""
    return S3Storage(endpoint=storage.worker_endpoint or storage.endpoint, bucket=storage.bucket,
                     access_key=access, secret_key=secret, region=storage.region, path_style=storage.path_style)


class StorageIdentity(Step):
    """Make (or adopt) the worker's identity, with a policy for exactly its prefixes."""

    name = "storage_identity"

    def __init__(self, services: Services, worker: str, team: str | None,
                 *, after: tuple[str, ...] | None = None) -> None:
        self.services = services
        self.worker = worker
        if after is not None:
            self.after = after
        self.team = team
        self.resource = ResourceRef("storage_identity", names.storage_identity(worker))

    async def do(self, ctx: StepContext) -> Outcome:
        identity = names.storage_identity(self.worker)
        prefixes = grants(self.worker, self.team)
        pair = await ctx.store.secrets.get(ctx.op.subject, STORAGE_KEY)
        known = pair.reveal().partition(":")[0] if pair is not None else None
        async with ctx.external("storage"):
            made = await self.services.identities.ensure(identity, prefixes, known_key=known)
        if made.secret_key is not None and made.access_key is not None:
            await ctx.store.secrets.put(ctx.op.subject, STORAGE_KEY, f"{made.access_key}:{made.secret_key}")
        return Done({"identity": identity, "prefixes": prefixes}, external_id=identity)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        async with ctx.external("storage"):
            await self.services.identities.delete(names.storage_identity(self.worker))
        await ctx.store.secrets.delete(ctx.op.subject, STORAGE_KEY)


async def regrant(services: Services, ctx: StepContext, worker: str, team: str | None) -> None:
    """Give ``worker``'s identity the prefixes of its (new or no) team: joining and leaving a team."""
    async with ctx.external("storage"):
        if await services.identities.observe(names.storage_identity(worker)) is not None:
            await services.identities.grant(names.storage_identity(worker), grants(worker, team))
