"""A team's whole life on real services: create, add, remove, delete keeping the workers, create
again adopting them, delete with the workers.

Every assertion about an external system asks that system: Synapse for rooms, aliases, members and
power levels; the object store directory for files; the backend for runtimes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.flows import names
from hiclaw_bot.flows import team as teams
from hiclaw_bot.flows import worker as workers
from hiclaw_bot.types import RoomAlias, RoomId, UserId
from tests.fixtures.synapse import unique
from tests.integration.flows.conftest import Stack

PARAMS = {"model": "qwen-max", "image": "hiclaw/worker-agent:1"}


async def run(stack: Stack, kind: str, subject: str, params: dict[str, Any]) -> None:
    sub = await stack.engine.submit(kind, subject, params)
    op = await stack.engine.wait(sub.op.op_id)
    assert op.state == "succeeded", (op.failed_step, op.error)


def alias(stack: Stack, localpart: str) -> RoomAlias:
    return RoomAlias(names.full_alias(localpart, stack.config.matrix.server_name))


def uid(stack: Stack, worker: str) -> UserId:
    return names.user_id(worker, stack.config.matrix.server_name)


async def power(stack: Stack, room_id: RoomId) -> dict[str, int]:
    content = await stack.services.matrix.state(room_id, "m.room.power_levels")
    assert content is not None
    return dict(content.get("users", {}))


def openclaw(stack: Stack, worker: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((stack.objects_dir / f"agents/{worker}/openclaw.json").read_bytes())
    return data


async def test_a_team_lives_and_leaves_only_what_it_keeps(stack: Stack) -> None:
    teams.register_team_flows(stack.engine, stack.services)
    team, leader, member, extra = unique("red"), unique("lead"), unique("ann"), unique("cal")
    matrix = stack.services.matrix
    owner = UserId(stack.owner_id)

    await asyncio.gather(
        run(stack, teams.CREATE, teams.subject(team),
            {"name": team, "leader": leader, "workers": [member], **PARAMS}),
        run(stack, workers.CREATE, workers.subject(extra), {"name": extra, **PARAMS}),
    )
    row = await stack.store.teams.get(team)
    assert row is not None
    assert (row.state, row.leader) == ("Active", leader)
    room_id = await matrix.resolve_alias(alias(stack, names.team_room_alias(team)))
    dm_id = await matrix.resolve_alias(alias(stack, names.team_leader_dm_alias(team)))
    assert (row.room_id, row.leader_dm_room_id) == (room_id, dm_id)
    assert {uid(stack, leader), uid(stack, member)} <= set(await matrix.joined_members(room_id))
    assert uid(stack, leader) in await matrix.joined_members(dm_id)
    levels = await power(stack, room_id)
    assert (levels[owner], levels[uid(stack, leader)], levels[uid(stack, member)]) == (100, 100, 0)
    assert (await power(stack, dm_id))[uid(stack, leader)] == 100
    member_row = await stack.store.workers.get(member)
    assert member_row is not None
    assert member_row.team == team
    assert member_row.room_id is not None
    assert (await power(stack, RoomId(member_row.room_id)))[uid(stack, leader)] == 100
    leader_row = await stack.store.workers.get(leader)
    assert leader_row is not None
    assert (leader_row.role, leader_row.team) == ("team_leader", team)
    groups = openclaw(stack, leader)["channels"]["matrix"]["groupAllowFrom"]
    assert uid(stack, member) in groups
    agents_md = (stack.objects_dir / f"agents/{leader}/AGENTS.md").read_text()
    assert member_row.room_id in agents_md
    assert uid(stack, leader) in openclaw(stack, member)["channels"]["matrix"]["dm"]["allowFrom"]
    for folder in ("tasks", "projects", "knowledge"):
        assert (stack.objects_dir / f"teams/{team}/shared/{folder}/.keep").exists()

    # Updating the leader on its own rewrites its files, and keeps its team in them.
    await run(stack, workers.UPDATE, workers.subject(leader),
              {**leader_row.spec, "model": "qwen-plus", "image": leader_row.image, "name": leader})
    assert member_row.room_id in (stack.objects_dir / f"agents/{leader}/AGENTS.md").read_text()
    assert "qwen-plus" in json.dumps(openclaw(stack, leader))

    # Someone else's power level survives every merge of ours.
    stranger = UserId(f"@someone-else:{stack.config.matrix.server_name}")
    await matrix.merge_power_levels(room_id, {stranger: 50})
    await run(stack, teams.ADD, teams.subject(team), {"name": team, "worker": extra})
    assert uid(stack, extra) in await matrix.joined_members(room_id)
    levels = await power(stack, room_id)
    assert (levels[stranger], levels[uid(stack, extra)]) == (50, 0)
    assert uid(stack, extra) in openclaw(stack, leader)["channels"]["matrix"]["groupAllowFrom"]
    assert (await stack.store.workers.get(extra)).team == team  # type: ignore[union-attr]

    await run(stack, teams.REMOVE, teams.subject(team), {"name": team, "worker": extra, "leader": leader})
    assert uid(stack, extra) not in await matrix.joined_members(room_id)
    assert uid(stack, extra) not in await power(stack, room_id)
    assert uid(stack, extra) not in openclaw(stack, leader)["channels"]["matrix"]["groupAllowFrom"]
    assert (await stack.store.workers.get(extra)).team is None  # type: ignore[union-attr]

    # Deleted without its workers: rooms renamed and unaliased, workers teamless, the leader a worker.
    await run(stack, teams.DELETE, teams.subject(team),
              {"name": team, "leader": leader, "workers": [member], "with_workers": False})
    for localpart in (names.team_room_alias(team), names.team_leader_dm_alias(team)):
        with pytest.raises(NotFoundError):
            await matrix.resolve_alias(alias(stack, localpart))
    assert (await matrix.state(room_id, "m.room.name") or {}).get("name") == f"[deleted] Team: {team}"
    assert uid(stack, member) not in await matrix.joined_members(room_id)
    assert await stack.store.teams.get(team) is None
    leader_row = await stack.store.workers.get(leader)
    assert leader_row is not None
    assert (leader_row.role, leader_row.team) == ("worker", None)
    assert uid(stack, leader) not in openclaw(stack, member)["channels"]["matrix"]["dm"]["allowFrom"]
    assert (stack.objects_dir / f"teams/{team}/shared/tasks/.keep").exists(), "the shared folder is kept"

    # The same name again, adopting the kept workers; then deleted with them: nothing is left.
    await run(stack, teams.CREATE, teams.subject(team),
              {"name": team, "leader": leader, "workers": [member], "adopt": [leader, member], **PARAMS})
    new_room = await matrix.resolve_alias(alias(stack, names.team_room_alias(team)))
    assert new_room != room_id
    assert (await stack.store.workers.get(member)).team == team  # type: ignore[union-attr]
    await run(stack, teams.DELETE, teams.subject(team),
              {"name": team, "leader": leader, "workers": [member], "with_workers": True})
    assert await stack.store.workers.get(leader) is None
    assert await stack.store.workers.get(member) is None
    running = {s.name for s in await stack.services.backend.list()}
    assert not {leader, member} & running
    assert extra in running


async def test_an_existing_worker_is_not_adopted_unless_asked_and_an_abort_undoes_the_rest(stack: Stack) -> None:
    teams.register_team_flows(stack.engine, stack.services)
    team, leader, member = unique("blue"), unique("lead"), unique("old")
    await stack.store.workers.insert(member, backend="process", state="Running", desired_state="Running",
                                     model="qwen-max", image="x", spec={})
    sub = await stack.engine.submit(teams.CREATE, teams.subject(team),
                                    {"name": team, "leader": leader, "workers": [member], **PARAMS})
    op = await stack.engine.wait(sub.op.op_id)
    assert (op.state, op.failed_step) == ("failed", f"member_{member}")
    assert "--adopt" in (op.error or "")
    assert (await stack.store.workers.get(member)).team is None  # type: ignore[union-attr]

    await stack.engine.abort(op.op_id)
    op = await stack.engine.wait(op.op_id)
    assert op.state == "compensated", op.error
    assert await stack.store.workers.get(leader) is None, "the leader made for the team is deleted"
    assert await stack.store.workers.get(member) is not None, "the worker it did not adopt is left alone"
    assert await stack.store.teams.get(team) is None
    assert await stack.services.backend.list() == []
    for localpart in (names.team_room_alias(team), names.team_leader_dm_alias(team)):
        with pytest.raises(NotFoundError):
            await stack.services.matrix.resolve_alias(alias(stack, localpart))


async def test_deleting_a_member_takes_it_out_of_its_team(stack: Stack) -> None:
    teams.register_team_flows(stack.engine, stack.services)
    team, leader, member, other = unique("red"), unique("lead"), unique("ann"), unique("bea")
    matrix = stack.services.matrix
    await run(stack, teams.CREATE, teams.subject(team),
              {"name": team, "leader": leader, "workers": [member, other], **PARAMS})
    row = await stack.store.teams.get(team)
    assert row is not None
    assert row.room_id is not None
    member_row = await stack.store.workers.get(member)
    assert member_row is not None
    assert member_row.room_id is not None
    assert member_row.room_id in (stack.objects_dir / f"agents/{leader}/AGENTS.md").read_text()

    await run(stack, workers.DELETE, workers.subject(member),
              {**member_row.spec, "model": member_row.model, "image": member_row.image, "name": member})
    agents_md = (stack.objects_dir / f"agents/{leader}/AGENTS.md").read_text()
    assert member_row.room_id not in agents_md, "the leader no longer lists the deleted member"
    assert f"| {member} |" not in agents_md
    assert f"| {other} |" in agents_md
    assert uid(stack, member) not in openclaw(stack, leader)["channels"]["matrix"]["groupAllowFrom"]
    assert uid(stack, other) in openclaw(stack, leader)["channels"]["matrix"]["groupAllowFrom"]
    team_room = RoomId(row.room_id)
    assert await matrix.membership(team_room, uid(stack, member)) == "leave", "its locked account left the room"
    assert uid(stack, member) not in await power(stack, team_room)
    assert [w.name for w in await stack.store.workers.all(team=team)] == sorted([leader, other])
