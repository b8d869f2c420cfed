"""What the chat benches share: a private Synapse with the bot and a user on it, the bot in a
process of its own, and the figures they print.

The benches measure the bot as a person meets it, so the bot never shares the person's process:
``bot_process`` starts the bench's own file with ``--bot CONFIG`` and waits for its ``ready`` line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.clients.matrix_admin import MatrixAdmin, SharedSecretRegistration
from hiclaw_bot.devstack.service import free_port
from hiclaw_bot.devstack.synapse import LocalSynapse

__all__ = ["ChatStack", "bot_process", "chat_stack", "free_port", "pause_background_updates", "percentile", "register"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def register(server: LocalSynapse, localpart: str, password: str, *, admin: bool = False) -> str:
    registration = SharedSecretRegistration(server.shared_secret, admin=admin)
    async with MatrixAdmin(server.url, server_name=server.server_name, registration=registration) as client:
        user = await client.ensure_user(localpart, password)
    return user.access_token


async def pause_background_updates(server: LocalSynapse, admin_token: str) -> None:
    """A fresh Synapse spends its first minutes on ~60 schema background updates, one a second;
    they are start-up work of the homeserver, not part of a reply's latency, so they wait."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{server.url}/_synapse/admin/v1/background_updates/enabled", json={"enabled": False},
            headers={"Authorization": f"Bearer {admin_token}"}) as response:
        response.raise_for_status()


@dataclass(frozen=True)
class ChatStack:
    """A Synapse with the bot's account (a server admin) and one user, alice, who is the bot's admin."""

    server: LocalSynapse
    data: Path
    bot_id: str
    bot_password: str
    user_id: str
    user_token: str

    def write_config(self, **extra: Any) -> Path:
        """The bot's config (0600: it holds the bot's password), with ``extra`` top-level sections."""
        path = self.data / "config.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump({
                "data_dir": str(self.data),
                "matrix": {"homeserver": self.server.url, "server_name": self.server.server_name,
                           "bot": {"password": self.bot_password}, "admins": [self.user_id],
                           "registration": {"mode": "token", "token": "unused"}},
                "storage": {"kind": "local", "directory": str(self.data / "objects")},
                **extra,
            }, handle)
        return path


@asynccontextmanager
async def chat_stack() -> AsyncIterator[ChatStack]:
    """A fresh Synapse in a temporary directory, its background updates paused, bot and alice registered."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        async with LocalSynapse(data / "synapse", bcrypt_rounds=4) as server:
            bot_password, user_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
            await pause_background_updates(server, await register(server, "hiclaw-bot", bot_password, admin=True))
            user_token = await register(server, "alice", user_password)
            yield ChatStack(server, data, f"@hiclaw-bot:{server.server_name}", bot_password,
                            f"@alice:{server.server_name}", user_token)


@asynccontextmanager
async def bot_process(script: str, config_path: Path) -> AsyncIterator[None]:
    """``script --bot CONFIG`` in a process of its own, from its ``ready`` line until it is stopped."""
    bot = await asyncio.create_subprocess_exec(sys.executable, script, "--bot", str(config_path),
                                               stdout=asyncio.subprocess.PIPE)
    try:
        assert bot.stdout is not None
        if (await asyncio.wait_for(bot.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the bot did not start")
        yield
    finally:
        if bot.returncode is None:
            bot.terminate()
        await bot.wait()


def bench_main(measure: Callable[[], Coroutine[Any, Any, Mapping[str, object]]],
               serve_bot: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """A chat bench's entry point: ``--bot CONFIG`` is the bot's own process; else the bench runs
    and prints its figures as one JSON object (the last line)."""
    logging.basicConfig(level=logging.WARNING)
    if sys.argv[1:2] == ["--bot"]:
        asyncio.run(serve_bot(sys.argv[2]))
    else:
        print(json.dumps(asyncio.run(measure())))
