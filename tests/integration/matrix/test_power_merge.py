"""Power levels merged, never replaced, and rooms that keep people we did not invite; real Synapse."""

from __future__ import annotations

import secrets
from urllib.parse import quote

import aiohttp

from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.types import UserId
from tests.fixtures.synapse import SynapseEnv, unique


async def test_merge_sets_and_drops_only_the_entries_given(synapse: SynapseEnv, admin: MatrixAdmin) -> None:
    room = await admin.ensure_room(unique("hiclaw-team"), name="Team")
    alice, bob, carol = (UserId(f"@{unique(n)}:{synapse.server_name}") for n in ("alice", "bob", "carol"))
    assert await admin.merge_power_levels(room.room_id, {alice: 50, bob: 10})
    before = await admin.state(room.room_id, "m.room.power_levels")
    assert before is not None

    assert await admin.merge_power_levels(room.room_id, {bob: 100, carol: 0})
    after = await admin.state(room.room_id, "m.room.power_levels")
    assert after is not None
    assert after["users"] == {**before["users"], bob: 100, carol: 0}
    assert {k: v for k, v in after.items() if k != "users"} == {k: v for k, v in before.items() if k != "users"}

    assert not await admin.merge_power_levels(room.room_id, {bob: 100, carol: 0}), "nothing to write"
    assert await admin.merge_power_levels(room.room_id, {carol: None})
    users = (await admin.state(room.room_id, "m.room.power_levels") or {})["users"]
    assert carol not in users
    assert (users[alice], users[bob]) == (50, 100)
    assert not await admin.merge_power_levels(room.room_id, {carol: None}), "already gone"


async def test_keep_others_leaves_members_we_did_not_invite(synapse: SynapseEnv, admin: MatrixAdmin) -> None:
    guest = await admin.ensure_user(unique("guest"), secrets.token_urlsafe(12))
    localpart = unique("hiclaw-team")
    room = await admin.ensure_room(localpart, name="Team", invite=[guest.user_id])
    await admin.join(room.room_id, token=guest.access_token)

    await admin.ensure_room(localpart, name="Team", invite=[], keep_others=True)
    assert await admin.membership(room.room_id, guest.user_id) == "join"
    await admin.ensure_room(localpart, name="Team", invite=[])
    assert await admin.membership(room.room_id, guest.user_id) == "leave"


async def test_a_new_room_gets_its_topic_once(synapse: SynapseEnv, admin: MatrixAdmin) -> None:
    """The server enriches the topic createRoom set (``m.topic``); that is not a reason to write it again."""
    room = await admin.ensure_room(unique("hiclaw-team"), name="Team", topic="what the team is for")
    async with aiohttp.ClientSession() as session, session.get(
            f"{synapse.url}/_matrix/client/v3/rooms/{quote(room.room_id)}/messages",
            params={"dir": "f", "limit": "100"},
            headers={"Authorization": f"Bearer {synapse.admin_token}"}) as response:
        events = (await response.json())["chunk"]
    assert [e["content"].get("topic") for e in events if e["type"] == "m.room.topic"] == ["what the team is for"]
