"""Progress and confirmations against a real Synapse, read back through the relations API."""

from __future__ import annotations

import itertools

from hiclaw_bot.chat.say import BotMessage
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.types import EventId, RoomId
from tests.integration.chat.conftest import ChatSetup, ask, running_bot, talking


async def test_progress_is_one_message_edited_at_most_once_a_second(setup: ChatSetup) -> None:
    async with running_bot(setup.config(), setup.db_path) as running, talking(setup, setup.admin) as talk:
        command, answers = await ask(talk, "!demo run slow --steps 4 --delay 0.6")
        [op] = await running.store.ops.find()
    room = talk.room_id
    assert room is not None
    originals = [m for m in answers if not m.edited]
    assert [m.final for m in originals] == [False, True]
    progress, result = originals
    assert result.text.startswith(f"✓ demo.run demo:slow (operation {op.op_id}) succeeded in ")
    assert op.progress_event_id == progress.event_id
    assert op.source_event_id == command

    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                           access_token=setup.admin.token) as client:
        edits = await client.edits(RoomId(room), EventId(progress.event_id))
        original = await client.recent_messages(RoomId(room), limit=50)
    assert len(edits) >= 2
    assert all(e.sender == setup.bot.user_id for e in edits)
    stamps = sorted(e.origin_server_ts for e in edits)
    progress_ts = next(e.origin_server_ts for e in original if e.event_id == progress.event_id)
    gaps = [b - a for a, b in itertools.pairwise([progress_ts, *stamps])]
    assert min(gaps) >= 900, gaps  # ≤ 1 edit/s (server timestamps, a little slack for clock granularity)
    newest = max(edits, key=lambda e: e.origin_server_ts)
    body = newest.content["m.new_content"]["body"]
    assert all(f"✓ step-{n}" in body for n in range(1, 5))
    assert newest.content["m.relates_to"] == {"rel_type": "m.replace", "event_id": progress.event_id}


async def test_a_failed_operation_is_aborted_after_confirmation(setup: ChatSetup) -> None:
    async with running_bot(setup.config(), setup.db_path) as running, talking(setup, setup.admin) as talk:
        _, answers = await ask(talk, "!demo run bad --steps 3 --delay 0.05 --fail step-2")
        [op] = await running.store.ops.find()
        assert answers[-1].final
        assert f"failed at step step-2: step-2 broke on purpose. Fix the cause, then `!op retry {op.op_id}`" \
            in answers[-1].text

        _, [asked] = await ask(talk, f"!op abort {op.op_id}")
        assert asked.text.startswith(f"⚠ `!op abort {op.op_id}` stops operation {op.op_id}")
        code = asked.text.split("`!confirm ")[1][:6]
        _, [wrong] = await ask(talk, "!confirm ZZZZZZ")
        assert "no pending confirmation ZZZZZZ" in wrong.text
        assert (await running.store.ops.get(op.op_id)).state == "failed"  # type: ignore[union-attr]

        _, undo = await ask(talk, f"!confirm {code}")
        texts = [m.text for m in undo if not m.edited]
        assert texts[0].startswith(f"Undoing operation {op.op_id}")
        assert "was undone" in texts[-1]
        edited: list[BotMessage] = [m for m in undo if m.edited]
        assert edited
        assert "↺ step-1" in edited[-1].text
        assert (await running.store.ops.get(op.op_id)).state == "compensated"  # type: ignore[union-attr]
