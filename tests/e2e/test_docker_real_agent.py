"""A worker's life from chat on the real dockerd with the real image: the agent in its container
logs in and answers; sleep stops the container; a mention wakes it; an image update replaces it
new-beside-old; delete leaves nothing behind.

Everything is real: Synapse, SeaweedFS (a container cannot read the bot's directory), the console
simulator, dockerd, and ``hiclaw/worker-agent:<hash>`` built from Debian and PyPI by the session's
``worker_image`` fixture. Workers join the ``host`` network, the only one that reaches services on
127.0.0.1 on an engine started with ``--bridge=none``. Every check asks the outside system.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import pytest

from hiclaw_bot.app import running
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.clients.objectstore import S3ObjectStore
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.devstack.seaweed import SeaweedServer
from hiclaw_bot.devstack.worker_image import CONTRACT
from hiclaw_bot.flows import names
from hiclaw_bot.types import RoomId
from tests.e2e.test_worker_chat import final_text
from tests.fixtures.dockerd import DockerEngine
from tests.fixtures.synapse import unique
from tests.fixtures.worker_image import AgentImage
from tests.integration.chat.conftest import ChatSetup, ask, gateway_section, server_admin, talking

pytestmark = pytest.mark.slow


def docker_config(setup: ChatSetup, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                  dockerd: DockerEngine, image: str, bucket: str, **data: Any) -> dict[str, Any]:
    """The bot's configuration: Docker backend on host networking, the agent's readiness check, S3."""
    return setup.app_document(setup.data_dir, **{
        "gateway": gateway_section(gateway),
        "storage": {"kind": "s3", "endpoint": seaweed.endpoint_url, "bucket": bucket,
                    "access_key": seaweed.access_key, "secret_key": seaweed.secret_key, "region": seaweed.region},
        "backend": {"kind": "docker", "instance": unique("e2e"), "default_image": image, "ready_check": "agent",
                    "docker": {"host": dockerd.base_url, "network": "host"}},
        "lifecycle": {"ready_timeout": "60s"},
        "api": {"enabled": False},
        **data,
    })


@dataclass
class World:
    setup: ChatSetup
    config: Config
    engine: docker.DockerClient
    owner: MatrixAdmin
    objects: S3ObjectStore


@pytest.fixture
async def world(setup: ChatSetup, seaweed: SeaweedServer, dockerd: DockerEngine, docker_client: docker.DockerClient,
                worker_image: AgentImage) -> AsyncIterator[World]:
    bot = await server_admin(setup)  # deleting a worker locks its account through the admin API
    setup = ChatSetup(setup.synapse, bot, setup.admin, setup.stranger, setup.data_dir)
    bucket = unique("e2e")
    client = docker_client
    async with HigressConsoleSimulator(initialized=True) as gateway, setup.synapse.client(setup.admin.token) as owner:
        objects = await S3ObjectStore.open(bucket=bucket, endpoint_url=seaweed.endpoint_url,
                                           access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                                           region=seaweed.region)
        config = Config.model_validate(docker_config(setup, gateway, seaweed, dockerd, worker_image.tag, bucket))
        try:
            yield World(setup, config, client, owner, objects)
        finally:
            await objects.close()
            for container in client.containers.list(all=True, filters={
                    "label": f"hiclaw.io/instance={config.backend.instance}"}):
                container.remove(force=True)


async def mention_answered(world: World, room_id: RoomId, worker: str, text: str, *, within: float = 30) -> bool:
    """The admin mentions ``worker`` in its room; True once the agent's reply quoting ``text`` is there."""
    user_id = names.user_id(worker, world.config.matrix.server_name)
    await world.owner.join(room_id)
    await world.owner.send_text(room_id, f"{user_id}: {text}", txn_id=unique("txn"))
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for event in await world.owner.recent_messages(room_id, limit=15):
            if event.sender == user_id and text in str(event.content.get("body", "")):
                return True
        await asyncio.sleep(0.3)
    return False


def containers_of(world: World, worker: str) -> list[Any]:
    return world.engine.containers.list(all=True, filters={"label": f"hiclaw.io/worker={worker}"})


async def until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_a_real_agent_in_a_container_from_chat(world: World, worker_image: AgentImage) -> None:
    image = world.engine.images.get(worker_image.tag)
    assert {key: image.attrs["Config"].get(key) for key in ("User", "Cmd", "StopSignal", "WorkingDir")} == \
        {key: CONTRACT[key] for key in ("User", "Cmd", "StopSignal", "WorkingDir")}
    assert f"HOME={CONTRACT['HOME']}" in image.attrs["Config"]["Env"]

    worker = unique("alice")
    async with running(world.config) as app, talking(world.setup, world.setup.admin) as talk:
        _, answers = await ask(talk, f"!worker create {worker}", within=90)
        assert final_text(answers).startswith("✓"), final_text(answers)
        [container] = containers_of(world, worker)
        assert container.status == "running"
        assert container.attrs["Config"]["User"] == CONTRACT["User"], "the agent does not run as root"
        row = await app.store.workers.get(worker)
        assert row is not None
        assert row.room_id is not None
        room_id = RoomId(row.room_id)
        assert await mention_answered(world, room_id, worker, "are you there?"), container.logs()[-2000:]

        # Sleep stops the container (kept, so a wake is a start).
        _, answers = await ask(talk, f"!worker sleep {worker}", within=60)
        assert final_text(answers).startswith("✓"), final_text(answers)
        [container] = containers_of(world, worker)
        assert container.status == "exited"

        # A mention wakes it (the lifecycle's wake on mention); then it answers.
        user_id = names.user_id(worker, world.config.matrix.server_name)
        await world.owner.send_text(room_id, f"{user_id}: wake up", txn_id=unique("txn"))

        async def awake() -> bool:
            found = await app.store.workers.get(worker)
            return found is not None and found.state == "Running" and \
                containers_of(world, worker)[0].status == "running"

        try:
            await until(awake, 60, "the mention to wake the worker")
        except AssertionError:
            ops = await app.store.ops.find(subject=f"worker:{worker}", limit=20)
            raise AssertionError([(op.kind, op.state, op.failed_step, op.error) for op in ops]) from None
        assert await mention_answered(world, room_id, worker, "good morning")

        # A new image: the new container starts beside the old one, which goes only once it is ready.
        old_id = containers_of(world, worker)[0].id
        _, answers = await ask(talk, f"!worker update {worker} --image {worker_image.next_tag}", within=90)
        assert final_text(answers).startswith("✓"), final_text(answers)
        [container] = containers_of(world, worker)
        assert container.id != old_id
        assert container.attrs["Config"]["Image"] == worker_image.next_tag
        assert container.name == names.container(worker)
        assert await mention_answered(world, room_id, worker, "new image?")

        # Delete: no container, no endpoint on the network, no files.
        _, answers = await ask(talk, f"!worker delete {worker}")
        code = re.search(r"!confirm ([A-Z0-9]+)", final_text(answers))
        assert code is not None, final_text(answers)
        _, answers = await ask(talk, f"!confirm {code.group(1)}", within=60)
        assert final_text(answers).startswith("✓"), final_text(answers)
    assert containers_of(world, worker) == []
    with pytest.raises(docker.errors.NotFound):
        world.engine.containers.get(names.container(worker))
    host = world.engine.networks.get("host")
    host.reload()
    assert container.id not in (host.attrs.get("Containers") or {})
    assert await world.objects.list(names.worker_prefix(worker)) == []
