"""From ids to the facts permissions decide on: who a sender is, whose room this is, what a target is.

Kept apart from :mod:`hiclaw_bot.chat.permissions` so the rules stay a pure function of plain values
(tested exhaustively without a database) while this module does the reading: the config's admin
list, the workers table (a Team Leader is a worker whose role is ``team_leader``; its Matrix user is
``@<worker>:<server>`` by the deterministic naming of ARCHITECTURE §3) and the humans table.
"""

from __future__ import annotations

from hiclaw_bot.chat.arguments import Args
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.permissions import Actor, ActorKind, Quota, RoomScope, Target
from hiclaw_bot.config import Config
from hiclaw_bot.flows.quota import team_usage
from hiclaw_bot.types import Role, RoomId, UserId
from storage import Store

_HUMAN_KINDS = {"admin": ActorKind.HUMAN_ADMIN, "team": ActorKind.HUMAN_TEAM, "viewer": ActorKind.HUMAN_VIEWER}
_GONE_STATES = frozenset({"deleting", "deleted"})


class Resolver:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    async def actor(self, user_id: UserId) -> Actor:
        if user_id in self.config.matrix.admins:
            return Actor(user_id, ActorKind.ADMIN)
        localpart, _, server = user_id[1:].partition(":")
        if server == self.config.matrix.server_name:
            worker = await self.store.workers.get(localpart)
            if worker is not None and worker.role == Role.TEAM_LEADER and worker.user_id in (None, user_id) \
                    and worker.state.casefold() not in _GONE_STATES:
                return Actor(user_id, ActorKind.TEAM_LEADER, frozenset({worker.team} if worker.team else ()))
        human = await self.store.humans.by_user_id(user_id)
        if human is not None and human.state.casefold() not in _GONE_STATES and human.level in _HUMAN_KINDS:
            return Actor(user_id, _HUMAN_KINDS[human.level], frozenset(human.teams))
        return Actor(user_id, ActorKind.STRANGER)

    async def room(self, room_id: RoomId) -> RoomScope:
        """The team a room belongs to: a team room, a leader DM, or a team member's worker room."""
        for team in await self.store.teams.all():
            if room_id in (team.room_id, team.leader_dm_room_id):
                return RoomScope(room_id, team.name)
        for worker in await self.store.workers.all():
            if worker.room_id == room_id:
                return RoomScope(room_id, worker.team)
        return RoomScope(room_id)

    async def known_room(self, room_id: RoomId) -> bool:
        """Whether the room is one of ours (a worker's or a team's), so an invite to it is expected."""
        teams = await self.store.teams.all()
        if any(room_id in (t.room_id, t.leader_dm_room_id) for t in teams):
            return True
        return any(w.room_id == room_id for w in await self.store.workers.all())

    async def target(self, spec: TargetSpec, args: Args, *, provisioning: bool) -> Target | None:
        value = args.values.get(spec.arg)
        if value is None:
            return None
        name = str(value)
        if spec.kind == "op":
            op = await self.store.ops.get(int(value))
            if op is None:
                return Target("op", name, None, exists=False)
            # Its retry or abort may need what a create needs (the dispatcher decides): the quota too.
            found = Target("op", name, await self.subject_team(op.subject))
            provisioning = True
        else:
            team_hint = args.values.get(spec.team_arg) if spec.team_arg else None
            found = await self._named(spec.kind, name, str(team_hint) if team_hint else None)
        if provisioning and found.team is not None:
            usage = await team_usage(self.config, self.store, found.team)
            if usage is not None:
                found = Target(found.kind, found.name, found.team, found.exists, Quota(*usage))
        return found

    async def subject_team(self, subject: str) -> str | None:
        """The team of an operation's subject (``worker:alice`` → alice's team, ``team:red`` → red)."""
        kind, _, name = subject.partition(":")
        if kind not in ("worker", "team"):
            return None
        return (await self._named(kind, name, None)).team

    async def _named(self, kind: str, name: str, team_hint: str | None) -> Target:
        if kind == "worker":
            worker = await self.store.workers.get(name)
            if worker is None:
                return Target("worker", name, team_hint, exists=False)
            return Target("worker", name, worker.team)
        if kind == "team":
            team = await self.store.teams.get(name)
            return Target("team", name, name, exists=team is not None)
        human = await self.store.humans.get(name)
        return Target("human", name, None, exists=human is not None)
