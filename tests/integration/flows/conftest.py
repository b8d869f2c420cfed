"""A worker-flow harness on real services: Synapse, the Higress simulator, a local object store and
the process backend running the reference agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hiclaw_bot.app import open_services
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.engine import Engine, RetryPolicy
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker import register_worker_flows
from storage import Store
from tests.fixtures.synapse import SynapseEnv, unique


@dataclass
class Stack:
    config: Config
    store: Store
    engine: Engine
    services: Services
    gateway: HigressConsoleSimulator
    owner: MatrixAdmin
    owner_id: str
    objects_dir: Path


@pytest.fixture
async def stack(synapse: SynapseEnv, tmp_path: Path) -> AsyncIterator[Stack]:
    owner_name = unique("owner")
    owner_user = await synapse.register(owner_name, "owner-password-1")
    owner = synapse.client(owner_user.access_token)
    async with HigressConsoleSimulator(initialized=True) as gateway:
        config = Config.model_validate({
            "data_dir": str(tmp_path / "data"),
            "matrix": synapse.bot_matrix(owner_user.user_id),
            "gateway": {"kind": "higress", "console_url": gateway.url, "password": gateway.password,
                        "gateway_url": "http://127.0.0.1:9"},
            "storage": {"kind": "local", "directory": str(tmp_path / "objects")},
            "backend": {"kind": "process", "instance": unique("t"), },
            "lifecycle": {"ready_timeout": "40s"},
        })
        store = await Store.open(config.database_path)
        engine = Engine(store, retry=RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2))
        async with open_services(config, store, bot_token=synapse.admin_token) as services:
            register_worker_flows(engine, services)
            yield Stack(config, store, engine, services, gateway, owner, owner_user.user_id, tmp_path / "objects")
            await engine.stop()
            for status in await services.backend.list():
                await services.backend.delete(status.name)
        await store.close()
    await owner.close()
