"""The attacker's stack: the whole app on real Synapse, the process backend running the reference agent.

Each test sends the attack as the actor who would send it, then checks that it was refused and
that nothing changed at the servers (the victim still logs in, no file appears, ``/healthz`` answers).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hiclaw_bot.chat.say import BotMessage
from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, SharedSecretRegistration
from hiclaw_bot.config import Config
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import Account, ChatSetup, register, setup

__all__ = ["Account", "ChatSetup", "answer", "app_config", "healthz_ms", "logs_in", "register", "secure", "setup"]

API_TOKEN = "security-tests-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def server_admin(setup: ChatSetup) -> Account:
    """The bot as deployed: a Synapse server admin (the power an account takeover abuses)."""
    password = unique("pw")
    registration = SharedSecretRegistration(setup.synapse.shared_secret, admin=True)
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                           registration=registration) as client:
        user = await client.ensure_user(unique("hiclaw"), password)
    return Account(user.user_id, password, user.access_token)


@pytest.fixture
async def secure(setup: ChatSetup) -> ChatSetup:
    """The chat accounts, with the bot a server admin."""
    return ChatSetup(setup.synapse, await server_admin(setup), setup.admin, setup.stranger, setup.data_dir)


def app_config(setup: ChatSetup, tmp: Path, **extra: Any) -> Config:
    return Config.model_validate({
        "data_dir": str(tmp / "data"),
        "matrix": {
            "homeserver": setup.synapse.url, "server_name": setup.synapse.server_name,
            "bot": {"localpart": setup.bot.user_id[1:].split(":")[0], "password": setup.bot.password},
            "admins": [setup.admin.user_id],
            "registration": {"mode": "token", "token": setup.synapse.registration_token},
        },
        "storage": {"kind": "local", "directory": str(tmp / "objects")},
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


def answer(answers: list[BotMessage]) -> str:
    return answers[-1].text if answers else ""


async def healthz_ms(session: aiohttp.ClientSession, config: Config) -> float:
    """One ``/healthz`` round trip, in ms."""
    started = time.perf_counter()
    async with session.get(f"http://{config.api.listen}/healthz") as response:
        response.raise_for_status()
    return (time.perf_counter() - started) * 1000
