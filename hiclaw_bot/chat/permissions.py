"""Who may do what: one table and one function, so every decision can be read, tested and audited.

Each command has a :class:`Permission` (what kind of act it is, declared once, where the command is
registered: :meth:`hiclaw_bot.chat.registry.Registry.command`); each sender resolves to an
:class:`Actor` of one :class:`ActorKind`; :data:`TABLE` gives the rule for every pair, and
:func:`decide` applies it to the command's target. A refusal names the rule that refused, so the
sender (and the audit log) can tell *why*, not just *no*.

The rules follow upstream's authorizer (``atc/auth/authorizer.go``) with its holes closed:

* admins (the config list) may do everything;
* a Team Leader acts only on workers of its own team, and a worker with **no** team is in no
  leader's team (upstream let an empty team pass); it may create or delete workers only when its
  team has a worker quota, and create only while the quota has room;
* humans act by level: ``admin`` everywhere, ``team`` on their teams' workers, ``viewer`` reads only;
* everybody else (plain workers included) is a stranger and gets a polite refusal.

Team-scoped actors also may not act from a room that belongs to another team: a leader's command
typed in a foreign team room is refused even when its target is its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from hiclaw_bot.types import Role, RoomId, UserId


class Permission(enum.Enum):
    """What kind of act a command is; the rows of :data:`TABLE`."""

    MEMBER = "member"
    """Harmless to anyone the bot knows: help, confirming one's own pending command."""
    READ = "read"
    """Look at workers, teams, operations."""
    OPERATE = "operate"
    """Change a worker's running state or settings: wake, sleep, update, exec, logs, retry, abort."""
    PROVISION = "provision"
    """Create or delete workers."""
    MANAGE = "manage"
    """Teams, humans, garbage collection: the shape of the whole installation."""


class ActorKind(enum.Enum):
    ADMIN = "admin"
    TEAM_LEADER = Role.TEAM_LEADER.value
    HUMAN_ADMIN = "human_admin"
    HUMAN_TEAM = "human_team"
    HUMAN_VIEWER = "human_viewer"
    STRANGER = "stranger"

    @property
    def scoped(self) -> bool:
        """Limited to some teams (and to those teams' rooms)."""
        return self in (ActorKind.TEAM_LEADER, ActorKind.HUMAN_TEAM, ActorKind.HUMAN_VIEWER)


@dataclass(frozen=True)
class Actor:
    user_id: UserId
    kind: ActorKind
    teams: frozenset[str] = frozenset()
    """The teams a scoped actor belongs to (a leader's one team, a human's list)."""

    def describe(self) -> str:
        return {
            ActorKind.ADMIN: "an admin",
            ActorKind.TEAM_LEADER: "a team leader",
            ActorKind.HUMAN_ADMIN: "an admin-level member",
            ActorKind.HUMAN_TEAM: "a team-level member",
            ActorKind.HUMAN_VIEWER: "a viewer",
            ActorKind.STRANGER: "not a member of this installation",
        }[self.kind]


@dataclass(frozen=True)
class Quota:
    """A team's worker quota: how many it may have, how many it has."""

    limit: int
    used: int


@dataclass(frozen=True)
class Target:
    """What a command acts on, as far as permissions care."""

    kind: Literal["worker", "team", "human", "op"]
    name: str
    team: str | None
    """The team the target belongs to (for a team: itself); None for "no team"."""
    exists: bool = True
    quota: Quota | None = None
    """The target team's worker quota, when one is configured (only resolved for provisioning)."""


@dataclass(frozen=True)
class RoomScope:
    room_id: RoomId
    team: str | None = None
    """The team whose room (team room, leader DM, worker room) this is, if any."""


class Rule(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    OWN_TEAM = "own_team"
    """Only targets in one of the actor's teams."""
    OWN_TEAM_OR_LIST = "own_team_or_list"
    """Like OWN_TEAM, but a command without a target (a list) is allowed and shows only what the
    actor may see."""
    OWN_TEAM_WITHIN_QUOTA = "own_team_within_quota"
    """Own team, and the team has a worker quota; creating also needs a free slot in it."""


_A, _D = Rule.ALLOW, Rule.DENY
TABLE: dict[Permission, dict[ActorKind, Rule]] = {
    Permission.MEMBER: {
        ActorKind.ADMIN: _A, ActorKind.TEAM_LEADER: _A, ActorKind.HUMAN_ADMIN: _A,
        ActorKind.HUMAN_TEAM: _A, ActorKind.HUMAN_VIEWER: _A, ActorKind.STRANGER: _D,
    },
    Permission.READ: {
        ActorKind.ADMIN: _A, ActorKind.TEAM_LEADER: Rule.OWN_TEAM_OR_LIST, ActorKind.HUMAN_ADMIN: _A,
        ActorKind.HUMAN_TEAM: Rule.OWN_TEAM_OR_LIST, ActorKind.HUMAN_VIEWER: Rule.OWN_TEAM_OR_LIST,
        ActorKind.STRANGER: _D,
    },
    Permission.OPERATE: {
        ActorKind.ADMIN: _A, ActorKind.TEAM_LEADER: Rule.OWN_TEAM, ActorKind.HUMAN_ADMIN: _A,
        ActorKind.HUMAN_TEAM: Rule.OWN_TEAM, ActorKind.HUMAN_VIEWER: _D, ActorKind.STRANGER: _D,
    },
    Permission.PROVISION: {
        ActorKind.ADMIN: _A, ActorKind.TEAM_LEADER: Rule.OWN_TEAM_WITHIN_QUOTA, ActorKind.HUMAN_ADMIN: _A,
        ActorKind.HUMAN_TEAM: _D, ActorKind.HUMAN_VIEWER: _D, ActorKind.STRANGER: _D,
    },
    Permission.MANAGE: {
        ActorKind.ADMIN: _A, ActorKind.TEAM_LEADER: _D, ActorKind.HUMAN_ADMIN: _D,
        ActorKind.HUMAN_TEAM: _D, ActorKind.HUMAN_VIEWER: _D, ActorKind.STRANGER: _D,
    },
}

_ACTS = {
    Permission.MEMBER: "use the bot",
    Permission.READ: "look at this",
    Permission.OPERATE: "operate workers",
    Permission.PROVISION: "create or delete workers",
    Permission.MANAGE: "manage teams, humans and clean-up",
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    """The rule applied, ``<permission>.<actor kind>:<rule>`` (or ``room:other_team``)."""
    reason: str = field(default="")
    """Why not, in words for the sender (empty when allowed)."""


def decide(actor: Actor, room: RoomScope, permission: Permission, target: Target | None) -> Decision:
    """Allow, or refuse naming the rule: the only place the bot decides who may do what."""
    if actor.kind.scoped and permission is not Permission.MEMBER and room.team is not None \
            and room.team not in actor.teams:
        return Decision(False, "room:other_team",
                        f"this room belongs to team {room.team}, and you act only in your own teams' rooms")
    rule = TABLE[permission][actor.kind]
    name = f"{permission.value}.{actor.kind.value}:{rule.value}"
    if rule is Rule.ALLOW:
        return Decision(True, name)
    if rule is Rule.DENY:
        return Decision(False, name, f"you are {actor.describe()}, and may not {_ACTS[permission]}")
    if target is None:
        if rule is Rule.OWN_TEAM_OR_LIST:
            return Decision(True, name)
        return Decision(False, name, "this command needs a target in your own team")
    if target.team is None or target.team not in actor.teams:
        where = "is in no team" if target.team is None else f"is in team {target.team}"
        return Decision(False, name, f"{target.kind} {target.name} {where}; you may act only on your own "
                                     f"team ({_teams(actor)})")
    if rule is Rule.OWN_TEAM_WITHIN_QUOTA:
        if target.quota is None:
            return Decision(False, name, f"team {target.team} has no worker quota, so only admins may create "
                                         f"or delete its workers")
        if not target.exists and target.quota.used >= target.quota.limit:
            return Decision(False, name, f"team {target.team} has {target.quota.used} of its "
                                         f"{target.quota.limit} workers already")
    return Decision(True, name)


def _teams(actor: Actor) -> str:
    return ", ".join(sorted(actor.teams)) if actor.teams else "you are in no team"
