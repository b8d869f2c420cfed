"""Who may talk to a worker: the rule, applied to its config and to its room.

A worker takes instructions only from its allowed senders (``dm.allowFrom`` and ``groupAllowFrom``
in its ``openclaw.json``, which the reference agent and OpenClaw both obey). They are the admins,
the worker's team leader, and the humans :func:`~hiclaw_bot.flows.human_steps.talks_to` grants it:
admin-level humans every worker, ``team`` humans the workers of their teams and those named with
``--workers``, viewers none. A human may only talk to a worker whose room it is in, so the room
follows the same rule: :func:`sync_room` invites whoever is granted and takes out whoever is not.

Both are recomputed from the tables whenever something they depend on changes (a worker created,
updated, joining or leaving a team; a human created, invited again or deleted). Every write is
idempotent (a config render is byte-stable, an invite or kick of someone already there or gone is
a no-op) and each membership is checkpointed in the ledger as the human's, so a crash repeats at
most no-ops and deleting the human later finds every room it was put in.
"""

from __future__ import annotations

from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.engine import StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows.human_steps import (
    DELETING,
    MEMBERSHIP,
    HumanRef,
    grant,
    membership_name,
    revoke,
    talks_to,
)
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import RoomId, UserId


async def allowed_senders(ctx: StepContext, services: Services, worker: str, *, team: str | None,
                          leader: str | None) -> tuple[UserId, ...]:
    """The admins, the leader, and every human (not being deleted) the rule lets talk to ``worker``."""
    senders = [UserId(a) for a in services.config.matrix.admins]
    if leader:
        senders.append(names.user_id(leader, services.domain))
    for human in await ctx.store.humans.all():
        if human.state != DELETING and talks_to(human.level, human.teams, human.workers, worker, team):
            senders.append(UserId(human.user_id))
    return tuple(sorted(set(senders)))


async def sync_room(ctx: StepContext, services: Services, worker: str, *, step: str) -> dict[str, list[str]]:
    """Invite to ``worker``'s room the humans the rule grants it, and take out the others we put there."""
    row = await ctx.store.workers.get(worker)
    if row is None or row.room_id is None:
        return {"invited": [], "removed": []}
    room_id = RoomId(row.room_id)
    invited: list[str] = []
    removed: list[str] = []
    for human in await ctx.store.humans.all():
        ref = HumanRef(human.name, services.domain)
        if human.state != DELETING and talks_to(human.level, human.teams, human.workers, worker, row.team):
            await grant(ctx, services, ref, room_id, False, step=step)
            invited.append(human.name)
            continue
        known = await ctx.store.ledger.get(MEMBERSHIP, membership_name(ref.user_id, room_id))
        if known is not None and known.owner == ref.subject and known.state != "deleted":
            await revoke(ctx, services, ref, known.external_name, known.attrs)
            removed.append(human.name)
    return {"invited": invited, "removed": removed}


async def forget_room(ctx: StepContext, room_id: str) -> None:
    """A deleted worker's room is emptied by its own undo: its memberships are closed in the ledger."""
    for resource in await ctx.store.ledger.live(MEMBERSHIP):
        if resource.attrs.get("room_id") == room_id:
            await ctx.store.ledger.record(MEMBERSHIP, resource.external_name, "deleted", owner=resource.owner)


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
