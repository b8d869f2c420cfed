"""What a team does to its workers: makes or adopts them, attaches and detaches them, writes the
leader's config.

* a member is made by a child ``worker.create`` operation submitted through the engine, never by
  calling worker steps inline: the child is durable on its own, holds its worker's subject, and a
  crashed team operation finds it again by that subject (still running → wait; failed → retry it;
  done → the worker row is there);
* joining a team (``attach``) and leaving it (``detach``) only touch what the team adds to a
  worker: the team field of its row, the leader's seat (invite, power 100) in the worker's room,
  and the allowed senders in its config, all idempotent and re-done on every run; the humans who
  may talk to it follow (:mod:`hiclaw_bot.flows.access`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from hiclaw_bot.engine import Done, Engine, Outcome, PermanentError, StepContext, SubjectBusy
from hiclaw_bot.flows import names
from hiclaw_bot.flows import worker as worker_flows
from hiclaw_bot.flows.access import sync_room
from hiclaw_bot.flows.rendering import push_config
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.team_steps import TeamStep
from hiclaw_bot.flows.worker_identity import regrant
from hiclaw_bot.types import Role, RoomId
from storage import Operation

# -- child operations ------------------------------------------------------------------------------


async def run_child(engine: Engine, parent: Operation, kind: str, worker: str, params: dict[str, Any]) -> None:
    """Run ``kind`` on ``worker`` as an operation of its own, or join the one already holding it.

    A holder of the same kind is this team operation's child from before a crash: a running one is
    waited for, a failed one resumed at its failed step. A delete waits for a create still running
    (an aborted team's member) and takes the place of anything failed; anything else holding the
    worker is a conflict the person must settle.
    """
    subject = worker_flows.subject(worker)
    while True:
        holder = await engine.store.ops.holder(subject)
        if holder is not None and holder.kind == kind:
            op_id = (await engine.retry(holder.op_id)).op_id if holder.state == "failed" else holder.op_id
        elif holder is not None and kind == worker_flows.DELETE and holder.state == "running":
            await engine.wait(holder.op_id)  # an aborted team's member still being made: let it finish first
            continue
        elif holder is None or (kind == worker_flows.DELETE and holder.state == "failed"):
            try:  # a delete takes the place of whatever failed on the worker (supersedes_failed)
                op_id = (await engine.submit(kind, subject, params, actor=parent.actor,
                                             room_id=parent.room_id)).op.op_id
            except SubjectBusy:
                continue  # taken between our read and our insert: look at the new holder
        else:
            raise PermanentError(f"worker {worker} is busy with operation {holder.op_id} ({holder.kind}, "
                                 f"{holder.state}); settle it first (`!op show {holder.op_id}`)")
        op = await engine.wait(op_id)
        if op.state == "succeeded":
            return
        if op.state in ("running", "compensating"):
            # The engine is stopping and stopped the child: stop too, leaving this operation
            # ``running`` so that both resume at the next start (a failure would need a person).
            raise asyncio.CancelledError
        raise PermanentError(f"{kind} {worker} (operation {op.op_id}) {op.state}"
                             + (f" at step {op.failed_step}: {op.error}" if op.error else ""))


class CreateMember(TeamStep):
    """A member (or the leader) of a team: created by a child ``worker.create``, or adopted.

    An existing worker is adopted only when the command said so (``--adopt``), and never one that
    is in another team. Either way the worker ends attached: in the team, its room open to the leader.
    ``template`` holds the new worker's settings (model, image, skills…); the team fields are added.
    """

    def __init__(self, services: Services, engine: Engine, team: str, worker: str, *, leader: str,
                 template: Mapping[str, Any], adopt: bool, after: Sequence[str] | None = None) -> None:
        super().__init__(services, team, after=after)
        self.engine = engine
        self.worker = worker
        self.leader = leader
        self.template = template
        self.adopt = adopt
        self.name = "leader" if worker == leader else f"member_{worker}"

    @property
    def role(self) -> str:
        return Role.TEAM_LEADER if self.worker == self.leader else Role.WORKER

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        holder = await ctx.store.ops.holder(worker_flows.subject(self.worker))
        created = row is None or (holder is not None and holder.kind == worker_flows.CREATE)
        if row is not None and not created:
            if row.team not in (None, self.team):
                raise PermanentError(f"worker {self.worker} is in team {row.team}")
            if row.team is None and not self.adopt:
                raise PermanentError(f"worker {self.worker} already exists; adopt it with --adopt")
        else:
            child = {"skills": [], "mcp": [], "env": {}, **self.template, "name": self.worker, "team": self.team,
                     "role": self.role}
            if self.worker != self.leader:
                child["leader"] = self.leader
            await run_child(self.engine, ctx.op, worker_flows.CREATE, self.worker, child)
        room_id = await attach(self.services, ctx, self.worker, team=self.team, leader=self.leader)
        return Done({"worker": self.worker, "room_id": room_id, "adopted": not created and self.adopt})

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        """An aborted create: a worker made for the team is deleted, an adopted one only detached,
        and one that was never ours (refused, or in another team) left alone."""
        row = await ctx.store.workers.get(self.worker)
        if row is not None and row.team not in (None, self.team):
            return
        history = await ctx.store.ops.find(subject=worker_flows.subject(self.worker), limit=100)
        made_here = any(op.kind == worker_flows.CREATE and op.op_id > ctx.op.op_id
                        and worker_flows.spec_of(op).team == self.team for op in history)
        if made_here:
            params = {**(row.spec if row else {}), "name": self.worker}
            if row is not None:
                params.update(model=row.model, image=row.image)
            await run_child(self.engine, ctx.op, worker_flows.DELETE, self.worker, params)
        elif row is not None and row.team == self.team:
            await detach(self.services, ctx, self.worker, leader=self.leader)


class DeleteMember(TeamStep):
    """A team member deleted with its team (``--with-workers``), by a child ``worker.delete``."""

    def __init__(self, services: Services, engine: Engine, team: str, worker: str, *, leader: bool,
                 after: Sequence[str] | None = None) -> None:
        super().__init__(services, team, after=after)
        self.engine = engine
        self.worker = worker
        self.name = "delete_leader" if leader else f"delete_member_{worker}"

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        holder = await ctx.store.ops.holder(worker_flows.subject(self.worker))
        if row is None and holder is None:
            return Done({"worker": self.worker, "deleted": False})
        params = {**(row.spec if row else {}), "name": self.worker}
        if row is not None:
            params.update(model=row.model, image=row.image)
        elif holder is not None:
            params = dict(holder.params)
        await run_child(self.engine, ctx.op, worker_flows.DELETE, self.worker, params)
        return Done({"worker": self.worker, "deleted": True})


# -- what a team adds to a worker ------------------------------------------------------------------


async def attach(services: Services, ctx: StepContext, worker: str, *, team: str, leader: str) -> str | None:
    """Put ``worker`` in ``team``: its row, the leader's seat in its room, the leader in its config."""
    row = await ctx.store.workers.get(worker)
    if row is None:
        raise PermanentError(f"there is no worker named {worker}")
    is_leader = worker == leader
    role = Role.TEAM_LEADER if is_leader else Role.WORKER
    spec = {**row.spec, "team": team, "role": role}
    if is_leader:
        spec.pop("leader", None)
    else:
        spec["leader"] = leader
    await ctx.store.workers.update(worker, team=team, role=role, spec=spec)
    await regrant(services, ctx, worker, team)
    if row.room_id is not None and not is_leader:
        leader_id = names.user_id(leader, services.domain)
        async with ctx.external("matrix"):
            await services.matrix.merge_power_levels(RoomId(row.room_id), {leader_id: 100})
            await services.matrix.invite(RoomId(row.room_id), leader_id)
    if not is_leader:
        await push_config(services, ctx, worker)
    await sync_room(ctx, services, worker, step="team")
    return row.room_id


async def detach(services: Services, ctx: StepContext, worker: str, *, leader: str) -> None:
    """Take ``worker`` out of its team: the reverse of :func:`attach`; a leader becomes a plain worker."""
    row = await ctx.store.workers.get(worker)
    if row is None:
        return
    spec = {key: value for key, value in row.spec.items() if key not in ("team", "leader")}
    spec["role"] = Role.WORKER
    await ctx.store.workers.update(worker, team=None, role=Role.WORKER, spec=spec)
    await regrant(services, ctx, worker, None)
    if row.room_id is not None and worker != leader:
        leader_id = names.user_id(leader, services.domain)
        async with ctx.external("matrix"):
            await services.matrix.kick(RoomId(row.room_id), leader_id, reason="left the team")
            await services.matrix.merge_power_levels(RoomId(row.room_id), {leader_id: None})
    await push_config(services, ctx, worker)
    await sync_room(ctx, services, worker, step="team")


class LeaderConfig(TeamStep):
    """Rewrite the leader's files with its members and their rooms (byte-stable: unchanged is free)."""

    name = "leader_config"

    async def do(self, ctx: StepContext) -> Outcome:
        team = await self.row(ctx)
        members = [w for w in await ctx.store.workers.all(team=self.team) if w.name != team.leader]
        digest = await push_config(self.services, ctx, team.leader, members)
        return Done({"digest": digest, "members": [m.name for m in members]})


class Attach(TeamStep):
    """``!team add``: an existing worker joins the team."""

    def __init__(self, services: Services, team: str, worker: str) -> None:
        super().__init__(services, team)
        self.worker = worker
        self.name = f"attach_{worker}"

    async def do(self, ctx: StepContext) -> Outcome:
        team = await self.row(ctx)
        row = await ctx.store.workers.get(self.worker)
        if row is not None and row.team not in (None, self.team):
            raise PermanentError(f"worker {self.worker} is in team {row.team}")
        return Done({"room_id": await attach(self.services, ctx, self.worker, team=self.team, leader=team.leader)})


class Detach(TeamStep):
    """``!team remove`` and ``!team delete`` without ``--with-workers``: a worker leaves the team."""

    def __init__(self, services: Services, team: str, worker: str, *, leader: str,
                 after: Sequence[str] | None = None) -> None:
        super().__init__(services, team, after=after)
        self.worker = worker
        self.leader = leader
        self.name = "detach_leader" if worker == leader else f"detach_member_{worker}"

    async def do(self, ctx: StepContext) -> Outcome:
        await detach(self.services, ctx, self.worker, leader=self.leader)
        return Done()
