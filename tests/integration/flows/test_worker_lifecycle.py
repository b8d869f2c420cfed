"""A worker's whole life on real services: create, answer, sleep, wake, update, delete, create again.

Every assertion about an external system asks that system (Synapse, the console simulator, the
object store directory, the backend), never our own database.
"""

from __future__ import annotations

import asyncio
import time

from backends import WorkerState
from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.flows import names
from hiclaw_bot.flows.worker import CREATE, DELETE, SLEEP, UPDATE, WAKE, subject
from hiclaw_bot.types import RoomAlias, RoomId
from tests.fixtures.synapse import unique
from tests.integration.flows.conftest import Stack


async def run(stack: Stack, kind: str, worker: str, **params: object) -> None:
    sub = await stack.engine.submit(kind, subject(worker), {"name": worker, **params})
    op = await stack.engine.wait(sub.op.op_id)
    assert op.state == "succeeded", (op.failed_step, op.error)


async def mention_answered(stack: Stack, room_id: RoomId, worker: str, text: str) -> bool:
    """Send a mention as the owner; True once the worker's reply shows up in the room."""
    user_id = names.user_id(worker, stack.config.matrix.server_name)
    await stack.owner.join(room_id)  # invited by the bot; a person accepts the invite
    await stack.owner.send_text(room_id, f"{user_id}: {text}", txn_id=unique("txn"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for event in await stack.owner.recent_messages(room_id, limit=10):
            if event.sender == user_id and text[:20] in str(event.content.get("body", "")):
                return True
        await asyncio.sleep(0.3)
    print("worker log:", (await stack.services.backend.logs(worker))[-2000:])
    return False


async def test_a_worker_lives_and_leaves_nothing_behind(stack: Stack) -> None:
    worker = unique("alice")
    alias = RoomAlias(names.full_alias(names.worker_room_alias(worker), stack.config.matrix.server_name))
    consumer = names.consumer(worker)
    params = {"model": "qwen-max", "image": "hiclaw/worker-agent:1"}

    await run(stack, CREATE, worker, skills=["file-sync"], **params)
    assert (stack.objects_dir / f"agents/{worker}/skills/file-sync/SKILL.md").exists()
    assert (stack.objects_dir / f"agents/{worker}/skills/file-sync/scripts/hiclaw-sync.sh").exists()
    row = await stack.store.workers.get(worker)
    assert row is not None
    assert row.state == "Running"
    assert row.room_id is not None
    room_id = await stack.services.matrix.resolve_alias(alias)
    assert room_id == row.room_id
    assert consumer in stack.gateway.consumers
    assert all(consumer in allowed for allowed in stack.gateway.route_allow.values())
    assert (stack.objects_dir / f"agents/{worker}/openclaw.json").exists()
    assert (await stack.services.backend.status(worker)).state is WorkerState.RUNNING
    assert await mention_answered(stack, RoomId(room_id), worker, "are you there?")

    await run(stack, SLEEP, worker)
    assert (await stack.services.backend.status(worker)).state is WorkerState.STOPPED
    assert (await stack.store.workers.get(worker)).state == "Sleeping"  # type: ignore[union-attr]

    await run(stack, WAKE, worker)
    assert (await stack.services.backend.status(worker)).state is WorkerState.RUNNING
    assert await mention_answered(stack, RoomId(room_id), worker, "back again?")

    before = (await stack.services.backend.status(worker)).spec_hash
    await run(stack, UPDATE, worker, model="qwen-plus", image="hiclaw/worker-agent:2", env={"MOOD": "calm"})
    after = await stack.services.backend.status(worker)
    assert after.state is WorkerState.RUNNING
    assert after.spec_hash != before
    row = await stack.store.workers.get(worker)
    assert row is not None
    assert (row.state, row.model, row.image) == ("Running", "qwen-plus", "hiclaw/worker-agent:2")
    assert b"qwen-plus" in (stack.objects_dir / f"agents/{worker}/openclaw.json").read_bytes()

    await run(stack, DELETE, worker, **params)
    try:
        await stack.services.matrix.resolve_alias(alias)
        raise AssertionError("the alias must be gone")
    except NotFoundError:
        pass
    assert consumer not in stack.gateway.consumers
    assert not any(consumer in allowed for allowed in stack.gateway.route_allow.values())
    assert not list((stack.objects_dir / "agents").glob(f"{worker}/**/*.*"))
    assert worker not in {s.name for s in await stack.services.backend.list()}
    assert await stack.store.workers.get(worker) is None
    members = await stack.services.matrix.joined_members(RoomId(room_id))
    assert names.user_id(worker, stack.config.matrix.server_name) not in members

    # The name can be used again: the deactivated account is ours (the ledger says so) and comes back.
    await run(stack, CREATE, worker, **params)
    assert (await stack.services.backend.status(worker)).state is WorkerState.RUNNING


async def test_an_update_brings_back_a_runtime_lost_or_stopped_behind_our_back(stack: Stack) -> None:
    worker = unique("phoenix")
    params = {"model": "qwen-max", "image": "hiclaw/worker-agent:1"}
    await run(stack, CREATE, worker, **params)
    backend = stack.services.backend

    await backend.stop(worker)  # stopped by hand: the update starts it again
    await run(stack, UPDATE, worker, model="qwen-plus", image="hiclaw/worker-agent:1")
    assert (await backend.status(worker)).state is WorkerState.RUNNING

    await backend.delete(worker)  # gone entirely: the update creates it again, running
    await run(stack, UPDATE, worker, model="qwen-max", image="hiclaw/worker-agent:2")
    assert (await backend.status(worker)).state is WorkerState.RUNNING
    assert (await stack.store.workers.get(worker)).state == "Running"  # type: ignore[union-attr]

    await run(stack, SLEEP, worker)
    await backend.delete(worker)  # a sleeper's runtime gone: it comes back, still asleep
    await run(stack, UPDATE, worker, model="qwen-plus", image="hiclaw/worker-agent:2")
    assert (await backend.status(worker)).state is WorkerState.STOPPED
    assert (await stack.store.workers.get(worker)).state == "Sleeping"  # type: ignore[union-attr]
    await run(stack, DELETE, worker, model="qwen-plus", image="hiclaw/worker-agent:2")
