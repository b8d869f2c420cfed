"""The steps of a team's own objects: its row, its two rooms, their power levels, its shared folder.

A team owns few objects of its own (two rooms by alias and a shared folder); what it does to its
workers is in :mod:`hiclaw_bot.flows.team_members`. The team room's membership and power levels are
computed from the store (and the operation's params) when the step runs, so create, add and remove
share the same steps, and other people's entries (a human invited later, anyone's power level) are
never dropped: power levels are merged, membership only grows here and shrinks by explicit kicks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.engine import Done, Outcome, PermanentError, ResourceRef, Step, StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows import worker as worker_flows
from hiclaw_bot.flows.params import TeamParams
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_steps import ACCESS_TOKEN
from hiclaw_bot.types import RoomAlias, RoomId, UserId
from storage import Team

CREATING = "Creating"
ACTIVE = "Active"
DELETING = "Deleting"
SHARED_FOLDERS = ("tasks", "projects", "knowledge")
TEAM_ROOM_KIND = "team_room"
LEADER_DM_KIND = "team_leader_dm"


class TeamStep(Step):
    """A step about one team, with the services it needs."""

    def __init__(self, services: Services, team: str, *, after: Sequence[str] | None = None) -> None:
        self.services = services
        self.team = team
        if after is not None:
            self.after = tuple(after)

    def user(self, worker: str) -> UserId:
        return names.user_id(worker, self.services.domain)

    async def row(self, ctx: StepContext) -> Team:
        team = await ctx.store.teams.get(self.team)
        if team is None:
            raise PermanentError(f"there is no team named {self.team}")
        return team


# -- the team's own objects ------------------------------------------------------------------------


class Register(TeamStep):
    """Record the team (``Creating``) before anything else, so quotas and status see it at once."""

    name = "register"

    def __init__(self, services: Services, team: str, params: TeamParams) -> None:
        super().__init__(services, team)
        self.params = params

    async def do(self, ctx: StepContext) -> Outcome:
        if await ctx.store.teams.get(self.team) is None:
            await ctx.store.teams.upsert(self.team, leader=self.params.needs_leader(), state=CREATING,
                                         spec=dict(self.params.spec), max_workers=self.params.max_workers)
        return Done()

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        """An aborted create forgets the team (its rooms and members were undone before)."""
        await ctx.store.teams.delete(self.team)


def team_powers(services: Services, leader: str, members: Sequence[str]) -> dict[UserId, int]:
    """A team room's power levels: admins and leader 100, workers 0 (the DM: no workers)."""
    domain = services.domain
    return {**{names.user_id(w, domain): 0 for w in members},
            **{UserId(a): 100 for a in services.config.matrix.admins}, names.user_id(leader, domain): 100}


class TeamRoom(TeamStep):
    """The team room (leader, members, admins) or the leader's DM (leader, admins), by alias.

    Members are read from the store when the step runs. People we did not invite are left alone
    (``keep_others``): humans join team rooms through their own commands.
    """

    def __init__(self, services: Services, team: str, *, dm: bool, after: Sequence[str] | None = None) -> None:
        super().__init__(services, team, after=after)
        self.dm = dm
        self.name = "leader_dm" if dm else "team_room"
        self.localpart = names.team_leader_dm_alias(team) if dm else names.team_room_alias(team)
        self.resource = ResourceRef("matrix_room", names.full_alias(self.localpart, services.domain))

    @property
    def title(self) -> str:
        return f"Leader DM: {self.team}" if self.dm else f"Team: {self.team}"

    async def do(self, ctx: StepContext) -> Outcome:
        team = await self.row(ctx)
        members = await member_names(ctx, self.team, team.leader)
        workers = [team.leader] if self.dm else [team.leader, *members]
        admins = [UserId(a) for a in self.services.config.matrix.admins]
        powers = team_powers(self.services, team.leader, [] if self.dm else members)
        async with ctx.external("matrix"):
            room = await self.services.matrix.ensure_room(
                self.localpart, name=self.title, invite=[*admins, *map(self.user, workers)], keep_others=True,
                power_users=powers,
                topic=f"Team {self.team}: the leader talks to the admins here" if self.dm
                else f"Team {self.team}: its leader and workers",
                meta={"schemaVersion": 1, "roomKind": LEADER_DM_KIND if self.dm else TEAM_ROOM_KIND,
                      "teamName": self.team, "createdBy": "hiclaw-bot"})
        if self.dm:
            await ctx.store.teams.update(self.team, leader_dm_room_id=room.room_id)
        else:
            await ctx.store.teams.update(self.team, room_id=room.room_id)
        return Done({"room_id": room.room_id}, external_id=room.room_id)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        await release_team_room(self.services, ctx, self.team, self.localpart, self.title)


async def member_names(ctx: StepContext, team: str, leader: str) -> list[str]:
    """The team's members but its leader: those in the store, and those the operation is making
    (named in its params), so the rooms can be made while the members are."""
    params = TeamParams.of(ctx.params)
    named = [*params.workers, *([params.worker] if params.worker else [])]
    return sorted(({w.name for w in await ctx.store.workers.all(team=team)} | set(named)) - {leader})


class Join(TeamStep):
    """Every worker joins the team room, and the leader its DM, with its own token (a runtime that
    does not auto-join still ends up inside); joining twice is a no-op."""

    name = "join"

    async def do(self, ctx: StepContext) -> Outcome:
        team = await self.row(ctx)
        matrix = self.services.matrix

        async def join(worker: str, room_id: str | None) -> None:
            token = await ctx.store.secrets.get(worker_flows.subject(worker), ACCESS_TOKEN)
            if token is not None and room_id is not None:
                await matrix.join(RoomId(room_id), token=token.reveal())

        members = await member_names(ctx, self.team, team.leader)
        async with ctx.external("matrix"):
            await asyncio.gather(join(team.leader, team.leader_dm_room_id),
                                 *(join(w, team.room_id) for w in [team.leader, *members]))
        return Done({"joined": [team.leader, *members]})


async def release_team_room(services: Services, ctx: StepContext, team: str, localpart: str, title: str) -> None:
    """A deleted team's room: renamed "[deleted] …", its workers kicked, its alias removed; history kept."""
    matrix = services.matrix
    alias = RoomAlias(names.full_alias(localpart, services.domain))
    async with ctx.external("matrix"):
        try:
            room_id = await matrix.resolve_alias(alias)
        except NotFoundError:
            return
        await matrix.rename_room(room_id, f"[deleted] {title}")
        workers = {names.user_id(w.name, services.domain) for w in await ctx.store.workers.all(team=team)}
        row = await ctx.store.teams.get(team)
        if row is not None:
            workers.add(names.user_id(row.leader, services.domain))
        for user in sorted(workers & set(await matrix.joined_members(room_id))):
            await matrix.kick(room_id, user, reason=f"team {team} deleted")
        await matrix.delete_alias(alias)


class LeaveTeamRoom(TeamStep):
    """A worker leaving the team: kicked from the team room, its power level entry dropped."""

    def __init__(self, services: Services, team: str, worker: str) -> None:
        super().__init__(services, team)
        self.worker = worker
        self.name = "leave_team_room"

    async def do(self, ctx: StepContext) -> Outcome:
        team = await self.row(ctx)
        if team.room_id is not None:
            async with ctx.external("matrix"):
                await self.services.matrix.kick(RoomId(team.room_id), self.user(self.worker), reason="left the team")
                await self.services.matrix.merge_power_levels(RoomId(team.room_id), {self.user(self.worker): None})
        return Done()


class SharedFolder(TeamStep):
    """``teams/<team>/shared/{tasks,projects,knowledge}/.keep``: the team's common files.

    Kept when the team is deleted: what the team wrote there is work, not configuration, and a team
    created again under the same name finds it (the ``.keep`` files are written only when absent).
    """

    name = "shared"

    def __init__(self, services: Services, team: str, *, after: Sequence[str] | None = None) -> None:
        super().__init__(services, team, after=after)
        self.resource = ResourceRef("object_prefix", names.team_prefix(team))

    async def do(self, ctx: StepContext) -> Outcome:
        prefix = names.team_prefix(self.team)
        async with ctx.external("storage"):
            for folder in SHARED_FOLDERS:
                await self.services.objects.put_if_absent(f"{prefix}shared/{folder}/.keep", b"")
        return Done({"prefix": prefix}, external_id=prefix)


class SetState(TeamStep):
    """Write the team's state (``Active`` at the end of a create, ``Deleting`` at the start of a delete)."""

    def __init__(self, services: Services, team: str, state: str, name: str) -> None:
        super().__init__(services, team)
        self.state = state
        self.name = name

    async def do(self, ctx: StepContext) -> Outcome:
        await self.row(ctx)
        await ctx.store.teams.update(self.team, state=self.state)
        return Done({"state": self.state})


class Forget(TeamStep):
    """The last step of a delete: the team's row goes once its rooms are released."""

    name = "forget"

    async def do(self, ctx: StepContext) -> Outcome:
        await ctx.store.teams.delete(self.team)
        return Done()
