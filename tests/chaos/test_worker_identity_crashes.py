"""SIGKILL the bot at every boundary of the ``storage_identity`` steps (create, update, delete) on a
real SeaweedFS; after a restart the worker has exactly one identity with exactly one key, the one
its runtime was given, and never the bot's master key (or, after a delete, none at all).

The worker's reference agent reads its files with that key, so a create that finishes (its
``ready`` step waits for the agent's first sync) also proves the key opens the worker's own prefix.
"""

from __future__ import annotations

import itertools
import json
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hiclaw_bot.agent.env import FS_ACCESS_KEY
from hiclaw_bot.clients.storage_identity import IamIdentities
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.devstack.seaweed import SeaweedServer
from hiclaw_bot.flows import names
from tests.chaos.test_worker_create_crashes import POINTS, agent_processes, no_agent_left_behind, run_child
from tests.fixtures.synapse import SynapseEnv, unique

__all__ = ["no_agent_left_behind"]  # the autouse fixture that stops the agents a test left

CREATE_STEPS = ["storage_identity", "runtime"]
UPDATE_STEPS = ["storage_identity", "runtime_update"]
DELETE_STEPS = ["remove_runtime", "remove_storage_identity"]


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[HigressConsoleSimulator]:
    async with HigressConsoleSimulator(initialized=True) as sim:
        yield sim


def write_config(path: Path, synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                 tmp: Path, bucket: str) -> None:
    path.write_text(json.dumps({
        "data_dir": str(tmp / "data"),
        "matrix": synapse.bot_matrix(),
        "gateway": {"kind": "higress", "console_url": gateway.url, "password": gateway.password,
                    "gateway_url": "http://127.0.0.1:9"},
        "storage": {"kind": "s3", "endpoint": seaweed.endpoint_url, "bucket": bucket,
                    "access_key": seaweed.access_key, "secret_key": seaweed.secret_key},
        # fresh interpreters: the agent's key is read from its /proc environment (see the create crashes)
        "backend": {"kind": "process", "instance": "crash-identity", "process": {"preload": False}},
        "lifecycle": {"ready_timeout": "40s"},
    }))


async def crash_then_finish(synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                            tmp: Path, worker: str, kind: str, step: str, point: str) -> str:
    """Run ``worker.<kind>`` until the fault kills it at ``step``/``point``, then to completion; the bucket."""
    bucket = f"crash-{uuid.uuid4().hex[:10]}"
    config = tmp / "config.json"
    write_config(config, synapse, gateway, seaweed, tmp, bucket)
    fault = {"HICLAW_FAULT": f"kill:{step}:{point}:worker.{kind}", "HICLAW_FAULT_MARKER": str(tmp / "killed")}
    if kind != "create":
        assert await run_child(config, worker, {}, synapse.admin_token) == 0
    assert await run_child(config, worker, fault, synapse.admin_token, kind) == -signal.SIGKILL
    assert await run_child(config, worker, fault, synapse.admin_token, kind) == 0
    return bucket


async def identities_of(seaweed: SeaweedServer, bucket: str, worker: str) -> tuple[list[str], str | None]:
    """The identities of ``worker`` on the server, and the one key of the first (None if not exactly one)."""
    iam = await IamIdentities.open(bucket=bucket, access_key=seaweed.access_key, secret_key=seaweed.secret_key,
                                   endpoint_url=seaweed.endpoint_url)
    try:
        found = await iam.list(names.storage_identity(worker))
        observed = await iam.observe(names.storage_identity(worker))
    finally:
        await iam.close()
    return [name for name in found if name == names.storage_identity(worker)], \
        observed.access_key if observed else None


async def assert_one_identity_in_use(seaweed: SeaweedServer, bucket: str, worker: str) -> None:
    found, key = await identities_of(seaweed, bucket, worker)
    assert found == [names.storage_identity(worker)], "exactly one identity"
    assert key is not None, "with exactly one key"
    [agent] = agent_processes(worker)
    given = agent.environ().get(FS_ACCESS_KEY)
    assert given == key, "the runtime holds that key"
    assert given != seaweed.access_key, "and never the bot's master key"


@pytest.mark.parametrize(("step", "point"), list(itertools.product(CREATE_STEPS, POINTS)))
async def test_kill_during_create(synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                                  tmp_path: Path, step: str, point: str) -> None:
    worker = unique("i")
    bucket = await crash_then_finish(synapse, gateway, seaweed, tmp_path, worker, "create", step, point)
    await assert_one_identity_in_use(seaweed, bucket, worker)


@pytest.mark.parametrize(("step", "point"), list(itertools.product(UPDATE_STEPS, POINTS)))
async def test_kill_during_update(synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                                  tmp_path: Path, step: str, point: str) -> None:
    worker = unique("j")
    bucket = await crash_then_finish(synapse, gateway, seaweed, tmp_path, worker, "update", step, point)
    await assert_one_identity_in_use(seaweed, bucket, worker)


@pytest.mark.parametrize(("step", "point"), list(itertools.product(DELETE_STEPS, POINTS)))
async def test_kill_during_delete(synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                                  tmp_path: Path, step: str, point: str) -> None:
    worker = unique("k")
    bucket = await crash_then_finish(synapse, gateway, seaweed, tmp_path, worker, "delete", step, point)
    assert await identities_of(seaweed, bucket, worker) == ([], None)
    assert agent_processes(worker) == []
