"""The steps of a worker's life, each observing by deterministic name before it acts.

Every step here follows the engine's contract (see :mod:`hiclaw_bot.engine.steps`): ``observe``
finds an effect already in place, ``do`` makes it, ``undo`` reverses it with "already gone" as
success. Secrets live in the store (``ctx.secret``), never in step outputs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from backends import NotFound, Resources, WorkerBackend, WorkerSpec, WorkerState
from backends.base import parse_quantity
from hiclaw_bot.agent.env import StorageAccess
from hiclaw_bot.clients.errors import NotFoundError, UnauthorizedError
from hiclaw_bot.engine import Done, Outcome, PermanentError, ResourceRef, Skipped, Step, StepContext
from hiclaw_bot.flows import accounts, names
from hiclaw_bot.flows import worker_env as env_rule
from hiclaw_bot.flows.access import allowed_senders, sync_room
from hiclaw_bot.flows.runtimes import ReadyContext, profile_of
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_config import McpServer, TeamMember, WorkerConfigSpec, render_worker_config
from hiclaw_bot.flows.worker_identity import worker_storage
from hiclaw_bot.types import RoomId, UserId, WorkerName
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


async def release_room(services: Services, worker: str) -> None:
    """Drop the alias and empty the room of everyone but its keepers; the history stays (upstream #1184)."""
    matrix = services.matrix
    alias = names.full_alias(names.worker_room_alias(worker), services.domain)
    try:
        room_id = await matrix.resolve_alias(alias)
    except NotFoundError:
        return
    keep = {services.bot_user_id, *services.config.matrix.admins}
    for member in await matrix.joined_members(room_id):
        if member not in keep:
            await matrix.kick(room_id, member, reason=f"worker {worker} deleted")
    await matrix.delete_alias(alias)


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


class Config(WorkerStep):
    """Render the worker's files and push what changed; seed-only files are written once."""

    name = "config"

    def __init__(self, services: Services, worker: str, params: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.params = params
        self.resource = ResourceRef("object_prefix", names.worker_prefix(worker))

    async def do(self, ctx: StepContext) -> Outcome:
        spec = await self._spec(ctx)
        rendered = render_worker_config(spec)
        prefix = names.worker_prefix(self.worker)
        written = 0
        async with ctx.external("storage"):
            for path, data in sorted(rendered.files.items()):
                if path in rendered.seed_only:
                    written += await self.services.objects.put_if_absent(prefix + path, data)
                else:
                    written += await self.services.objects.put(prefix + path, data)
        return Done({"digest": rendered.digest(), "written": written}, external_id=prefix)

    async def _spec(self, ctx: StepContext) -> WorkerConfigSpec:
        config = self.services.config
        token = await ctx.store.secrets.get(ctx.op.subject, ACCESS_TOKEN)
        key = await ctx.secret(GATEWAY_KEY)
        row = await ctx.store.workers.get(self.worker)
        if token is None or row is None or row.room_id is None:
            raise PermanentError(f"worker {self.worker} has no account or room yet")
        senders = await allowed_senders(ctx, self.services, self.worker, team=self.params.get("team"),
                                        leader=self.params.get("leader"))
        gateway_url = config.gateway.worker_url if config.gateway.kind == "higress" else "http://127.0.0.1"
        return WorkerConfigSpec(
            worker=WorkerName(self.worker), homeserver_url=config.matrix.worker_homeserver_url, user_id=self.user_id,
            access_token=token.reveal(), room_id=RoomId(row.room_id),
            allowed_senders=senders, model=str(self.params["model"]),
            gateway_url=gateway_url, gateway_key=key.reveal(),
            mcp_servers=tuple(McpServer(s) for s in self.params.get("mcp", [])),
            role=self.params.get("role", "worker"), team=self.params.get("team"),
            skills=tuple(self.params.get("skills", [])), team_members=await self._team_members(ctx),
            gateway_port=profile_of(self.params).gateway_port(config, self.worker),
        )

    async def _team_members(self, ctx: StepContext) -> tuple[TeamMember, ...]:
        """A leader's members and their rooms, so rewriting a leader's files keeps its team in them."""
        team = self.params.get("team")
        if self.params.get("role") != "team_leader" or not team:
            return ()
        return tuple(TeamMember(WorkerName(w.name), names.user_id(w.name, self.services.domain), RoomId(w.room_id))
                     for w in await ctx.store.workers.all(team=team) if w.name != self.worker and w.room_id)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        async with ctx.external("storage"):
            await self.services.objects.delete_prefix(names.worker_prefix(self.worker))


SKILLS = resources.files("hiclaw_bot.flows").joinpath("skills")
LEADER_SKILL = "team-operations"
"""Rendered by the chat layer (``Services.leader_skill``) and pushed to team leaders only."""


def builtin_skills() -> list[str]:
    """The skills shipped with the bot (``hiclaw_bot/flows/skills/<name>/SKILL.md``)."""
    return sorted(entry.name for entry in SKILLS.iterdir() if entry.joinpath("SKILL.md").is_file())


class Skills(WorkerStep):
    """Push the worker's skills, every file of each (``SKILL.md``, ``scripts/``…); unchanged files
    are skipped by the object store."""

    name = "skills"

    def __init__(self, services: Services, worker: str, skills: list[str], *, team: str | None = None,
                 leader: bool = False, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.skills = skills
        self.team = team
        self.leader = leader

    async def do(self, ctx: StepContext) -> Outcome:
        leader_skill = await self._leader_skill(ctx)
        if not self.skills and leader_skill is None:
            return Skipped("no skills asked for")
        unknown = sorted(set(self.skills) - set(builtin_skills()))
        if unknown:
            raise PermanentError(f"unknown skill(s): {', '.join(unknown)}; known: {', '.join(builtin_skills())}")
        prefix = names.worker_prefix(self.worker)
        written = 0
        async with ctx.external("storage"):
            for skill in sorted(set(self.skills)):
                for path, data in skill_files(skill):
                    written += await self.services.objects.put(f"{prefix}skills/{skill}/{path}", data)
            if leader_skill is not None:
                written += await self.services.objects.put(f"{prefix}skills/{LEADER_SKILL}/SKILL.md", leader_skill)
        pushed = sorted({*self.skills, *([LEADER_SKILL] if leader_skill is not None else [])})
        return Done({"skills": pushed, "written": written})

    async def _leader_skill(self, ctx: StepContext) -> bytes | None:
        """A leader's ``team-operations`` skill, with its team and quota filled in."""
        template = self.services.leader_skill
        if not self.leader or self.team is None or template is None:
            return None
        row = await ctx.store.teams.get(self.team)
        limit = row.max_workers if row is not None and row.max_workers is not None \
            else self.services.config.team_limit(self.team)
        quota = f"{limit} workers" if limit is not None else "none set (ask an admin to set one)"
        return template.replace("{team}", self.team).replace("{quota}", quota).encode()


def skill_files(skill: str) -> list[tuple[str, bytes]]:
    """Every file of a shipped skill, by path inside the skill, sorted (caches excluded)."""
    found: list[tuple[str, bytes]] = []

    def walk(node: Traversable, path: str) -> None:
        for entry in sorted(node.iterdir(), key=lambda e: e.name):
            if entry.name.startswith((".", "__")):
                continue
            if entry.is_dir():
                walk(entry, f"{path}{entry.name}/")
            else:
                found.append((f"{path}{entry.name}", entry.read_bytes()))

    walk(SKILLS.joinpath(skill), "")
    return found


def check_env(services: Services, params: Mapping[str, Any]) -> None:
    """Refuse, before the backend sees it, an environment the worker env rule refuses (whatever asked)."""
    why = env_rule.refusal(dict(params.get("env") or {}), services.config.worker_env)
    if why is not None:
        raise PermanentError(why)


def worker_spec(services: Services, worker: str, params: Mapping[str, Any], storage: StorageAccess) -> WorkerSpec:
    """What the backend runs: its runtime's command and image, and the environment that tells the
    worker where its files are, with the worker's own key (``storage``), never the bot's (the
    runtime's variables win over the user's ``--env``)."""
    runtime = profile_of(params)
    env = {**dict(params.get("env", {})), **runtime.env(services.config, storage, worker)}
    command = params.get("command") or runtime.command(services.config)
    defaults = services.config.backend.resources
    cpus, memory = str(params.get("cpus") or defaults.cpus), str(params.get("memory") or defaults.memory)
    return WorkerSpec(name=worker, image=str(params["image"]), env=env,
                      command=[str(arg) for arg in command] if command else None,
                      labels={"role": str(params.get("role", "worker"))},
                      resources=Resources(cpu_limit=cpus, memory_limit=memory,
                                          cpu_request=_at_most(defaults.cpus_request, cpus),
                                          memory_request=_at_most(defaults.memory_request, memory)))


def _at_most(request: str, limit: str) -> str:
    return request if parse_quantity(request) <= parse_quantity(limit) else limit


async def spec_of(services: Services, ctx: StepContext, worker: str, params: Mapping[str, Any]) -> WorkerSpec:
    return worker_spec(services, worker, params, await worker_storage(services, ctx.store, worker))


class Runtime(WorkerStep):
    """Create and start the worker on the backend (adopting one that runs the same spec)."""

    name = "runtime"

    def __init__(self, services: Services, worker: str, params: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.params = params
        self.resource = ResourceRef("worker_runtime", names.container(worker))

    async def observe(self, ctx: StepContext) -> Outcome | None:
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        backend = await self.backend()
        async with ctx.external("backend"):
            status = await backend.status(self.worker)
        if status.state in (WorkerState.RUNNING, WorkerState.STARTING) and status.spec_hash == spec.spec_hash:
            return Done({"spec_hash": spec.spec_hash}, external_id=names.container(self.worker),
                        spec_hash=spec.spec_hash)
        return None

    async def do(self, ctx: StepContext) -> Outcome:
        check_env(self.services, self.params)
        backend = await self.backend()
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        async with ctx.external("backend"):
            ref = await backend.create(spec, replace=True)
            await backend.start(self.worker)
        return Done({"spec_hash": ref.spec_hash}, external_id=ref.external_id, spec_hash=ref.spec_hash)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        backend = await self.backend()
        async with ctx.external("backend"):
            await backend.delete(self.worker)


class Ready(WorkerStep):
    """Wait until the worker is up, as its runtime's profile judges it: the reference agent reports
    a sync after this start, OpenClaw's gateway answers its health check. Joining the room proves
    nothing: the room step joins the worker's account itself, as runtimes that do not auto-join need."""

    name = "ready"
    interval = 0.2

    async def do(self, ctx: StepContext) -> Outcome:
        config = self.services.config
        row = await ctx.store.workers.get(self.worker)
        runtime = profile_of(row.spec if row is not None else {})
        timeout = runtime.ready_timeout(config)
        deadline = time.monotonic() + timeout
        detail = ""
        backend = await self.backend()
        while True:
            async with ctx.external("backend"):
                status = await backend.status(self.worker)
            if status.state is WorkerState.FAILED:
                raise PermanentError(f"the worker's runtime failed: {status.detail or 'no detail'}; "
                                     f"see !worker logs {self.worker}")
            if status.state is WorkerState.RUNNING:
                probe_ctx = ReadyContext(self.worker, backend, self.services.objects, status.started_at)
                async with ctx.external("worker"):
                    probe = await runtime.probe(config, probe_ctx)
                if probe.ready:
                    return Done({"ready": runtime.name})
                detail = probe.detail
            if time.monotonic() > deadline:
                raise PermanentError(
                    f"{self.worker} did not become ready within {timeout:.0f}s "
                    f"(runtime {runtime.name}: {status.state}{', ' + detail if detail else ''}); "
                    f"see !worker logs {self.worker}"
                )
            async with ctx.external("worker"):  # waiting for the worker to boot is the worker's time
                await asyncio.sleep(self.interval if runtime.name == "reference" else 2.0)


class Record(WorkerStep):
    """Write down the worker's new state once everything before is done."""

    name = "record"

    def __init__(self, services: Services, worker: str, state: str, **fields: Any) -> None:
        super().__init__(services, worker)
        self.state = state
        self.fields = fields

    async def do(self, ctx: StepContext) -> Outcome:
        fields = {"desired_state": self.state, **self.fields}  # asleep on purpose is what is wanted now
        await ctx.store.workers.update(self.worker, state=self.state, observed_state=self.state,
                                       previous_state=None, **fields)
        return Done({"state": self.state})


class Stop(WorkerStep):
    name = "stop"

    async def observe(self, ctx: StepContext) -> Outcome | None:
        backend = await self.backend()
        async with ctx.external("backend"):
            status = await backend.status(self.worker)
        return Done() if status.state in (WorkerState.STOPPED, WorkerState.NOT_FOUND) else None

    async def do(self, ctx: StepContext) -> Outcome:
        backend = await self.backend()
        async with ctx.external("backend"):
            await backend.stop(self.worker)
        return Done()


class Start(WorkerStep):
    name = "start"

    async def do(self, ctx: StepContext) -> Outcome:
        backend = await self.backend()
        async with ctx.external("backend"):
            try:
                await backend.start(self.worker)
            except NotFound:
                raise PermanentError(f"{self.worker} has no runtime on the backend; "
                                     f"!worker update {self.worker} recreates it") from None
        return Done()


class Mark(WorkerStep):
    """Move the worker to a transitional state (``Updating``), remembering where it was."""

    name = "mark"

    def __init__(self, services: Services, worker: str, state: str) -> None:
        super().__init__(services, worker)
        self.state = state

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        if row is None:
            raise PermanentError(f"no worker named {self.worker}")
        previous = row.previous_state if row.state == self.state else row.state
        await ctx.store.workers.update(self.worker, state=self.state, previous_state=previous)
        return Done({"previous": previous})


class Update(WorkerStep):
    """Apply a new runtime spec through the backend (in place, or new-beside-old on Docker).

    A runtime that vanished is created again, and one found stopped (by a crash, or by hand) is
    started, unless the worker was asleep before the update: the update leaves the worker as it
    found it (``restore`` puts a sleeper back), so its ``ready`` step has something to wait for.
    """

    name = "runtime_update"

    def __init__(self, services: Services, worker: str, params: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.params = params

    async def observe(self, ctx: StepContext) -> Outcome | None:
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        backend = await self.backend()
        async with ctx.external("backend"):
            status = await backend.status(self.worker)
        if status.spec_hash != spec.spec_hash:
            return None
        if status.state is not WorkerState.RUNNING and not await self._asleep(ctx):
            return None
        return Done({"spec_hash": spec.spec_hash})

    async def do(self, ctx: StepContext) -> Outcome:
        check_env(self.services, self.params)
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        backend = await self.backend()
        async with ctx.external("backend"):
            try:
                await backend.update(self.worker, spec)
            except NotFound:
                await backend.create(spec, replace=True)
            if not await self._asleep(ctx):
                await backend.start(self.worker)  # a no-op when it runs already
        return Done({"spec_hash": spec.spec_hash}, spec_hash=spec.spec_hash)

    async def _asleep(self, ctx: StepContext) -> bool:
        row = await ctx.store.workers.get(self.worker)
        return row is not None and row.previous_state == "Sleeping"


def _spoken(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{int(seconds)} seconds"


class Notify(WorkerStep):
    """Tell the worker's room why it slept or woke: the last step of an automatic sleep or wake.

    The notice's transaction id is the operation's, so a retry after a lost reply finds the
    homeserver's first event instead of posting a second one.
    """

    name = "notify"

    def __init__(self, services: Services, worker: str, params: Mapping[str, Any]) -> None:
        super().__init__(services, worker)
        self.params = params

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        if row is None or row.room_id is None:
            return Skipped("the worker has no room")
        body, html, relates_to = self._text(RoomId(row.room_id))
        async with ctx.external("matrix"):
            event_id = await self.services.matrix.send_notice(
                RoomId(row.room_id), body, html=html, relates_to=relates_to,
                txn_id=f"hiclaw.notify.{ctx.op.op_id}")
        return Done({"event_id": event_id})

    def _text(self, room_id: RoomId) -> tuple[str, str | None, dict[str, Any] | None]:
        missed = self.params.get("missed")
        if isinstance(missed, Mapping):
            link = f"https://matrix.to/#/{missed['room_id']}/{missed['event_id']}"
            where = "here" if missed["room_id"] == room_id else "in another room"
            body = (f"{self.user_id}: you were asleep when {missed['sender']} mentioned you {where}; "
                    f"you are awake now, please read it: {link}")
            html = (f"{self.user_id}: you were asleep when {missed['sender']} mentioned you {where}; "
                    f'you are awake now, please read <a href="{link}">the message you missed</a>.')
            relation = {"m.in_reply_to": {"event_id": missed["event_id"]}} if missed["room_id"] == room_id else None
            return body, html, relation
        idle = float(self.params.get("idle_s") or 0)
        return (f"{self.worker} is asleep after {_spoken(idle)} idle; mention it to wake it.", None, None)
