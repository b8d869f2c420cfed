"""Humans reach workers on real services: Synapse, the process backend running the reference agent.

The rule (``hiclaw_bot/flows/access.py``): admin-level humans talk to every worker, ``team`` humans
to the workers of their teams and those named with ``--workers``, viewers to none. Each test asks
the systems themselves: the worker's ``openclaw.json`` in the object store, the room's membership in
Synapse, and whether the running agent answers the human's mention.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from hiclaw_bot.clients.mail import SmtpMailer
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.flows import human as humans
from hiclaw_bot.flows import names
from hiclaw_bot.flows import team as teams
from hiclaw_bot.flows import worker as workers
from hiclaw_bot.flows.worker_steps import ACCESS_TOKEN
from hiclaw_bot.types import EventId, RoomId, UserId
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.synapse import SynapseEnv, unique
from tests.integration.flows.conftest import Stack

PARAMS = {"model": "qwen-max", "image": "hiclaw/worker-agent:1"}


@dataclass
class Person:
    """A human's own Matrix session: the test speaks as the human."""

    name: str
    user_id: UserId
    client: MatrixAdmin


@pytest.fixture
async def bob(synapse: SynapseEnv, stack: Stack, smtp_server: SmtpServer) -> AsyncIterator[Person]:
    """An account of bob's own (so the test can log in as bob; ``human.create`` adopts it), and the
    team and human flows on the stack's engine."""
    teams.register_team_flows(stack.engine, stack.services)
    humans.register_human_flows(stack.engine, stack.services,
                                SmtpMailer(smtp_server.host, smtp_server.port, from_address="bot@example.org",
                                           security="none"))
    name = unique("bob")
    user = await synapse.register(name, "bob-password-1")
    client = synapse.client(user.access_token)
    yield Person(name, UserId(user.user_id), client)
    await client.close()


async def run(stack: Stack, kind: str, subject: str, params: dict[str, Any]) -> None:
    sub = await stack.engine.submit(kind, subject, params)
    op = await stack.engine.wait(sub.op.op_id)
    assert op.state == "succeeded", (op.failed_step, op.error)


def allowed(stack: Stack, worker: str) -> set[str]:
    data: dict[str, Any] = json.loads((stack.objects_dir / f"agents/{worker}/openclaw.json").read_bytes())
    matrix = data["channels"]["matrix"]
    return set(matrix["groupAllowFrom"]) | set(matrix["dm"]["allowFrom"])


async def room_of(stack: Stack, worker: str) -> RoomId:
    row = await stack.store.workers.get(worker)
    assert row is not None
    assert row.room_id is not None
    return RoomId(row.room_id)


async def answered(client: MatrixAdmin, room_id: RoomId, worker_id: UserId, event_id: EventId) -> bool:
    """Whether ``worker_id`` has replied to ``event_id`` (the reference agent replies with a relation)."""
    for event in await client.recent_messages(room_id, limit=30):
        relates = event.content.get("m.relates_to") or {}
        if event.sender == worker_id and (relates.get("m.in_reply_to") or {}).get("event_id") == event_id:
            return True
    return False


async def wait_answered(client: MatrixAdmin, room_id: RoomId, worker_id: UserId, event_id: EventId) -> bool:
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        if await answered(client, room_id, worker_id, event_id):
            return True
        await asyncio.sleep(0.3)
    return False


async def test_a_team_human_is_answered_by_its_team_and_ignored_by_another(stack: Stack, bob: Person) -> None:
    red, blue, red_lead, blue_lead = unique("red"), unique("blue"), unique("rlead"), unique("blead")
    domain = stack.config.matrix.server_name
    # bob first: the workers made after it invite and allow it with no further command.
    await run(stack, humans.CREATE, humans.subject(bob.name),
              {"name": bob.name, "level": "team", "teams": [red], "email": f"{bob.name}@example.org"})
    await asyncio.gather(
        run(stack, teams.CREATE, teams.subject(red), {"name": red, "leader": red_lead, "workers": [], **PARAMS}),
        run(stack, teams.CREATE, teams.subject(blue), {"name": blue, "leader": blue_lead, "workers": [], **PARAMS}),
    )
    red_id, blue_id = names.user_id(red_lead, domain), names.user_id(blue_lead, domain)
    assert bob.user_id in allowed(stack, red_lead)
    assert bob.user_id not in allowed(stack, blue_lead)
    matrix = stack.services.matrix
    assert await matrix.membership(await room_of(stack, red_lead), bob.user_id) == "invite"
    assert await matrix.membership(await room_of(stack, blue_lead), bob.user_id) is None

    # In the red leader's own room, bob is answered.
    red_room = await room_of(stack, red_lead)
    await bob.client.join(red_room)
    asked = await bob.client.send_text(red_room, f"{red_id}: are you there?", txn_id=unique("txn"))
    assert await wait_answered(bob.client, red_room, red_id, asked), \
        (await stack.services.backend.logs(red_lead))[-2000:]

    # In a room both leaders share, bob's mention of the blue leader is ignored: the owner's later
    # mention is answered, and the agent handles a room's events in order.
    shared = (await matrix.ensure_room(unique("shared"), name="shared",
                                       invite=[UserId(stack.owner_id), bob.user_id, red_id, blue_id],
                                       power_users={UserId(stack.owner_id): 100})).room_id
    for worker in (red_lead, blue_lead):
        token = await stack.store.secrets.get(workers.subject(worker), ACCESS_TOKEN)
        assert token is not None
        await matrix.join(shared, token=token.reveal())
    await bob.client.join(shared)
    await stack.owner.join(shared)
    ignored = await bob.client.send_text(shared, f"{blue_id}: and you?", txn_id=unique("txn"))
    control = await stack.owner.send_text(shared, f"{blue_id}: and for me?", txn_id=unique("txn"))
    assert await wait_answered(stack.owner, shared, blue_id, control)
    assert not await answered(stack.owner, shared, blue_id, ignored)


async def test_per_worker_access_follows_the_human_and_leaves_with_it(stack: Stack, bob: Person) -> None:
    ann, cal = unique("ann"), unique("cal")
    await asyncio.gather(run(stack, workers.CREATE, workers.subject(ann), {"name": ann, **PARAMS}),
                         run(stack, workers.CREATE, workers.subject(cal), {"name": cal, **PARAMS}))
    await run(stack, humans.CREATE, humans.subject(bob.name),
              {"name": bob.name, "level": "team", "teams": [], "workers": [ann], "email": f"{bob.name}@example.org"})
    matrix = stack.services.matrix
    assert bob.user_id in allowed(stack, ann), "a worker made before the human allows it once granted"
    assert bob.user_id not in allowed(stack, cal)
    assert await matrix.membership(await room_of(stack, ann), bob.user_id) == "invite"
    # ann's agent runs already: it reads its allow list again when bob, not yet in it, mentions it.
    ann_room, ann_id = await room_of(stack, ann), names.user_id(ann, stack.config.matrix.server_name)
    await bob.client.join(ann_room)
    asked = await bob.client.send_text(ann_room, f"{ann_id}: may I?", txn_id=unique("txn"))
    assert await wait_answered(bob.client, ann_room, ann_id, asked), (await stack.services.backend.logs(ann))[-2000:]

    await run(stack, humans.INVITE, humans.subject(bob.name), {"name": bob.name, "teams": None, "workers": [cal]})
    assert bob.user_id not in allowed(stack, ann)
    assert bob.user_id in allowed(stack, cal)
    assert await matrix.membership(await room_of(stack, ann), bob.user_id) == "leave"
    assert await matrix.membership(await room_of(stack, cal), bob.user_id) == "invite"

    await run(stack, humans.DELETE, humans.subject(bob.name), {"name": bob.name})
    assert bob.user_id not in allowed(stack, ann) | allowed(stack, cal), "a deleted human leaves every allow list"
    assert await matrix.membership(await room_of(stack, cal), bob.user_id) == "leave"
