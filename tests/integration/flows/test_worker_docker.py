"""The worker flows on a real dockerd: create, sleep, wake, update (new container beside the old),
delete. The busybox test image has no agent, so readiness is the runtime running
(``ready_check: running``); everything else — Matrix, gateway, storage — is as real as elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest

from backends import WorkerState
from hiclaw_bot.app import open_services
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, RetryPolicy
from hiclaw_bot.flows import names
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker import CREATE, DELETE, SLEEP, UPDATE, WAKE, register_worker_flows, subject
from tests.fixtures.dockerd import DockerEngine
from tests.fixtures.synapse import SynapseEnv, unique
from tests.integration.flows.conftest import Stack

LOOP = ["sh", "-c", "echo started; while true; do sleep 1; done"]


@pytest.fixture
async def on_docker(stack: Stack, dockerd: DockerEngine, synapse: SynapseEnv,
                    tmp_path: Path) -> AsyncIterator[tuple[Engine, Services]]:
    config: Config = stack.config.model_copy(update={"backend": stack.config.backend.model_copy(update={
        "kind": "docker", "ready_check": "running",
        "docker": stack.config.backend.docker.model_copy(update={"host": dockerd.base_url}),
    })})
    engine = Engine(stack.store, retry=RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2))
    async with open_services(config, stack.store, bot_token=synapse.admin_token) as services:
        register_worker_flows(engine, services)
        yield engine, services
        await engine.stop()
        for status in await services.backend.list():
            await services.backend.delete(status.name)


async def run(engine: Engine, kind: str, worker: str, **params: object) -> None:
    sub = await engine.submit(kind, subject(worker), {"name": worker, **params})
    op = await engine.wait(sub.op.op_id)
    assert op.state == "succeeded", (op.failed_step, op.error)


async def test_a_worker_on_docker(on_docker: tuple[Engine, Services], dockerd: DockerEngine) -> None:
    engine, services = on_docker
    worker = unique("dock")
    client = docker.DockerClient(base_url=dockerd.base_url)
    params = {"model": "qwen-max", "image": dockerd.image_v1, "command": LOOP}
    try:
        await run(engine, CREATE, worker, **params)
        container = client.containers.get(names.container(worker))
        assert container.status == "running"
        assert container.labels["hiclaw.io/worker"] == worker

        await run(engine, SLEEP, worker)
        assert (await services.backend.status(worker)).state is WorkerState.STOPPED
        await run(engine, WAKE, worker)
        assert (await services.backend.status(worker)).state is WorkerState.RUNNING

        await run(engine, UPDATE, worker, **{**params, "image": dockerd.image_v2})
        containers = client.containers.list(all=True, filters={"label": f"hiclaw.io/worker={worker}"})
        assert len(containers) == 1, "the old container is gone, the new one took its name"
        assert containers[0].name == names.container(worker)
        assert "IMAGE_VERSION=2" in containers[0].attrs["Config"]["Env"]

        await run(engine, DELETE, worker, **params)
        assert client.containers.list(all=True, filters={"label": f"hiclaw.io/worker={worker}"}) == []
    finally:
        client.close()
