"""From ids to actors, rooms and targets, read from the store and the config."""

from __future__ import annotations

import pytest

from hiclaw_bot.chat.arguments import Args
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.permissions import ActorKind, Quota, RoomScope, Target
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.config import Config
from hiclaw_bot.types import RoomId, UserId
from storage import Store
from tests.unit.chat.conftest import ADMIN


@pytest.fixture
async def resolver(config: Config, store: Store) -> Resolver:
    workers = store.workers
    await workers.insert("lead", backend="process", state="Running", desired_state="Running", team="red",
                         role="team_leader", room_id="!lead-room:example.org")
    await workers.insert("drifter", backend="process", state="Running", desired_state="Running",
                         role="team_leader")
    await workers.insert("gone", backend="process", state="Deleted", desired_state="Deleted", team="red",
                         role="team_leader")
    await workers.insert("alice", backend="process", state="Running", desired_state="Running", team="red",
                         room_id="!alice-room:example.org")
    await workers.insert("bob", backend="process", state="Running", desired_state="Running")
    await store.teams.upsert("red", leader="lead", state="Active", room_id="!red-room:example.org",
                             leader_dm_room_id="!red-dm:example.org")
    await store.teams.upsert("blue", leader="x", state="Active", max_workers=1)
    await store.humans.upsert("hanna", user_id="@hanna:example.org", level="team", state="active",
                              teams='["red"]')
    await store.humans.upsert("vera", user_id="@vera:other.org", level="viewer", state="active")
    await store.humans.upsert("ada", user_id="@ada:example.org", level="admin", state="active")
    await store.humans.upsert("ex", user_id="@ex:example.org", level="admin", state="deleted")
    await store.humans.upsert("odd", user_id="@odd:example.org", level="wizard", state="active")
    return Resolver(config, store)


@pytest.mark.parametrize(("user_id", "kind", "teams"), [
    (ADMIN, ActorKind.ADMIN, set()),
    ("@lead:example.org", ActorKind.TEAM_LEADER, {"red"}),
    ("@drifter:example.org", ActorKind.TEAM_LEADER, set()),
    ("@lead:elsewhere.org", ActorKind.STRANGER, set()),
    ("@gone:example.org", ActorKind.STRANGER, set()),
    ("@alice:example.org", ActorKind.STRANGER, set()),  # a plain worker
    ("@hanna:example.org", ActorKind.HUMAN_TEAM, {"red"}),
    ("@vera:other.org", ActorKind.HUMAN_VIEWER, set()),
    ("@ada:example.org", ActorKind.HUMAN_ADMIN, set()),
    ("@ex:example.org", ActorKind.STRANGER, set()),
    ("@odd:example.org", ActorKind.STRANGER, set()),
    ("@nobody:example.org", ActorKind.STRANGER, set()),
])
async def test_actors(resolver: Resolver, user_id: str, kind: ActorKind, teams: set[str]) -> None:
    actor = await resolver.actor(UserId(user_id))
    assert actor.kind is kind
    assert actor.teams == teams


@pytest.mark.parametrize(("room", "team"), [
    ("!red-room:example.org", "red"), ("!red-dm:example.org", "red"), ("!alice-room:example.org", "red"),
    ("!lead-room:example.org", "red"), ("!elsewhere:example.org", None),
])
async def test_rooms(resolver: Resolver, room: str, team: str | None) -> None:
    assert await resolver.room(RoomId(room)) == RoomScope(RoomId(room), team)
    assert await resolver.known_room(RoomId(room)) is (team is not None)


async def test_targets(resolver: Resolver, store: Store) -> None:
    worker = TargetSpec("worker", "name", team_arg="team")
    alice = await resolver.target(worker, Args({"name": "alice"}), provisioning=False)
    assert alice == Target("worker", "alice", "red")
    bob = await resolver.target(worker, Args({"name": "bob"}), provisioning=False)
    assert bob == Target("worker", "bob", None)
    new = await resolver.target(worker, Args({"name": "carl", "team": "red"}), provisioning=True)
    assert new == Target("worker", "carl", "red", exists=False, quota=Quota(3, 3))  # config quota, 3 in red
    blue = await resolver.target(worker, Args({"name": "dora", "team": "blue"}), provisioning=True)
    assert blue is not None
    assert blue.quota == Quota(1, 0)  # the team row's own quota
    assert await resolver.target(worker, Args({"name": None}), provisioning=False) is None
    op_id = await store.ops.insert(kind="worker.wake", subject="worker:alice", params={}, actor=None,
                                   room_id=None, source_event_id=None)
    op = TargetSpec("op", "id")
    assert await resolver.target(op, Args({"id": op_id}), provisioning=False) == \
        Target("op", str(op_id), "red", quota=Quota(3, 3))
    missing = await resolver.target(op, Args({"id": 999}), provisioning=False)
    assert missing == Target("op", "999", None, exists=False)
    assert await resolver.subject_team("team:blue") == "blue"
    assert await resolver.subject_team("human:ada") is None
