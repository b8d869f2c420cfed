"""The reference agent as a real process against the session's Synapse: joins, answers, reports, stops.

Each test provisions its own worker (see ``conftest.py``) and runs ``python -m hiclaw_bot.agent``
with nothing but the environment a backend gives a worker.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from hiclaw_bot.agent.env import LocalStorage, worker_env
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.types import EventId, RoomId, UserId
from tests.fixtures.synapse import SynapseEnv, unique
from tests.integration.agent.conftest import AgentProcess, Worker, eventually, matrix_post, replies_to, send_text

RunAgent = Callable[[dict[str, str]], Awaitable[AgentProcess]]


async def _joined(admin: MatrixAdmin, room_id: RoomId, user_id: UserId) -> bool | None:
    return True if user_id in await admin.joined_members(room_id) else None


async def _reply(admin: MatrixAdmin, worker: Worker, event_id: EventId) -> dict[str, Any] | None:
    found = replies_to(await admin.recent_messages(worker.room_id, limit=50), event_id, worker.user_id)
    return dict(found[0].content) if found else None


async def _activity(worker: Worker, replies: int) -> dict[str, Any] | None:
    key = f"agents/{worker.name}/state/activity.json"
    if not await worker.store.exists(key):
        return None
    record: dict[str, Any] = json.loads(await worker.store.get(key))
    return record if record["replies"] >= replies else None


async def test_joins_answers_a_mention_records_activity_and_stops_on_sigterm(
        synapse: SynapseEnv, admin: MatrixAdmin, worker: Worker, run_agent: RunAgent) -> None:
    agent = await run_agent(worker.env())
    await eventually(lambda: _joined(admin, worker.room_id, worker.user_id), what="the agent to join its room")

    asked = await send_text(synapse, worker.room_id, {"msgtype": "m.text", "body": f"{worker.name}: status?"},
                            token=synapse.admin_token)
    reply = await eventually(lambda: _reply(admin, worker, asked), what="the agent's reply")

    assert reply["msgtype"] == "m.text"
    assert reply["body"] == f'{worker.name} here: I got "{worker.name}: status?"'
    assert reply["m.mentions"] == {"user_ids": [synapse.admin_user_id]}
    record = await eventually(lambda: _activity(worker, replies=1), what="activity.json")
    assert record["worker"] == worker.name
    assert record["messages"] == 1
    assert record["last_seen"] is not None
    assert record["last_reply"] is not None

    code, took = await agent.terminate()
    assert code == 0, agent.log()
    assert took < 1.0
    log = agent.log()
    assert f"joined {worker.room_id}" in log
    assert worker.access_token not in log


@dataclass(frozen=True)
class Stranger:
    """A user of the homeserver who is in no allow list."""

    client: MatrixAdmin
    user_id: UserId
    token: str = field(repr=False)


@pytest.fixture
async def stranger(synapse: SynapseEnv) -> AsyncIterator[Stranger]:
    user = await synapse.register(unique("stranger"), secrets.token_urlsafe(12))
    async with synapse.client(user.access_token) as client:
        yield Stranger(client, user.user_id, user.access_token)


async def test_answers_only_allowed_senders_who_mention_it(
        synapse: SynapseEnv, admin: MatrixAdmin, worker: Worker, stranger: Stranger, run_agent: RunAgent) -> None:
    # A stranger's invite is never accepted, and in the worker's room the stranger is not obeyed.
    strangers_room = await stranger.client.ensure_room(unique("stranger-room"), name="Not yours",
                                                       invite=[worker.user_id])
    await admin.invite(worker.room_id, stranger.user_id)
    await stranger.client.join(worker.room_id)
    await admin.set_displayname(worker.user_id, "Alice the Tester")
    agent = await run_agent(worker.env())
    await eventually(lambda: _joined(admin, worker.room_id, worker.user_id), what="the agent to join its room")

    pill = f'<a href="https://matrix.to/#/{worker.user_id}">{worker.name}</a>: from a stranger'
    from_stranger = await send_text(synapse, worker.room_id, {
        "msgtype": "m.text", "body": f"{worker.name}: from a stranger", "format": "org.matrix.custom.html",
        "formatted_body": pill}, token=stranger.token)
    unaddressed = await send_text(synapse, worker.room_id, {"msgtype": "m.text", "body": "hello everyone"},
                                  token=synapse.admin_token)
    notice = await send_text(synapse, worker.room_id, {"msgtype": "m.notice", "body": f"{worker.name}: a notice"},
                             token=synapse.admin_token)
    by_display_name = await send_text(synapse, worker.room_id, {
        "msgtype": "m.text", "body": "Alice the Tester, what do you think?"}, token=synapse.admin_token)
    by_pill = await send_text(synapse, worker.room_id, {
        "msgtype": "m.text", "body": "you there?", "format": "org.matrix.custom.html",
        "formatted_body": f'<a href="https://matrix.to/#/{worker.user_id.replace("@", "%40")}">A</a> you there?'},
        token=synapse.admin_token)

    # Messages are handled in order: once the last one is answered, the others were decided.
    await eventually(lambda: _reply(admin, worker, by_pill), what="the reply to the pill")
    events = await admin.recent_messages(worker.room_id, limit=50)
    assert replies_to(events, by_display_name, worker.user_id)
    for ignored in (from_stranger, unaddressed, notice):
        assert not replies_to(events, ignored, worker.user_id)
    assert await stranger.client.membership(strangers_room.room_id, worker.user_id) == "invite"
    assert "not in the allow lists" in agent.log()


async def test_follows_a_rotated_token(
        synapse: SynapseEnv, admin: MatrixAdmin, worker: Worker, run_agent: RunAgent) -> None:
    agent = await run_agent(worker.env())
    await eventually(lambda: _joined(admin, worker.room_id, worker.user_id), what="the agent to join its room")

    # The bot rotates the token: a new login is written to openclaw.json, the old token is revoked.
    login = await matrix_post(synapse, "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": worker.name},
        "password": worker.password, "device_id": "ROTATED"})
    await worker.push_config(replace(worker.spec, access_token=login["access_token"]))
    await matrix_post(synapse, "/_matrix/client/v3/logout", {}, token=worker.access_token)

    asked = await send_text(synapse, worker.room_id, {"msgtype": "m.text", "body": f"{worker.name}, still there?"},
                            token=synapse.admin_token)
    await eventually(lambda: _reply(admin, worker, asked), what="a reply with the new token")
    events = await admin.recent_messages(worker.room_id, limit=50)
    assert len(replies_to(events, asked, worker.user_id)) == 1
    log = agent.log()
    assert "rejects the access token" in log
    assert worker.access_token not in log
    assert login["access_token"] not in log
    code, _ = await agent.terminate()
    assert code == 0


async def test_waits_for_its_config_and_still_stops_at_once(worker: Worker, run_agent: RunAgent,
                                                            tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", os.defpath), **worker_env(LocalStorage(tmp_path / "empty"), worker.name)}
    agent = await run_agent(env)
    await eventually(lambda: _logged(agent, "not readable yet"), what="the agent to wait for openclaw.json")
    code, took = await agent.terminate()
    assert code == 0
    assert took < 1.0


async def _logged(agent: AgentProcess, text: str) -> bool | None:
    return True if text in agent.log() else None


async def test_an_incomplete_environment_exits_2_naming_the_variable(run_agent: RunAgent) -> None:
    agent = await run_agent({"PATH": os.environ.get("PATH", os.defpath), "HICLAW_WORKER_NAME": "alice"})
    assert agent.process is not None
    assert await agent.process.wait() == 2
    assert "HICLAW_FS_KIND is not set" in agent.log()
