"""The steps of a worker's identity and standing: secrets, account, room, gateway access and its
recorded phase, each observing by deterministic name before it acts.

Its runtime's steps are in :mod:`~hiclaw_bot.flows.worker_runtime`, its files' in
:mod:`~hiclaw_bot.flows.rendering` and :mod:`~hiclaw_bot.flows.skills`, its notices in
:mod:`~hiclaw_bot.flows.notices`.

Every step here follows the engine's contract (see :mod:`hiclaw_bot.engine.steps`): ``observe``
finds an effect already in place, ``do`` makes it, ``undo`` reverses it with "already gone" as
success. Secrets live in the store (``ctx.secret``), never in step outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backends import WorkerBackend
from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.engine import Done, Outcome, PermanentError, ResourceRef, Skipped, Step, StepContext
from hiclaw_bot.flows import accounts, names
from hiclaw_bot.flows.access import release_room, sync_room
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import UserId, WorkerPhase
from storage import token_hex

# Names of the secrets in the store (the values never leave it but through ctx.secret).
PASSWORD = "password"  # noqa: S105
GATEWAY_KEY = "gateway_key"
ACCESS_TOKEN = "access_token"  # noqa: S105
ROOM_META_KIND = "worker_room"


class WorkerStep(Step):
    """A step about one worker, with the services it needs."""

    def __init__(self, services: Services, worker: str, *, after: tuple[str, ...] | None = None) -> None:
        self.services = services
        self.worker = worker
        if after is not None:
            self.after = after

    @property
    def user_id(self) -> UserId:
        return names.user_id(self.worker, self.services.domain)

    @property
    def alias(self) -> str:
        return names.full_alias(names.worker_room_alias(self.worker), self.services.domain)

    async def backend(self) -> WorkerBackend:
        """The backend the worker lives on (its row says which), read anew by each call."""
        return await self.services.worker_backend(self.worker)


class Secrets(WorkerStep):
    """Generate the worker's password and gateway key before any external call (reused on retry)."""

    name = "secrets"

    async def do(self, ctx: StepContext) -> Outcome:
        await ctx.secret(PASSWORD)
        await ctx.secret(GATEWAY_KEY)
        return Done()


class Account(WorkerStep):
    """The worker's Matrix account: registered once, then logged in with the stored password."""

    name = "account"

    def __init__(self, services: Services, worker: str, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.resource = ResourceRef("matrix_user", self.user_id)

    async def do(self, ctx: StepContext) -> Outcome:
        why = accounts.reserved(self.services, self.user_id)
        if why is None and await accounts.managed_human(ctx.store, self.user_id):
            why = f"{self.user_id} belongs to a human this bot manages"
        if why is not None:
            raise PermanentError(f"{why}; a worker cannot use it, choose another name")
        password = (await ctx.secret(PASSWORD)).reveal()
        cached = await ctx.store.secrets.get(ctx.op.subject, ACCESS_TOKEN)
        matrix = self.services.matrix
        async with ctx.external("matrix"):
            try:
                user = await matrix.ensure_user(self.worker, password,
                                                access_token=cached.reveal() if cached else None)
            except UnauthorizedError:
                # The account exists but our password does not open it. Only an account a finished
                # account step of this worker made (a deleted worker's, locked at delete) may be
                # taken back; the `intended` row the engine wrote before this call proves nothing.
                if not await accounts.registered_by_us(ctx.store, self.worker, self.user_id):
                    raise PermanentError(
                        f"{self.user_id} already exists and this bot did not register it; choose another name"
                    ) from None
                await matrix.reset_password(self.user_id, password, logout_devices=True)
                user = await matrix.ensure_user(self.worker, password)
        await ctx.store.secrets.put(ctx.op.subject, ACCESS_TOKEN, user.access_token)
        return Done({"user_id": user.user_id, "created": user.created}, external_id=user.user_id)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        """Lock the account: a random password and every session logged out.

        Not deactivated: Synapse never frees a deactivated name, and its reactivation fails on
        SQLite (1.163), so a worker of the same name could never come back. A locked account can,
        through the ledger-guarded password reset in :meth:`do`.
        """
        async with ctx.external("matrix"):
            await self.services.matrix.reset_password(self.user_id, token_hex(32), logout_devices=True)
        await ctx.store.secrets.delete(ctx.op.subject, ACCESS_TOKEN)


class Room(WorkerStep):
    """The worker's room by alias; the worker joins it with its own token."""

    name = "room"

    def __init__(self, services: Services, worker: str, *, leader: str | None = None, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.leader = leader
        self.resource = ResourceRef("matrix_room", self.alias)

    async def do(self, ctx: StepContext) -> Outcome:
        config = self.services.config
        admins = [UserId(a) for a in config.matrix.admins]
        authority = [names.user_id(self.leader, self.services.domain)] if self.leader else []
        power = {**{a: 100 for a in admins}, **{a: 100 for a in authority}, self.user_id: 0}
        token = await ctx.store.secrets.get(ctx.op.subject, ACCESS_TOKEN)
        async with ctx.external("matrix"):
            room = await self.services.matrix.ensure_room(
                names.worker_room_alias(self.worker), name=f"Worker: {self.worker}",
                topic=f"Talk to the worker {self.worker} here", invite=[*admins, *authority, self.user_id],
                power_users=power,
                meta={"schemaVersion": 1, "roomKind": ROOM_META_KIND, "workerName": self.worker,
                      "createdBy": "hiclaw-bot"},
            )
            if token is not None:
                await self.services.matrix.join(room.room_id, token=token.reveal())
        await ctx.store.workers.update(self.worker, room_id=room.room_id)
        return Done({"room_id": room.room_id}, external_id=room.room_id)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        await release_room(self.services, self.worker)


class HumanAccess(WorkerStep):
    """The humans who may talk to the worker are invited to its room (see :mod:`hiclaw_bot.flows.access`)."""

    name = "humans"

    async def do(self, ctx: StepContext) -> Outcome:
        return Done(await sync_room(ctx, self.services, self.worker, step=self.name))


class GatewayConsumer(WorkerStep):
    name = "gateway_consumer"

    def __init__(self, services: Services, worker: str, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.resource = ResourceRef("gateway_consumer", names.consumer(worker))

    async def do(self, ctx: StepContext) -> Outcome:
        gateway = self.services.gateway
        if gateway is None:
            return Skipped("no gateway configured")
        key = (await ctx.secret(GATEWAY_KEY)).reveal()
        async with ctx.external("higress"):
            await gateway.ensure_consumer(names.consumer(self.worker), key)
        return Done({"consumer": names.consumer(self.worker)}, external_id=names.consumer(self.worker))

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        if self.services.gateway is not None:
            async with ctx.external("higress"):
                await self.services.gateway.delete_consumer(names.consumer(self.worker))


class GatewayAuth(WorkerStep):
    """Put the consumer on the AI routes' and MCP servers' allow lists."""

    name = "gateway_auth"

    def __init__(self, services: Services, worker: str, mcp: list[str], **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.mcp = mcp
        self.resource = ResourceRef("gateway_auth", names.consumer(worker))

    async def do(self, ctx: StepContext) -> Outcome:
        gateway = self.services.gateway
        settings = self.services.config.gateway
        if gateway is None or settings.kind != "higress":
            return Skipped("no gateway configured")
        consumer = names.consumer(self.worker)
        async with ctx.external("higress"):
            routes = await gateway.authorize(consumer, settings.routes)
            servers = await gateway.authorize_mcp(consumer, self.mcp) if self.mcp else []
        return Done({"routes": routes, "mcp": servers})

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        gateway = self.services.gateway
        if gateway is None:
            return
        consumer = names.consumer(self.worker)
        async with ctx.external("higress"):
            await gateway.deauthorize(consumer, "all")
            await gateway.deauthorize_mcp(consumer, "all")


class Record(WorkerStep):
    """Write down the worker's new state once everything before is done."""

    name = "record"

    def __init__(self, services: Services, worker: str, state: WorkerPhase, **fields: Any) -> None:
        super().__init__(services, worker)
        self.state = state
        self.fields = fields

    async def do(self, ctx: StepContext) -> Outcome:
        fields = {"desired_state": self.state, **self.fields}  # asleep on purpose is what is wanted now
        await ctx.store.workers.update(self.worker, state=self.state, observed_state=self.state,
                                       previous_state=None, **fields)
        return Done({"state": self.state})


class Mark(WorkerStep):
    """Move the worker to a transitional state (``Updating``), remembering where it was."""

    name = "mark"

    def __init__(self, services: Services, worker: str, state: WorkerPhase) -> None:
        super().__init__(services, worker)
        self.state = state

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        if row is None:
            raise PermanentError(f"no worker named {self.worker}")
        previous = row.previous_state if row.state == self.state else row.state
        await ctx.store.workers.update(self.worker, state=self.state, previous_state=previous)
        return Done({"previous": previous})
