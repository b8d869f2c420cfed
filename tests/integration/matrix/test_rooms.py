"""Rooms against a real Synapse: create-or-adopt by alias, reconcile, and each call twice."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.clients.matrix_admin import ROOM_META, MatrixAdmin, MatrixUser
from hiclaw_bot.types import RoomId
from tests.fixtures.synapse import SynapseEnv, unique


async def _raw(synapse: SynapseEnv, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A request as the admin that bypasses our client: the world changing behind its back."""
    async with aiohttp.ClientSession() as session, session.request(
            method, synapse.url + "/_matrix/client/v3" + path, json=body,
            headers={"Authorization": f"Bearer {synapse.admin_token}"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _state_event_ids(synapse: SynapseEnv, room_id: RoomId) -> dict[tuple[str, str], str]:
    events = await _raw(synapse, "GET", f"/rooms/{quote(room_id)}/state")
    return {(e["type"], e["state_key"]): e["event_id"] for e in events}


async def _user(admin: MatrixAdmin, prefix: str = "worker") -> MatrixUser:
    return await admin.ensure_user(unique(prefix), secrets.token_urlsafe(12))


async def test_ensure_room_twice_creates_once_and_writes_nothing_the_second_time(
        synapse: SynapseEnv, admin: MatrixAdmin, fresh_admin: MatrixAdmin) -> None:
    worker = await _user(admin)
    alias_localpart = unique("hiclaw-worker")
    spec: dict[str, Any] = {"name": "Worker room", "topic": "talk to the worker", "invite": [worker.user_id],
                            "power_users": {worker.user_id: 10}, "meta": {"kind": "worker", "worker": "w"}}

    first = await admin.ensure_room(alias_localpart, **spec)
    state_after_first = await _state_event_ids(synapse, first.room_id)
    second = await fresh_admin.ensure_room(alias_localpart, **spec)

    assert first.created
    assert not second.created
    assert first.room_id == second.room_id == await admin.resolve_alias(first.alias)
    assert first.alias == f"#{alias_localpart}:{synapse.server_name}"
    assert await _state_event_ids(synapse, first.room_id) == state_after_first
    assert await admin.state(first.room_id, ROOM_META) == spec["meta"]
    assert await admin.membership(first.room_id, worker.user_id) == "invite"
    power = await admin.state(first.room_id, "m.room.power_levels")
    assert power is not None
    assert power["users"][worker.user_id] == 10


async def test_room_created_behind_our_back_is_adopted_and_reconciled(
        synapse: SynapseEnv, admin: MatrixAdmin) -> None:
    """The reply of createRoom was lost: the room exists, its alias too, in a state we did not ask for."""
    wanted, extra, bystander = await _user(admin), await _user(admin), await _user(admin)
    alias_localpart = unique("hiclaw-worker")
    created = await _raw(synapse, "POST", "/createRoom", {
        "room_alias_name": alias_localpart, "name": "half made", "preset": "private_chat",
        "invite": [extra.user_id]})
    room_id = RoomId(created["room_id"])
    await admin.join(room_id, token=extra.access_token)
    power = await _raw(synapse, "GET", f"/rooms/{quote(room_id)}/state/m.room.power_levels/")
    power["users"][bystander.user_id] = 42  # an unrelated entry the merge must keep
    await _raw(synapse, "PUT", f"/rooms/{quote(room_id)}/state/m.room.power_levels/", power)
    rooms_before = await admin.joined_rooms()

    ensured = await admin.ensure_room(alias_localpart, name="Worker room", invite=[wanted.user_id],
                                      power_users={wanted.user_id: 20}, meta={"kind": "worker"})

    assert not ensured.created
    assert ensured.room_id == room_id == await admin.resolve_alias(admin.room_alias(alias_localpart))
    assert await admin.joined_rooms() == rooms_before  # no second room
    assert await admin.membership(room_id, wanted.user_id) == "invite"
    assert await admin.membership(room_id, extra.user_id) == "leave"  # kicked: not in the desired set
    assert await admin.membership(room_id, synapse.admin_user_id) == "join"
    users = (await admin.state(room_id, "m.room.power_levels") or {})["users"]
    assert users[wanted.user_id] == 20
    assert users[bystander.user_id] == 42
    assert await admin.state(room_id, "m.room.name") == {"name": "Worker room"}
    assert await admin.state(room_id, ROOM_META) == {"kind": "worker"}


async def test_reconcile_follows_the_desired_members_and_spares_us(synapse: SynapseEnv, admin: MatrixAdmin) -> None:
    alice, bob = await _user(admin), await _user(admin)
    alias_localpart = unique("hiclaw-team")
    room = await admin.ensure_room(alias_localpart, name="Team", invite=[alice.user_id, bob.user_id])
    await admin.join(room.room_id, token=alice.access_token)

    # Our own id in the desired powers must not break a v12 room, where the creator is not listed.
    await admin.ensure_room(alias_localpart, name="Team", invite=[bob.user_id],
                            power_users={synapse.admin_user_id: 100, bob.user_id: 50})

    assert await admin.membership(room.room_id, alice.user_id) == "leave"
    assert await admin.membership(room.room_id, bob.user_id) == "invite"
    assert set(await admin.joined_members(room.room_id)) == {synapse.admin_user_id}
    users = (await admin.state(room.room_id, "m.room.power_levels") or {})["users"]
    assert users[bob.user_id] == 50
    assert users.get(alice.user_id) is None


async def test_membership_calls_twice(admin: MatrixAdmin) -> None:
    worker = await _user(admin)
    room = await admin.ensure_room(unique("hiclaw-worker"), name="Worker room")

    for _ in range(2):
        await admin.invite(room.room_id, worker.user_id)
    assert await admin.membership(room.room_id, worker.user_id) == "invite"
    for _ in range(2):
        assert await admin.join(room.room_id, token=worker.access_token) == room.room_id
    assert worker.user_id in await admin.joined_members(room.room_id)
    for _ in range(2):
        await admin.leave(room.room_id, token=worker.access_token)
    assert await admin.membership(room.room_id, worker.user_id) == "leave"

    await admin.invite(room.room_id, worker.user_id)
    await admin.join(room.room_id, token=worker.access_token)
    for _ in range(2):
        await admin.kick(room.room_id, worker.user_id, reason="removed")
    assert await admin.membership(room.room_id, worker.user_id) == "leave"
    assert worker.user_id not in await admin.joined_members(room.room_id)


async def test_alias_delete_twice_keeps_the_room(admin: MatrixAdmin) -> None:
    alias_localpart = unique("hiclaw-worker")
    room = await admin.ensure_room(alias_localpart, name="Worker room")

    for _ in range(2):
        await admin.delete_alias(room.alias)

    with pytest.raises(NotFoundError):
        await admin.resolve_alias(room.alias)
    assert room.room_id in await admin.joined_rooms()
    recreated = await admin.ensure_room(alias_localpart, name="Worker room")
    assert recreated.created
    assert recreated.room_id != room.room_id


async def test_rename_twice_sends_one_event(synapse: SynapseEnv, admin: MatrixAdmin) -> None:
    room = await admin.ensure_room(unique("hiclaw-team"), name="Team")

    await admin.rename_room(room.room_id, "Team [deleted]")
    after_first = await _state_event_ids(synapse, room.room_id)
    await admin.rename_room(room.room_id, "Team [deleted]")

    assert await _state_event_ids(synapse, room.room_id) == after_first
    assert await admin.state(room.room_id, "m.room.name") == {"name": "Team [deleted]"}


async def test_missing_state_and_memberships_read_as_none(admin: MatrixAdmin) -> None:
    room = await admin.ensure_room(unique("hiclaw-worker"), name="Worker room")

    assert await admin.state(room.room_id, "m.room.topic") is None
    assert await admin.membership(room.room_id, admin.user_id(unique("nobody"))) is None


async def test_a_new_room_gets_its_power_levels_in_the_create_call(synapse: SynapseEnv, admin: MatrixAdmin) -> None:
    """One power-levels event, authored by createRoom: no follow-up PUT, and we keep our own power
    (the override replaces the default ``users``; in v12 rooms the creator must stay out of it)."""
    worker = await _user(admin)
    room = await admin.ensure_room(unique("hiclaw-worker"), name="Worker room", invite=[worker.user_id],
                                   power_users={synapse.admin_user_id: 100, worker.user_id: 10})
    messages = await _raw(synapse, "GET", f"/rooms/{quote(room.room_id)}/messages?dir=f&limit=100")
    power_events = [e for e in messages["chunk"] if e["type"] == "m.room.power_levels"]
    assert len(power_events) == 1
    users = power_events[0]["content"]["users"]
    assert users[worker.user_id] == 10
    version = await admin.default_room_version()
    assert (synapse.admin_user_id in users) == (not version.isdigit() or int(version) < 12)
    await admin.rename_room(room.room_id, "still ours")  # we kept the power to change state
