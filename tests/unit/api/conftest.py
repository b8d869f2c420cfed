"""An API served on a free port over a real store, a real process backend and an engine whose
``worker.wake``/``worker.sleep`` flows only flip the worker's row (no Matrix needed here; the
integration tests drive the real flows)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from backends.process import ProcessBackend
from hiclaw_bot.api import ApiState, make_app, serving
from hiclaw_bot.engine import Done, Engine, FuncStep, Outcome, RetryPolicy, StepContext
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.types import WorkerPhase
from storage import Operation, Store

TOKEN = "test-token-0123456789abcdef0123456789"


@dataclass
class Api:
    url: str
    state: ApiState
    session: aiohttp.ClientSession
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    """Flows wait on it when their params say ``hold``: a test keeps a worker busy with it."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


def flip_flows(engine: Engine, gate: asyncio.Event) -> None:
    def flow(state: str) -> Callable[[Operation], list[FuncStep]]:
        def build(op: Operation) -> list[FuncStep]:
            async def do(ctx: StepContext) -> Outcome:
                row = await ctx.store.workers.get(str(ctx.params["name"]))
                if row is not None and row.team == "slow":
                    await gate.wait()
                await ctx.store.workers.update(str(ctx.params["name"]), state=state)
                return Done()

            return [FuncStep("flip", do)]

        return build

    engine.register(flows.WAKE, flow(WorkerPhase.RUNNING))
    engine.register(flows.SLEEP, flow(WorkerPhase.SLEEPING))


@pytest.fixture
async def api(store: Store, tmp_path: Path) -> AsyncIterator[Api]:
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    backend = ProcessBackend("apitest", tmp_path / "workers")
    gate = asyncio.Event()
    flip_flows(engine, gate)
    state = ApiState(store=store, engine=engine, backend=backend, token=SecretStr(TOKEN))
    stop = engine.bus.listen(state.metrics.observe)
    async with serving(make_app(state)) as url, aiohttp.ClientSession(url) as session:
        yield Api(url, state, session, gate)
    gate.set()
    stop()
    await engine.stop()
    await backend.close()
