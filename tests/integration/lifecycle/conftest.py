"""Lifecycle automation on real services: Synapse, the Higress simulator, a local object store,
the process backend running the reference agent, and a bot of its own.

The bot is a fresh account per test, not the server admin the flow tests share: the orphan sweep
lists the aliases of every room the bot is in, and another test's rooms must not show up here.
The clock is a :class:`FakeClock` started at the real time, so a test moves it 13 hours on to make
a worker idle without waiting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hiclaw_bot.app import open_services
from hiclaw_bot.chat import Bot, Incoming, default_registry
from hiclaw_bot.chat.gc import register_gc_command
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, MatrixUser
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.engine import Engine, FakeClock, RetryPolicy
from hiclaw_bot.flows.gc import register_gc_flow
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker import CREATE, register_worker_flows, subject
from hiclaw_bot.lifecycle import Lifecycle
from storage import Operation, Store
from tests.fixtures.synapse import SynapseEnv, unique


@dataclass
class World:
    config: Config
    store: Store
    engine: Engine
    services: Services
    gateway: HigressConsoleSimulator
    owner: MatrixAdmin
    """The admin person, acting with their own token."""
    owner_user: MatrixUser
    bot_user: MatrixUser
    lifecycle: Lifecycle
    clock: FakeClock
    objects_dir: Path
    report_alias: str
    config_data: dict[str, Any]
    """The configuration as a YAML file would hold it (secrets in clear), for the command line."""
    seen: list[str] = field(default_factory=list)
    """Event ids of every message the bot's sync handed to its observers."""

    async def run(self, kind: str, worker: str, **params: object) -> Operation:
        sub = await self.engine.submit(kind, subject(worker), {"name": worker, **params})
        op = await self.engine.wait(sub.op.op_id)
        assert op.state == "succeeded", (op.kind, op.failed_step, op.error)
        return op

    async def create(self, worker: str) -> None:
        await self.run(CREATE, worker, model="qwen-max", image="hiclaw/worker-agent:1")

    @asynccontextmanager
    async def bot(self) -> AsyncIterator[Bot]:
        """The chat bot, syncing, with the lifecycle hearing every message it sees."""
        registry = default_registry()
        register_worker_commands(registry, self.services)
        register_gc_command(registry, self.services)
        async def record(message: Incoming, *, command: bool) -> None:
            self.seen.append(message.event_id)

        bot = Bot(self.config, self.store, self.engine, registry=registry, sync_timeout=2.0,
                  observers=[self.lifecycle.observe, record])
        async with bot:
            yield bot


async def _account(synapse: SynapseEnv, prefix: str) -> MatrixUser:
    return await synapse.register(unique(prefix), f"{prefix}-password-1")


@pytest.fixture
async def world(synapse: SynapseEnv, tmp_path: Path) -> AsyncIterator[World]:
    owner_user = await _account(synapse, "owner")
    bot_user = await _account(synapse, "lcbot")
    owner = MatrixAdmin(synapse.url, server_name=synapse.server_name, access_token=owner_user.access_token)
    report_alias = f"#{unique('reports')}:{synapse.server_name}"
    async with HigressConsoleSimulator(initialized=True) as gateway:
        data: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "matrix": {
                "homeserver": synapse.url, "server_name": synapse.server_name,
                "bot": {"localpart": bot_user.user_id[1:].split(":")[0], "access_token": bot_user.access_token,
                        "device_id": bot_user.device_id or "HICLAWBOT"},
                "admins": [owner_user.user_id],
                "registration": {"mode": "token", "token": synapse.registration_token},
            },
            "gateway": {"kind": "higress", "console_url": gateway.url, "password": gateway.password,
                        "gateway_url": "http://127.0.0.1:9"},
            "storage": {"kind": "local", "directory": str(tmp_path / "objects")},
            "backend": {"kind": "process", "instance": unique("lc")},
            "lifecycle": {"ready_timeout": "40s", "report_room": report_alias},
        }
        config = Config.model_validate(data)
        store = await Store.open(config.database_path)
        engine = Engine(store, retry=RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2))
        clock = FakeClock(time.time())
        async with open_services(config, store, bot_token=bot_user.access_token) as services:
            register_worker_flows(engine, services)
            register_gc_flow(engine, services)
            lifecycle = Lifecycle(services, engine, clock=clock)
            yield World(config, store, engine, services, gateway, owner, owner_user, bot_user, lifecycle, clock,
                        tmp_path / "objects", report_alias, data)
            await lifecycle.stop()
            await engine.stop()
            for status in await services.backend.list():
                await services.backend.delete(status.name)
        await store.close()
    await owner.close()
