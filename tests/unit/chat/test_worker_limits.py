"""``--cpus`` and ``--memory`` on ``!worker create`` and ``update``: a bad quantity is a clear answer
that starts nothing; a good one reaches the operation's params (and from there ``WorkerSpec.resources``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.config import Config
from storage import Store
from tests.unit.chat.conftest import RecordingOutbox
from tests.unit.chat.test_team_commands import ask, dispatcher_for, nothing, ops, worker


@pytest.fixture
async def world(config: Config, store: Store, outbox: RecordingOutbox) -> AsyncIterator[Dispatcher]:
    dispatcher, engine, hub = await dispatcher_for(config, store, outbox)
    engine.register("worker.update", nothing)
    yield dispatcher
    await hub.stop()
    await engine.stop()


@pytest.mark.parametrize("option", ["--cpus lots", "--cpus 0", "--memory -1Gi", "--memory 12parsecs"])
async def test_a_bad_limit_is_refused_and_starts_nothing(world: Dispatcher, outbox: RecordingOutbox, store: Store,
                                                         option: str) -> None:
    answer = await ask(world, outbox, f"!worker create alice {option}")
    assert "takes a positive quantity" in answer, answer
    assert await ops(store) == []


async def test_limits_reach_the_create_and_the_update(world: Dispatcher, outbox: RecordingOutbox,
                                                      store: Store) -> None:
    await ask(world, outbox, "!worker create alice --cpus 500m --memory 512Mi")
    [create] = await ops(store)
    assert (create.params["cpus"], create.params["memory"]) == ("500m", "512Mi")
    await worker(store, "bob")
    await ask(world, outbox, "!worker update bob --memory 2Gi")
    update = next(op for op in await ops(store) if op.kind == "worker.update")
    assert update.params["memory"] == "2Gi"
    assert "cpus" not in update.params or update.params["cpus"] is None
