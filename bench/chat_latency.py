"""Chat latency: how long a person waits for the bot's answer to ``!help``, end to end.

Starts its own Synapse (``LocalSynapse`` in a temporary directory, on 127.0.0.1), registers the bot
and a user, starts the bot, and has the user send ``!help`` 100 times in their direct room, one
after the other. Each sample runs from just before the user's send until the bot's answer arrives
through the *user's own* long-poll sync: what a Matrix client would show. Prints one JSON object
(last line) with ``reply_p50_ms``, ``reply_p95_ms`` and ``commands``. Target: p95 ≤ 150 ms.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.chat import Bot
from hiclaw_bot.chat.say import Conversation
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, SharedSecretRegistration
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.synapse import LocalSynapse
from hiclaw_bot.engine import Engine
from storage import Store

COMMANDS = 100
WARMUP = 5


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


async def main() -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        async with LocalSynapse(data / "synapse", bcrypt_rounds=4) as server:
            bot_password, user_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
            await pause_background_updates(server, await register(server, "hiclaw-bot", bot_password, admin=True))
            user_token = await register(server, "alice", user_password)
            user_id, bot_id = f"@alice:{server.server_name}", f"@hiclaw-bot:{server.server_name}"
            config = Config.model_validate({
                "data_dir": str(data),
                "matrix": {"homeserver": server.url, "server_name": server.server_name,
                           "bot": {"password": bot_password}, "admins": [user_id],
                           "registration": {"mode": "token", "token": "unused"}},
                "storage": {"kind": "local", "directory": str(data / "objects")},
            })
            store = await Store.open(config.database_path)
            engine = Engine(store)
            bot = Bot(config, store, engine)
            await engine.start()
            await bot.start()
            try:
                async with Conversation(server.url, user_id, bot_id) as talk:
                    await talk.login(access_token=user_token)
                    await talk.open()
                    samples: list[float] = []
                    for index in range(WARMUP + COMMANDS):
                        started = time.monotonic()
                        event_id = await talk.send("!help")
                        first = None
                        async for message in talk.replies(event_id, within=30):
                            first = first or message
                        assert first is not None
                        if index >= WARMUP:
                            samples.append((first.seen_at - started) * 1000)
            finally:
                await bot.stop()
                await engine.stop()
                await store.close()
    return {
        "commands": len(samples),
        "reply_p50_ms": round(statistics.median(samples), 1),
        "reply_p95_ms": round(percentile(samples, 0.95), 1),
        "reply_max_ms": round(max(samples), 1),
        "reply_mean_ms": round(statistics.fmean(samples), 1),
        "target_p95_ms": 150,
        "synapse_background_updates": "paused",
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(main())))
