"""SIGKILL the bot at every boundary of the ``storage_identity`` steps (create, update, delete) on a
real SeaweedFS; after a restart the worker has exactly one identity with exactly one key, the one
its runtime was given, and never the bot's master key (or, after a delete, none at all).

The worker's reference agent reads its files with that key, so a create that finishes (its
``ready`` step waits for the agent's first sync) also proves the key opens the worker's own prefix.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from hiclaw_bot.agent.env import FS_ACCESS_KEY
from hiclaw_bot.clients.storage_identity import IamIdentities
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.devstack.seaweed import SeaweedServer
from hiclaw_bot.flows import names
from tests.chaos.harness import POINTS, child_config, s3_storage
from tests.chaos.test_worker_create_crashes import kill_then_finish
from tests.fixtures.processes import runtimes
from tests.fixtures.synapse import SynapseEnv, unique

STEPS = {"create": ["storage_identity", "runtime"], "update": ["storage_identity", "runtime_update"],
         "delete": ["remove_runtime", "remove_storage_identity"]}
CASES = [(kind, step, point) for kind, steps in STEPS.items() for step in steps for point in POINTS]


def write_config(path: Path, synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                 tmp: Path, bucket: str) -> None:
    path.write_text(json.dumps(child_config(
        synapse, tmp, gateway, storage=s3_storage(seaweed, bucket),
        # fresh interpreters: the agent's key is read from its /proc environment (see the create crashes)
        backend={"kind": "process", "instance": "crash-identity", "process": {"preload": False}},
        lifecycle={"ready_timeout": "40s"})))


async def crash_then_finish(synapse: SynapseEnv, gateway: HigressConsoleSimulator, seaweed: SeaweedServer,
                            tmp: Path, worker: str, kind: str, step: str, point: str) -> str:
    """Run ``worker.<kind>`` until the fault kills it at ``step``/``point``, then to completion; the bucket."""
    bucket = f"crash-{uuid.uuid4().hex[:10]}"
    config = tmp / "config.json"
    write_config(config, synapse, gateway, seaweed, tmp, bucket)
    await kill_then_finish(config, synapse.admin_token, worker, kind, step, point)
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


async def assert_one_identity_in_use(seaweed: SeaweedServer, bucket: str, data_dir: Path, worker: str) -> None:
    found, key = await identities_of(seaweed, bucket, worker)
    assert found == [names.storage_identity(worker)], "exactly one identity"
    assert key is not None, "with exactly one key"
    [agent] = runtimes(data_dir, worker)
    given = agent.environ().get(FS_ACCESS_KEY)
    assert given == key, "the runtime holds that key"
    assert given != seaweed.access_key, "and never the bot's master key"


@pytest.mark.parametrize(("kind", "step", "point"), CASES)
async def test_kill_at_the_identity_steps(synapse: SynapseEnv, gateway: HigressConsoleSimulator,
                                          seaweed: SeaweedServer, tmp_path: Path, kind: str, step: str,
                                          point: str) -> None:
    worker = unique("i")
    bucket = await crash_then_finish(synapse, gateway, seaweed, tmp_path, worker, kind, step, point)
    if kind == "delete":
        assert await identities_of(seaweed, bucket, worker) == ([], None)
        assert runtimes(tmp_path / "data", worker) == []
    else:
        await assert_one_identity_in_use(seaweed, bucket, tmp_path / "data", worker)
