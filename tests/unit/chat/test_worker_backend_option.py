"""``!worker create --backend``: a backend this installation serves goes into the operation; any
other is refused before anything starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import pytest

from hiclaw_bot.chat import default_registry
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.grammar import BotIdentity
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, FakeClock, RetryPolicy
from hiclaw_bot.flows.services import Services
from storage import Store
from tests.unit.chat.conftest import BOT, RecordingOutbox
from tests.unit.chat.test_team_commands import KINDS, ask, nothing, ops


@pytest.fixture
async def world(config: Config, store: Store, outbox: RecordingOutbox) -> AsyncIterator[Dispatcher]:
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    for kind in KINDS:
        engine.register(kind, nothing)
    registry = default_registry()
    async def nobody_has_it(user_id: str) -> bool:
        return False

    services = SimpleNamespace(config=config, backend=SimpleNamespace(name="process"),
                               backends={"process": None, "docker": None}, domain=config.matrix.server_name,
                               bot_user_id=BOT, matrix=SimpleNamespace(user_exists=nobody_has_it), gateway=None)
    register_worker_commands(registry, cast(Services, services))
    hub = ProgressHub(engine, store, outbox, clock=FakeClock(), interval=1.0)
    await hub.start()
    yield Dispatcher(config=config, store=store, engine=engine, registry=registry, hub=hub, outbox=outbox,
                     identity=BotIdentity(BOT, "HiClaw"), resolver=Resolver(config, store))
    await hub.stop()
    await engine.stop()


async def test_a_served_backend_is_chosen_and_another_refused(world: Dispatcher, outbox: RecordingOutbox,
                                                              store: Store) -> None:
    refused = await ask(world, outbox, "!worker create far --backend kubernetes")
    assert refused == "Backend `kubernetes` is not offered here; offered: process, docker."
    assert await ops(store) == []
    await ask(world, outbox, "!worker create near --backend docker")
    await ask(world, outbox, "!worker create plain")
    chosen = {op.params["name"]: op.params.get("backend") for op in await ops(store)}
    assert chosen == {"near": "docker", "plain": None}  # none: the default, decided when it is recorded
