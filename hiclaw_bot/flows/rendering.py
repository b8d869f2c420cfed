"""A worker's files: the spec they are rendered from, built in one place, and the two ways to push them.

The ``config`` step (:class:`WriteConfig`) of a worker's own operations renders from the
operation's params; everything else that changes a worker's config from outside (a team adding or
losing a member, a human gaining or losing access) renders from the worker's row with
:func:`push_config`. Both go through :func:`config_spec`, so the two cannot drift apart (they did:
one lost fields the other had). Rendering is byte-stable, so an unchanged worker costs one
comparison per file and a re-run after a crash is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hiclaw_bot.engine import Done, Outcome, PermanentError, ResourceRef, StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows.access import allowed_senders
from hiclaw_bot.flows.params import WorkerParams
from hiclaw_bot.flows.runtimes import profile
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_config import McpServer, TeamMember, WorkerConfigSpec, render_worker_config
from hiclaw_bot.flows.worker_steps import ACCESS_TOKEN, GATEWAY_KEY, WorkerStep
from hiclaw_bot.types import Role, RoomId, TeamName, WorkerName
from storage import Worker


async def config_spec(services: Services, ctx: StepContext, worker: str, params: WorkerParams, *,
                      gateway_key: str, members: Sequence[Worker] | None = None) -> WorkerConfigSpec:
    """What ``worker``'s files say, from its params (model, team, leader, role, skills, MCP servers,
    runtime): its room and token come from the store, a leader's members (by default its team's
    other workers) from the workers table."""
    token = await ctx.store.secrets.get(f"worker:{worker}", ACCESS_TOKEN)
    row = await ctx.store.workers.get(worker)
    if token is None or row is None or row.room_id is None:
        raise PermanentError(f"worker {worker} has no account or room yet")
    config = services.config
    team = params.team
    senders = await allowed_senders(ctx, services, worker, team=team, leader=params.leader if team else None)
    if members is None:
        members = [w for w in await ctx.store.workers.all(team=team) if w.name != worker] if params.leads else []
    return WorkerConfigSpec(
        worker=WorkerName(worker), homeserver_url=config.matrix.worker_homeserver_url,
        user_id=names.user_id(worker, services.domain), access_token=token.reveal(), room_id=RoomId(row.room_id),
        allowed_senders=senders, model=str(params.model),
        gateway_url=config.gateway.worker_url if config.gateway.kind == "higress" else "http://127.0.0.1",
        gateway_key=gateway_key, role=Role.TEAM_LEADER if params.leads else Role.WORKER,
        team=TeamName(team) if team else None,
        team_members=tuple(TeamMember(WorkerName(m.name), names.user_id(m.name, services.domain), RoomId(m.room_id))
                           for m in members if m.room_id is not None),
        skills=params.skills, mcp_servers=tuple(McpServer(s) for s in params.mcp),
        gateway_port=profile(params.runtime).gateway_port(config, worker),
    )


def row_params(row: Worker) -> WorkerParams:
    """A worker's params as its row records them (the row's team and role win over its spec's)."""
    return WorkerParams.of({**row.spec, "name": row.name, "model": row.model, "image": row.image, "team": row.team,
                            "role": row.role})


async def write_files(services: Services, ctx: StepContext, worker: str, spec: WorkerConfigSpec) -> tuple[str, int]:
    """Render ``spec`` and push what changed (seed-only files once); the digest and files written."""
    rendered = render_worker_config(spec)
    prefix = names.worker_prefix(worker)
    written = 0
    async with ctx.external("storage"):
        for path, data in sorted(rendered.files.items()):
            if path in rendered.seed_only:
                written += await services.objects.put_if_absent(prefix + path, data)
            else:
                written += await services.objects.put(prefix + path, data)
    return rendered.digest(), written


async def push_config(services: Services, ctx: StepContext, worker: str,
                      members: Sequence[Worker] | None = None) -> str:
    """Render ``worker``'s files from its row (and, for a leader, its members: by default its team's
    other workers) and push what changed."""
    row = await ctx.store.workers.get(worker)
    key = await ctx.store.secrets.get(f"worker:{worker}", GATEWAY_KEY)
    if row is None or key is None:
        raise PermanentError(f"worker {worker} has no account or room yet")
    spec = await config_spec(services, ctx, worker, row_params(row), gateway_key=key.reveal(), members=members)
    digest, _ = await write_files(services, ctx, worker, spec)
    return digest


class WriteConfig(WorkerStep):
    """Render the worker's files from the operation's params and push what changed; seed-only
    files are written once."""

    name = "config"

    def __init__(self, services: Services, worker: str, params: WorkerParams, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.params = params
        self.resource = ResourceRef("object_prefix", names.worker_prefix(worker))

    async def do(self, ctx: StepContext) -> Outcome:
        key = (await ctx.secret(GATEWAY_KEY)).reveal()
        spec = await config_spec(self.services, ctx, self.worker, self.params, gateway_key=key)
        digest, written = await write_files(self.services, ctx, self.worker, spec)
        return Done({"digest": digest, "written": written}, external_id=names.worker_prefix(self.worker))

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        async with ctx.external("storage"):
            await self.services.objects.delete_prefix(names.worker_prefix(self.worker))
