"""SIGKILL the bot at the ``runtime`` and ``ready`` steps of ``worker.create`` on the real dockerd
with the real agent image; after a restart there is exactly one container, running, and the
agent in it is ready (it wrote its first sync to the object store).

The child is ``tests.chaos.worker_app``, the same one the process-backend crash tests use; only
its configuration differs: the Docker backend on host networking, S3 storage, the built image.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest

from hiclaw_bot.clients.objectstore import S3ObjectStore
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.devstack.seaweed import SeaweedServer
from hiclaw_bot.flows import names
from tests.chaos.harness import POINTS, child_config, fault, s3_storage
from tests.chaos.test_worker_create_crashes import run_child
from tests.fixtures.dockerd import DockerEngine
from tests.fixtures.synapse import SynapseEnv, unique
from tests.fixtures.worker_image import AgentImage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[HigressConsoleSimulator]:
    async with HigressConsoleSimulator(initialized=True) as sim:
        yield sim


@pytest.mark.parametrize(("step", "point"), list(itertools.product(["runtime", "ready"], POINTS)))
async def test_kill_the_bot_at_the_runtime_then_restart(
        synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer, dockerd: DockerEngine,
        worker_image: AgentImage, tmp_path: Path, step: str, point: str) -> None:
    worker, bucket, instance = unique("w"), unique("crash"), unique("crash")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(child_config(
        synapse, tmp_path, gateway, storage=s3_storage(seaweed, bucket),
        backend={"kind": "docker", "instance": instance, "ready_check": "agent",
                 "docker": {"host": dockerd.base_url, "network": "host"}},
        lifecycle={"ready_timeout": "60s"})))
    env = {"HICLAW_TEST_IMAGE": worker_image.tag}
    kill = {**env, **fault("worker.create", step, point, tmp_path / "killed")}
    client = docker.DockerClient(base_url=dockerd.base_url)
    try:
        assert await run_child(config, worker, kill, synapse.admin_token) == -signal.SIGKILL
        assert await run_child(config, worker, kill, synapse.admin_token) == 0
        containers = client.containers.list(all=True, filters={"label": f"hiclaw.io/instance={instance}"})
        assert [c.name for c in containers] == [names.container(worker)], "exactly one container"
        assert containers[0].status == "running"
        assert containers[0].attrs["Config"]["Image"] == worker_image.tag
        objects = await S3ObjectStore.open(bucket=bucket, endpoint_url=seaweed.endpoint_url,
                                           access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                                           region=seaweed.region)
        try:
            assert await objects.exists(f"{names.worker_prefix(worker)}state/activity.json"), "the agent synced"
        finally:
            await objects.close()
    finally:
        for container in client.containers.list(all=True, filters={"label": f"hiclaw.io/instance={instance}"}):
            container.remove(force=True)
        client.close()
