"""The permission model, exhaustively: every command × every kind of actor × every kind of target.

The expected outcomes are written out below as a grid, independently of the rule table in the
code: a change of policy has to change both, on purpose.
"""

from __future__ import annotations

import pytest

from hiclaw_bot.chat.permissions import (
    TABLE,
    Actor,
    ActorKind,
    Permission,
    Quota,
    RoomScope,
    Target,
    decide,
)
from hiclaw_bot.types import RoomId, UserId
from tests.unit.chat.test_permission_walk import the_bots_registry

ROOM = RoomScope(RoomId("!dm:example.org"))
ACTORS = {
    ActorKind.ADMIN: Actor(UserId("@root:example.org"), ActorKind.ADMIN),
    ActorKind.TEAM_LEADER: Actor(UserId("@lead:example.org"), ActorKind.TEAM_LEADER, frozenset({"red"})),
    ActorKind.HUMAN_ADMIN: Actor(UserId("@ha:example.org"), ActorKind.HUMAN_ADMIN),
    ActorKind.HUMAN_TEAM: Actor(UserId("@ht:example.org"), ActorKind.HUMAN_TEAM, frozenset({"red", "green"})),
    ActorKind.HUMAN_VIEWER: Actor(UserId("@hv:example.org"), ActorKind.HUMAN_VIEWER, frozenset({"red"})),
    ActorKind.STRANGER: Actor(UserId("@who:example.org"), ActorKind.STRANGER),
}
TARGETS: list[Target | None] = [
    None,                                                                 # a list: no target
    Target("worker", "own", "red", exists=True, quota=Quota(5, 3)),       # in the actor's team
    Target("worker", "other", "blue", exists=True, quota=Quota(5, 3)),    # in another team
    Target("worker", "loner", None, exists=True),                         # in no team at all
    Target("worker", "new", "red", exists=False, quota=Quota(5, 3)),      # to be created, quota has room
    Target("worker", "newer", "red", exists=False, quota=Quota(5, 5)),    # to be created, quota full
    Target("worker", "free", "red", exists=True),                         # own team, no quota configured
]
# Y = allowed, N = refused, per target above (in order), per kind of actor.
GRID: dict[Permission, dict[ActorKind, str]] = {
    Permission.MEMBER: {
        ActorKind.ADMIN: "YYYYYYY", ActorKind.TEAM_LEADER: "YYYYYYY", ActorKind.HUMAN_ADMIN: "YYYYYYY",
        ActorKind.HUMAN_TEAM: "YYYYYYY", ActorKind.HUMAN_VIEWER: "YYYYYYY", ActorKind.STRANGER: "NNNNNNN",
    },
    Permission.READ: {
        ActorKind.ADMIN: "YYYYYYY", ActorKind.TEAM_LEADER: "YYNNYYY", ActorKind.HUMAN_ADMIN: "YYYYYYY",
        ActorKind.HUMAN_TEAM: "YYNNYYY", ActorKind.HUMAN_VIEWER: "YYNNYYY", ActorKind.STRANGER: "NNNNNNN",
    },
    Permission.OPERATE: {
        ActorKind.ADMIN: "YYYYYYY", ActorKind.TEAM_LEADER: "NYNNYYY", ActorKind.HUMAN_ADMIN: "YYYYYYY",
        ActorKind.HUMAN_TEAM: "NYNNYYY", ActorKind.HUMAN_VIEWER: "NNNNNNN", ActorKind.STRANGER: "NNNNNNN",
    },
    Permission.PROVISION: {
        ActorKind.ADMIN: "YYYYYYY", ActorKind.TEAM_LEADER: "NYNNYNN", ActorKind.HUMAN_ADMIN: "YYYYYYY",
        ActorKind.HUMAN_TEAM: "NNNNNNN", ActorKind.HUMAN_VIEWER: "NNNNNNN", ActorKind.STRANGER: "NNNNNNN",
    },
    Permission.MANAGE: {
        ActorKind.ADMIN: "YYYYYYY", ActorKind.TEAM_LEADER: "NNNNNNN", ActorKind.HUMAN_ADMIN: "NNNNNNN",
        ActorKind.HUMAN_TEAM: "NNNNNNN", ActorKind.HUMAN_VIEWER: "NNNNNNN", ActorKind.STRANGER: "NNNNNNN",
    },
}


def test_the_grid_and_the_table_cover_everything() -> None:
    assert set(GRID) == set(TABLE) == set(Permission)
    for permission in Permission:
        assert set(GRID[permission]) == set(TABLE[permission]) == set(ActorKind)


@pytest.mark.parametrize("kind", list(ActorKind), ids=lambda k: k.value)
@pytest.mark.parametrize("command", sorted(c.name for c in the_bots_registry()))
def test_every_command_for_every_actor(command: str, kind: ActorKind) -> None:
    found = the_bots_registry().get(command)
    assert found is not None
    permission = found.permission
    actor = ACTORS[kind]
    for target, expected in zip(TARGETS, GRID[permission][kind], strict=True):
        decision = decide(actor, ROOM, permission, target)
        where = f"!{command} by {kind.value} on {target}"
        assert decision.allowed is (expected == "Y"), where
        assert decision.rule.startswith(f"{permission.value}.{kind.value}:"), where
        if not decision.allowed:
            assert decision.reason, where


@pytest.mark.parametrize("kind", [k for k in ActorKind if k.scoped], ids=lambda k: k.value)
@pytest.mark.parametrize("permission", [p for p in Permission if p is not Permission.MEMBER], ids=lambda p: p.value)
def test_scoped_actors_act_only_from_their_teams_rooms(kind: ActorKind, permission: Permission) -> None:
    actor = ACTORS[kind]
    own = TARGETS[1]
    foreign = decide(actor, RoomScope(RoomId("!blue:example.org"), "blue"), permission, own)
    assert not foreign.allowed
    assert foreign.rule == "room:other_team"
    assert "team blue" in foreign.reason
    home = decide(actor, RoomScope(RoomId("!red:example.org"), "red"), permission, own)
    assert home == decide(actor, ROOM, permission, own)


@pytest.mark.parametrize("kind", [k for k in ActorKind if not k.scoped], ids=lambda k: k.value)
def test_the_room_rule_leaves_unscoped_actors_alone(kind: ActorKind) -> None:
    actor = ACTORS[kind]
    for permission in Permission:
        in_blue = decide(actor, RoomScope(RoomId("!blue:example.org"), "blue"), permission, TARGETS[1])
        assert in_blue == decide(actor, ROOM, permission, TARGETS[1])


def test_help_works_in_any_room_for_members() -> None:
    actor = ACTORS[ActorKind.TEAM_LEADER]
    assert decide(actor, RoomScope(RoomId("!x:example.org"), "blue"), Permission.MEMBER, None).allowed


def test_refusals_explain_themselves() -> None:
    leader = ACTORS[ActorKind.TEAM_LEADER]
    loner = decide(leader, ROOM, Permission.OPERATE, TARGETS[3])
    assert loner.reason == "worker loner is in no team; you may act only on your own team (red)"
    full = decide(leader, ROOM, Permission.PROVISION, TARGETS[5])
    assert "5 of its 5 workers" in full.reason
    stranger = decide(ACTORS[ActorKind.STRANGER], ROOM, Permission.MEMBER, None)
    assert stranger.rule == "member.stranger:deny"
    assert "not a member" in stranger.reason
    teamless = Actor(UserId("@lonely-lead:example.org"), ActorKind.TEAM_LEADER)
    assert "you are in no team" in decide(teamless, ROOM, Permission.OPERATE, TARGETS[3]).reason
