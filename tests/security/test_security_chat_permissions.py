"""Permissions and bounds: operations are judged by their kind, options stay within their lists.

* ``!op abort`` was judged by the subject's team only: a team leader could abort an admin's running
  ``team.*`` operation on its own team. Now an operation's retry or abort needs what its own
  command needs.
* ``--mcp`` took any name; ``!worker logs --tail`` any number; ``!worker delete nobody`` asked for a
  confirmation before saying there is no such worker.
"""

from __future__ import annotations

from pathlib import Path

from hiclaw_bot.app import running
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import ask, talking
from tests.security.conftest import ChatSetup, answer, app_config, register


async def test_a_leader_cannot_abort_an_admins_team_operation(secure: ChatSetup, tmp_path: Path) -> None:
    leader_name = unique("lead")
    leader = await register(secure.synapse, leader_name)  # registered as lead-…-…: use its real localpart
    leader_name = leader.user_id[1:].split(":")[0]
    config = app_config(secure, tmp_path)
    async with running(config) as app, talking(secure, secure.admin) as admin_talk:
        store = app.store
        await store.workers.insert(leader_name, backend="process", state="Running", desired_state="Running",
                                   team="red", role="team_leader", image="i", model="m", user_id=leader.user_id)
        await store.teams.upsert("red", leader=leader_name, state="Active")
        op_id = await store.ops.insert(kind="team.create", subject="team:red", params={"name": "red"},
                                       actor=secure.admin.user_id, room_id=None, source_event_id=None,
                                       state="failed")
        assert admin_talk.room_id is not None
        await app.services.matrix.invite(admin_talk.room_id, leader.user_id)
        await app.services.matrix.join(admin_talk.room_id, token=leader.token)
        async with talking(secure, leader, admin_talk.room_id) as talk:
            for verb in ("abort", "retry"):
                _, answers = await ask(talk, f"!op {verb} {op_id}")
                assert "may not" in answer(answers), answer(answers)
                assert "!confirm" not in answer(answers)
        op = await store.ops.get(op_id)
        assert op is not None
        assert op.state == "failed"


async def test_options_are_bounded_and_unknown_workers_refused_at_once(secure: ChatSetup, tmp_path: Path) -> None:
    config = app_config(secure, tmp_path)
    async with running(config) as app, talking(secure, secure.admin) as talk:
        name = unique("w")
        _, answers = await ask(talk, f"!worker create {name} --mcp evil-server", within=60)
        assert "not allowed" in answer(answers), answer(answers)
        assert await app.store.workers.get(name) is None
        _, answers = await ask(talk, f"!worker delete {unique('nobody')}")
        assert "There is no worker" in answer(answers), answer(answers)
        assert "!confirm" not in answer(answers)
        _, answers = await ask(talk, f"!worker logs {name} --tail 1000000")
        assert "2000" in answer(answers), answer(answers)
        assert await app.services.backend.list() == []
