"""Notices, edits and reading back, against a real Synapse: a repeated transaction posts once."""

from __future__ import annotations

import secrets

from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from tests.fixtures.synapse import unique


async def test_same_transaction_sends_one_notice(admin: MatrixAdmin) -> None:
    room = await admin.ensure_room(unique("hiclaw-worker"), name="Worker room")

    first = await admin.send_notice(room.room_id, "✓ created", txn_id="op-1-result", html="<b>✓ created</b>")
    second = await admin.send_notice(room.room_id, "✓ created", txn_id="op-1-result", html="<b>✓ created</b>")
    other = await admin.send_notice(room.room_id, "✓ created", txn_id="op-2-result")

    assert first == second != other
    messages = await admin.recent_messages(room.room_id)
    assert [m.event_id for m in messages] == [other, first]  # newest first
    assert messages[1].content == {"msgtype": "m.notice", "body": "✓ created",
                                   "format": "org.matrix.custom.html", "formatted_body": "<b>✓ created</b>"}


async def test_edits_of_a_progress_message(admin: MatrixAdmin) -> None:
    room = await admin.ensure_room(unique("hiclaw-worker"), name="Worker room")
    progress = await admin.send_notice(room.room_id, "… account", txn_id="op-7-progress")

    edit = await admin.edit_notice(room.room_id, progress, "✓ account … room", txn_id="op-7-edit-1")
    assert await admin.edit_notice(room.room_id, progress, "✓ account … room", txn_id="op-7-edit-1") == edit
    final = await admin.edit_notice(room.room_id, progress, "✓ account ✓ room", txn_id="op-7-edit-2")

    edits = await admin.edits(room.room_id, progress)
    assert [e.event_id for e in edits] == [final, edit]
    assert edits[0].content["m.new_content"] == {"msgtype": "m.notice", "body": "✓ account ✓ room"}
    assert edits[0].content["m.relates_to"] == {"rel_type": "m.replace", "event_id": progress}
    assert edits[0].body == "* ✓ account ✓ room"
    assert len(await admin.edits(room.room_id, progress, limit=1)) == 1


async def test_a_threaded_reply_as_another_user(admin: MatrixAdmin) -> None:
    worker = await admin.ensure_user(unique("worker"), secrets.token_urlsafe(12))
    room = await admin.ensure_room(unique("hiclaw-worker"), name="Worker room", invite=[worker.user_id])
    await admin.join(room.room_id, token=worker.access_token)
    root = await admin.send_notice(room.room_id, "!worker status w", txn_id="cmd-1")

    thread = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True, "m.in_reply_to": {"event_id": root}}
    reply = await admin.send_notice(room.room_id, "running", txn_id="reply-1", relates_to=thread,
                                    token=worker.access_token)

    latest = (await admin.recent_messages(room.room_id, limit=1))[0]
    assert latest.event_id == reply
    assert latest.sender == worker.user_id
    assert latest.content["m.relates_to"] == thread
