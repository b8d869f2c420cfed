"""Idle auto-sleep, wake on mention and the drift reconciler, against real services.

Every assertion about the outside asks the outside: the backend for the runtime, Synapse for the
notices, the reconciler's report room for its report.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable

from backends import WorkerState
from hiclaw_bot.clients.matrix_admin import RoomEvent
from hiclaw_bot.flows import names
from hiclaw_bot.flows.worker import REPAIR, WAKE, subject
from hiclaw_bot.types import RoomId
from storage import Operation
from tests.fixtures.synapse import unique
from tests.integration.lifecycle.conftest import World


async def until(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def notices(world: World, room_id: str) -> list[RoomEvent]:
    events = await world.services.matrix.recent_messages(RoomId(room_id), limit=30)
    return [e for e in events if e.sender == world.bot_user.user_id and e.content.get("msgtype") == "m.notice"]


async def ops_of(world: World, worker: str, kind: str) -> list[Operation]:
    return [op for op in await world.store.ops.find(subject=subject(worker), limit=100) if op.kind == kind]


async def state_of(world: World, worker: str) -> WorkerState:
    return (await world.services.backend.status(worker)).state


async def test_idle_worker_sleeps_a_mention_wakes_it_and_drift_is_repaired(world: World) -> None:
    worker = unique("idle")
    await world.create(worker)
    row = await world.store.workers.get(worker)
    assert row is not None
    assert row.room_id is not None
    room_id = row.room_id
    lifecycle = world.lifecycle

    # Not idle yet: nothing happens.
    assert (await lifecycle.sweep_once()).slept == {}

    # 13 hours later (default idle timeout 12 h): one normal worker.sleep op, and a notice.
    world.clock.advance(13 * 3600 + 600)
    sweep = await lifecycle.sweep_once()
    assert list(sweep.slept) == [worker]
    assert (await world.engine.wait(sweep.slept[worker])).state == "succeeded"
    assert await state_of(world, worker) is WorkerState.STOPPED
    assert (await world.store.workers.get(worker)).state == "Sleeping"  # type: ignore[union-attr]
    said = [str(e.body) for e in await notices(world, room_id)]
    assert any("asleep after 13 hours idle; mention it to wake it" in body for body in said), said
    assert (await lifecycle.sweep_once()).candidates == 0

    # Two mentions of the sleeping worker: one wake, and a notice pointing at the first message.
    user_id = names.user_id(worker, world.config.matrix.server_name)
    async with world.bot():
        await world.owner.join(RoomId(room_id))
        first = await world.owner.send_text(RoomId(room_id), f"{user_id}: are you there?", txn_id=unique("t"))
        second = await world.owner.send_text(RoomId(room_id), f"{user_id}: hello?", txn_id=unique("t"))

        async def woken() -> bool:
            return bool(await ops_of(world, worker, WAKE))

        await until(woken, what="a wake operation")
        wake = (await ops_of(world, worker, WAKE))[0]
        assert wake.params["missed"] == {"room_id": room_id, "event_id": first, "sender": world.owner_user.user_id}
        assert (await world.engine.wait(wake.op_id)).state == "succeeded"

        async def both_seen() -> bool:
            return first in world.seen and second in world.seen

        await until(both_seen, what="both mentions reaching the observers")
    assert len(await ops_of(world, worker, WAKE)) == 1
    assert await state_of(world, worker) is WorkerState.RUNNING
    pointers = [e for e in await notices(world, room_id)
                if e.content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == first]
    assert len(pointers) == 1
    assert f"https://matrix.to/#/{room_id}/{first}" in str(pointers[0].body)

    # The mentions count as the worker's activity, written in one batch.
    await lifecycle.activity.flush()
    active = (await world.store.workers.get(worker)).last_active_at  # type: ignore[union-attr]
    assert active is not None
    assert active > time.time() - 120

    # Killed behind the bot's back: the reconciler wakes it and says so in the report room.
    report_room = await world.services.matrix.ensure_room(world.report_alias[1:].split(":")[0], name="Reports",
                                                          invite=[world.owner_user.user_id])
    runtime_dir = world.config.data_dir / "workers" / world.config.backend.instance / worker
    state = json.loads((runtime_dir / "state.json").read_text())
    os.killpg(state["pid"], signal.SIGKILL)

    async def failed() -> bool:
        return await state_of(world, worker) is WorkerState.FAILED

    await until(failed, within=10, what="the backend to see the kill")
    report = await lifecycle.reconcile_once()
    assert [(f.worker, f.action) for f in report.findings] == [(worker, WAKE)]
    assert (await world.engine.wait(report.started[worker])).state == "succeeded"
    assert await state_of(world, worker) is WorkerState.RUNNING
    said = [str(e.body) for e in await notices(world, report_room.room_id)]
    assert any(worker in body and "repairing with worker.wake" in body for body in said), said

    # Vanished altogether: recreated from the row's spec by a worker.repair.
    await world.services.backend.delete(worker)
    report = await lifecycle.reconcile_once()
    assert [(f.worker, f.action) for f in report.findings] == [(worker, REPAIR)]
    assert (await world.engine.wait(report.started[worker])).state == "succeeded"
    assert await state_of(world, worker) is WorkerState.RUNNING

    # In line again: nothing found, nothing started, and the observed state is written down.
    report = await lifecycle.reconcile_once()
    assert report.findings == []
    assert report.started == {}
    assert (await world.store.workers.get(worker)).observed_state == "Running"  # type: ignore[union-attr]


async def test_the_loops_run_a_reconciler_pass_at_start_and_stop_cleanly(world: World) -> None:
    """At start (after the engine resumed its work) the reconciler looks once without waiting."""
    await world.store.workers.insert("half-made", backend="process", state="Pending", desired_state="Running")
    await world.lifecycle.start()

    async def observed() -> bool:
        return (await world.store.workers.get("half-made")).observed_state == "Missing"  # type: ignore[union-attr]

    await until(observed, within=10, what="the first reconciler pass")
    await world.lifecycle.stop()
    assert await world.store.ops.find() == []  # a worker in the middle of something is only observed
