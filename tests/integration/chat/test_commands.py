"""Commands against a real Synapse: answers, refusals, invites, threads and mentions."""

from __future__ import annotations

import asyncio

import nio

from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.types import RoomId
from storage import Store
from tests.integration.chat.conftest import ChatSetup, answers_to, ask, running_bot, talking


async def test_help_unknown_and_usage(setup: ChatSetup) -> None:
    async with running_bot(setup.config(), setup.db_path) as running, talking(setup, setup.admin) as talk:
        assert running.bot.ready
        help_id, [help_answer] = await ask(talk, "!help")
        assert "!op retry" in help_answer.text
        assert help_answer.html is not None
        assert "<table>" in help_answer.html

        _, [unknown] = await ask(talk, "!op lst")
        assert "I don't know the command `!op lst`. Did you mean `!op list`" in unknown.text

        _, [usage] = await ask(talk, "!op show first")
        assert "Usage: `!op show N`" in usage.text

        assert talk.room_id is not None
        [on_server] = await answers_to(setup, setup.admin, talk.room_id, help_id)
        assert on_server.type == "m.room.message"
        assert on_server.content["msgtype"] == "m.notice"
        assert on_server.content["m.relates_to"] == {"m.in_reply_to": {"event_id": help_id}}
        decisions = [entry.decision for entry in await running.store.audit.recent()]
        assert decisions.count("usage") == 1
        assert decisions.count("unknown") == 1
        assert "joined" in decisions  # the invite of the DM


async def test_strangers_are_refused_and_their_invites_declined(setup: ChatSetup) -> None:
    async with running_bot(setup.config(), setup.db_path), talking(setup, setup.admin) as talk:
        assert talk.room_id is not None
        room = RoomId(talk.room_id)
        async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                               access_token=setup.admin.token) as boss:
            await boss.invite(room, setup.stranger.user_id)
        async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                               access_token=setup.stranger.token) as stranger:
            await stranger.join(room)
            async with talking(setup, setup.stranger, talk.room_id) as intruder:
                _, [refusal] = await ask(intruder, "!op list")
            assert refusal.text.startswith("Sorry, you may not run `!op list`")
            assert "(rule read.stranger:deny)" in refusal.text

            own = await intruder_room(setup)
            for _ in range(50):
                if await stranger.membership(own, setup.bot.user_id) == "leave":
                    break
                await asyncio.sleep(0.1)
            assert await stranger.membership(own, setup.bot.user_id) == "leave"


async def intruder_room(setup: ChatSetup) -> RoomId:
    """The stranger opens a room and invites the bot."""
    client = nio.AsyncClient(setup.synapse.url, setup.stranger.user_id)
    client.restore_login(setup.stranger.user_id, "STRANGER", setup.stranger.token)
    try:
        created = await client.room_create(invite=[setup.bot.user_id], is_direct=True)
        assert isinstance(created, nio.RoomCreateResponse)
        return RoomId(created.room_id)
    finally:
        await client.close()


async def test_threads_and_mentions(setup: ChatSetup) -> None:
    async with running_bot(setup.config(), setup.db_path), talking(setup, setup.admin) as talk:
        assert talk.room_id is not None
        root = await talk.send("a question for the room")
        in_thread = await talk.client.room_send(talk.room_id, "m.room.message", {
            "msgtype": "m.text", "body": "!help op show",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                             "m.in_reply_to": {"event_id": root}},
        })
        assert isinstance(in_thread, nio.RoomSendResponse)
        [answer] = [m async for m in talk.replies(in_thread.event_id, within=20)]
        assert "!op show N" in answer.text
        [event] = await answers_to(setup, setup.admin, talk.room_id, in_thread.event_id)
        assert event.content["m.relates_to"]["rel_type"] == "m.thread"
        assert event.content["m.relates_to"]["event_id"] == root

        pill = await talk.client.room_send(talk.room_id, "m.room.message", {
            "msgtype": "m.text", "body": "the bot: !op list", "format": "org.matrix.custom.html",
            "formatted_body": f'<a href="https://matrix.to/#/{setup.bot.user_id}">the bot</a>: !op list',
        })
        assert isinstance(pill, nio.RoomSendResponse)
        [listing] = [m async for m in talk.replies(pill.event_id, within=20)]
        assert listing.text == "No operations yet."

        _, [plain] = await ask(talk, f"{setup.bot.user_id}: !op list")
        assert plain.text == "No operations yet."


async def test_notices_and_chatter_are_never_answered(setup: ChatSetup) -> None:
    async with running_bot(setup.config(), setup.db_path) as running, talking(setup, setup.admin) as talk:
        assert talk.room_id is not None
        notice = await talk.client.room_send(talk.room_id, "m.room.message", {"msgtype": "m.notice", "body": "!help"})
        assert isinstance(notice, nio.RoomSendResponse)
        await talk.send("just chatting")
        marker, [_] = await ask(talk, "!help")  # answered after the two before it were skipped
        assert talk.room_id is not None
        assert await answers_to(setup, setup.admin, talk.room_id, notice.event_id) == []
        assert not await running.store.events.seen(notice.event_id)
        assert await running.store.events.seen(marker)


async def test_the_bot_reuses_its_token_and_device(setup: ChatSetup) -> None:
    config = setup.config()
    async with running_bot(config, setup.db_path):
        pass
    store = await Store.open(setup.db_path)
    try:
        first = await store.secrets.get(f"matrix:{setup.bot.user_id}", "access_token")
    finally:
        await store.close()
    async with running_bot(config, setup.db_path) as running:
        again = await running.store.secrets.get(f"matrix:{setup.bot.user_id}", "access_token")
    assert first is not None
    assert again == first
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name) as client:
        devices = await client.list_devices(first.reveal())
    assert "HICLAWBOT" in devices
    assert first.reveal() not in repr(first)


async def test_history_from_before_the_bot_joined_is_not_run(setup: ChatSetup) -> None:
    client = nio.AsyncClient(setup.synapse.url, setup.admin.user_id)
    client.restore_login(setup.admin.user_id, "HISTORY", setup.admin.token)
    try:
        async with running_bot(setup.config(), setup.db_path) as running:
            created = await client.room_create(name="history")
            assert isinstance(created, nio.RoomCreateResponse)
            early = await client.room_send(created.room_id, "m.room.message", {"msgtype": "m.text", "body": "!help"})
            assert isinstance(early, nio.RoomSendResponse)
            await client.room_invite(created.room_id, setup.bot.user_id)
            async with talking(setup, setup.admin, created.room_id) as talk:
                for _ in range(100):
                    members = await client.joined_members(created.room_id)
                    if any(m.user_id == setup.bot.user_id for m in members.members):
                        break
                    await asyncio.sleep(0.05)
                _, [answer] = await ask(talk, "!op list")
                assert answer.text == "No operations yet."
            assert await answers_to(setup, setup.admin, created.room_id, early.event_id) == []
            assert not await running.store.events.seen(early.event_id)
    finally:
        await client.close()
