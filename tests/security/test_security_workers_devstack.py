"""The issue's own yardstick, on ``hiclaw-bot dev``'s stack (real Synapse, SeaweedFS, the process
backend running the reference agent, the bot run as root): no worker process has in its
environment a key that opens another worker's files, and no worker can read the bot's database."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.confinement import can_confine
from hiclaw_bot.agent.env import FS_ACCESS_KEY, FS_SECRET_KEY
from hiclaw_bot.app import running
from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.clients.objectstore import S3ObjectStore
from hiclaw_bot.config import S3StorageConfig
from hiclaw_bot.devstack.stack import LocalStack
from hiclaw_bot.flows import worker as flows
from tests.fixtures.processes import runtimes
from tests.fixtures.synapse import unique

pytestmark = pytest.mark.skipif(not can_confine(), reason="confinement needs the bot to run as root")


def agent_env(data_dir: Path, worker: str) -> dict[str, str]:
    [agent] = runtimes(data_dir, worker)
    return dict(agent.environ())


async def test_on_the_dev_stack_a_worker_holds_only_its_own_key(tmp_path: Path) -> None:
    async with LocalStack(tmp_path / "dev", bcrypt_rounds=4) as stack:
        config = stack.config
        # Fresh interpreters: the test reads each agent's environment from /proc, which a forked
        # (preloaded) agent does not show; the launcher passes the same environment.
        backend = config.backend
        config = config.model_copy(update={"backend": backend.model_copy(update={
            "kind": "process", "process": backend.process.model_copy(update={"preload": False})})})
        storage = config.storage
        assert isinstance(storage, S3StorageConfig), "the test extra installs SeaweedFS"
        alice, bob = unique("alice"), unique("bob")
        async with running(config) as app:
            for name in (alice, bob):
                sub = await app.engine.submit(flows.CREATE, flows.subject(name),
                                              {"name": name, "model": "qwen-max", "image": "hiclaw/worker-agent:1"})
                assert (await app.engine.wait(sub.op.op_id)).state == "succeeded"
            env = agent_env(config.data_dir, alice)
            assert env[FS_ACCESS_KEY] != storage.access_key.get_secret_value()
            assert storage.secret_key.get_secret_value() not in env.values()
            keyed = await S3ObjectStore.open(bucket=storage.bucket, endpoint_url=storage.endpoint,
                                             access_key=env[FS_ACCESS_KEY], secret_key=env[FS_SECRET_KEY])
            try:
                assert await keyed.get(f"agents/{alice}/openclaw.json")
                with pytest.raises(UnauthorizedError):
                    await keyed.get(f"agents/{bob}/openclaw.json")
            finally:
                await keyed.close()
            result = await app.services.backend.exec(alice, ["sh", "-c", f"cat {config.database_path}"], 10)
            assert result.exit_code != 0
            assert "Permission denied" in result.stderr
            for name in (alice, bob):
                await app.services.backend.delete(name)
