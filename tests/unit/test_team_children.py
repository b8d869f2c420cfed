"""How a team operation runs its members' operations (``run_child``) on a real engine and store,
with worker flows reduced to steps the test controls: it never starts a second operation for a
worker that already has one of the same kind, resumes a failed one, and refuses other conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hiclaw_bot.engine import Done, Engine, FuncStep, Outcome, PermanentError, RetryPolicy, StepContext
from hiclaw_bot.flows import worker as workers
from hiclaw_bot.flows.team_members import run_child
from storage import Operation, Store

PARENT = Operation(op_id=0, kind="team.create", subject="team:red", params={}, actor="@root:example.org",
                   room_id=None, source_event_id=None, state="running", error=None, failed_step=None,
                   progress_event_id=None, created_at=0.0, updated_at=0.0, finished_at=None)


class Worlds:
    """Each worker flow: one step that waits for ``gate`` and fails while ``broken`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.broken = False
        self.calls: list[str] = []

    def flow(self, op: Operation) -> list[FuncStep]:
        async def do(ctx: StepContext) -> Outcome:
            self.calls.append(op.kind)
            await self.gate.wait()
            if self.broken:
                raise PermanentError("it broke")
            return Done()

        return [FuncStep("only", do)]


@pytest.fixture
async def world(store: Store) -> AsyncIterator[tuple[Engine, Worlds]]:
    worlds = Worlds()
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    for kind in (workers.CREATE, workers.DELETE, workers.WAKE):
        engine.register(kind, worlds.flow)
    yield engine, worlds
    await engine.stop()


async def kinds(store: Store) -> list[tuple[str, str]]:
    return sorted((op.kind, op.state) for op in await store.ops.find(limit=100))


async def test_a_running_child_is_joined_not_repeated(world: tuple[Engine, Worlds], store: Store) -> None:
    engine, worlds = world
    await engine.submit(workers.DELETE, workers.subject("ann"), {"name": "ann"})
    waiting = asyncio.create_task(run_child(engine, PARENT, workers.DELETE, "ann", {"name": "ann"}))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    worlds.gate.set()
    await waiting
    assert await kinds(store) == [(workers.DELETE, "succeeded")]


async def test_a_failed_child_is_resumed(world: tuple[Engine, Worlds], store: Store) -> None:
    engine, worlds = world
    worlds.gate.set()
    worlds.broken = True
    with pytest.raises(PermanentError, match="failed at step only: it broke"):
        await run_child(engine, PARENT, workers.CREATE, "ann", {"name": "ann"})
    worlds.broken = False
    await run_child(engine, PARENT, workers.CREATE, "ann", {"name": "ann"})
    assert await kinds(store) == [(workers.CREATE, "succeeded")]
    assert worlds.calls == [workers.CREATE, workers.CREATE]


async def test_a_delete_waits_for_a_create_then_runs(world: tuple[Engine, Worlds], store: Store) -> None:
    engine, worlds = world
    await engine.submit(workers.CREATE, workers.subject("ann"), {"name": "ann"})
    deleting = asyncio.create_task(run_child(engine, PARENT, workers.DELETE, "ann", {"name": "ann"}))
    await asyncio.sleep(0.05)
    assert await kinds(store) == [(workers.CREATE, "running")]
    worlds.gate.set()
    await deleting
    assert await kinds(store) == [(workers.CREATE, "succeeded"), (workers.DELETE, "succeeded")]


async def test_another_operation_on_the_worker_is_a_conflict(world: tuple[Engine, Worlds], store: Store) -> None:
    engine, worlds = world
    params: dict[str, Any] = {"name": "ann"}
    await engine.submit(workers.WAKE, workers.subject("ann"), params)
    with pytest.raises(PermanentError, match="busy with operation"):
        await run_child(engine, PARENT, workers.CREATE, "ann", params)
    assert await kinds(store) == [(workers.WAKE, "running")], "nothing else was started"
    worlds.gate.set()
