"""The attacker's stack: the whole app on real Synapse, the process backend running the reference agent.

Each test sends the attack as the actor who would send it, then checks that it was refused and
that nothing changed at the servers (the victim still logs in, no file appears, ``/healthz`` answers).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, SharedSecretRegistration
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.service import free_port
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import Account, ChatSetup, register, server_admin, setup
from tests.integration.chat.conftest import final_text as answer

__all__ = ["Account", "ChatSetup", "answer", "app_config", "healthz_ms", "logs_in", "register", "secure", "setup"]

API_TOKEN = "security-tests-token-0123456789abcdef"


@pytest.fixture
async def secure(setup: ChatSetup) -> ChatSetup:
    """The chat accounts, with the bot a server admin."""
    return ChatSetup(setup.synapse, await server_admin(setup), setup.admin, setup.stranger, setup.data_dir)


def app_config(setup: ChatSetup, tmp: Path, **extra: Any) -> Config:
    return setup.app_config(tmp, **{
        "backend": {"kind": "process", "instance": unique("sec")},
        "lifecycle": {"ready_timeout": "40s"},
        "api": {"enabled": True, "listen": f"127.0.0.1:{free_port()}", "token": API_TOKEN},
        **extra,
    })


async def logs_in(setup: ChatSetup, account: Account) -> bool:
    """Whether ``account``'s own password still opens it (the victim's view of a takeover)."""
    localpart = account.user_id[1:].split(":")[0]
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                           registration=SharedSecretRegistration(setup.synapse.shared_secret)) as client:
        try:
            await client.login(localpart, account.password)
        except UnauthorizedError:
            return False
    return True


async def healthz_ms(session: aiohttp.ClientSession, config: Config) -> float:
    """One ``/healthz`` round trip, in ms."""
    started = time.perf_counter()
    async with session.get(f"http://{config.api.listen}/healthz") as response:
        response.raise_for_status()
    return (time.perf_counter() - started) * 1000
