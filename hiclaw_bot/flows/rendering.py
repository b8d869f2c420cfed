"""A worker's files rendered again from the tables, wherever something they depend on changed.

The ``config`` step of a worker's own operations renders from the operation's params; everything
else that changes a worker's config from outside (a team adding or losing a member, a human gaining
or losing access) renders from the worker's row with :func:`push_config`. Rendering is byte-stable,
so an unchanged worker costs one comparison per file and a re-run after a crash is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence

from hiclaw_bot.engine import PermanentError, StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows.access import allowed_senders
from hiclaw_bot.flows.runtimes import profile_of
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_config import (
    McpServer,
    Role,
    TeamMember,
    WorkerConfigSpec,
    render_worker_config,
)
from hiclaw_bot.flows.worker_steps import ACCESS_TOKEN, GATEWAY_KEY
from hiclaw_bot.types import RoomId, TeamName, WorkerName
from storage import Worker

LEADER_ROLE: Role = "team_leader"
WORKER_ROLE: Role = "worker"


async def push_config(services: Services, ctx: StepContext, worker: str,
                      members: Sequence[Worker] | None = None) -> str:
    """Render ``worker``'s files from its row (and, for a leader, its members: by default its team's
    other workers) and push what changed."""
    row = await ctx.store.workers.get(worker)
    owner = f"worker:{worker}"
    token = await ctx.store.secrets.get(owner, ACCESS_TOKEN)
    key = await ctx.store.secrets.get(owner, GATEWAY_KEY)
    if row is None or token is None or key is None or row.room_id is None:
        raise PermanentError(f"worker {worker} has no account or room yet")
    config = services.config
    leader = row.spec.get("leader") if row.team else None
    senders = await allowed_senders(ctx, services, worker, team=row.team, leader=str(leader) if leader else None)
    is_leader = row.role == LEADER_ROLE and row.team is not None
    if members is None:
        members = [w for w in await ctx.store.workers.all(team=row.team) if w.name != worker] if is_leader else []
    team_members = tuple(TeamMember(WorkerName(m.name), names.user_id(m.name, services.domain), RoomId(m.room_id))
                         for m in members if m.room_id is not None)
    spec = WorkerConfigSpec(
        worker=WorkerName(worker), homeserver_url=config.matrix.worker_homeserver_url,
        user_id=names.user_id(worker, services.domain), access_token=token.reveal(), room_id=RoomId(row.room_id),
        allowed_senders=senders, model=str(row.model),
        gateway_url=config.gateway.worker_url if config.gateway.kind == "higress" else "http://127.0.0.1",
        gateway_key=key.reveal(), role=LEADER_ROLE if is_leader else WORKER_ROLE,
        team=TeamName(row.team) if row.team else None, team_members=team_members,
        skills=tuple(row.spec.get("skills", [])), mcp_servers=tuple(McpServer(s) for s in row.spec.get("mcp", [])),
        gateway_port=profile_of(row.spec).gateway_port(config, worker),
    )
    rendered = render_worker_config(spec)
    prefix = names.worker_prefix(worker)
    async with ctx.external("storage"):
        for path, data in sorted(rendered.files.items()):
            if path in rendered.seed_only:
                await services.objects.put_if_absent(prefix + path, data)
            else:
                await services.objects.put(prefix + path, data)
    return rendered.digest()
