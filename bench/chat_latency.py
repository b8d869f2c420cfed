"""Chat latency: how long a person waits for the bot's answer to ``!help``, end to end.

Starts its own Synapse (``LocalSynapse`` in a temporary directory, on 127.0.0.1), registers the bot
and a user, starts the bot in a process of its own (as in production: the person's client is not
the bot's process), and has the user send ``!help`` 100 times in their direct room, one after the
other. Each sample runs from just before the user's send until the bot's answer arrives
through the *user's own* long-poll sync: what a Matrix client would show. Prints one JSON object
(last line) with ``reply_p50_ms``, ``reply_p95_ms`` and ``commands``. Target: p95 ≤ 150 ms.

For context it also reports how long the user's own send took to be acknowledged
(``user_send_p50_ms``) and the latency counted from that acknowledgement (``after_send_*``): a
reply costs the homeserver two sends and two sync wake-ups, and on a small machine those, not the
bot, are most of the total.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.chat import Bot
from hiclaw_bot.chat.say import Conversation
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, SharedSecretRegistration
from hiclaw_bot.config import load_config
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


async def serve_bot(config_path: str) -> None:
    """The bot's own process (``--bot CONFIG``): a person's client and the bot never share a process."""
    config = load_config(config_path)
    store = await Store.open(config.database_path)
    engine = Engine(store)
    bot = Bot(config, store, engine)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await engine.start()
    await bot.start()
    print("ready", flush=True)
    await stopping.wait()
    await bot.stop()
    await engine.stop()
    await store.close()


def write_config(data: Path, server: LocalSynapse, bot_password: str, admin: str) -> Path:
    path = data / "config.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the bot's password
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump({
            "data_dir": str(data),
            "matrix": {"homeserver": server.url, "server_name": server.server_name,
                       "bot": {"password": bot_password}, "admins": [admin],
                       "registration": {"mode": "token", "token": "unused"}},
            "storage": {"kind": "local", "directory": str(data / "objects")},
        }, handle)
    return path


async def measure(server: LocalSynapse, user_id: str, user_token: str, bot_id: str) -> list[tuple[float, float]]:
    """Per command: (ms until the user's send was acknowledged, ms until the answer was seen)."""
    async with Conversation(server.url, user_id, bot_id) as talk:
        await talk.login(access_token=user_token)
        await talk.open()
        samples: list[tuple[float, float]] = []
        for index in range(WARMUP + COMMANDS):
            started = time.monotonic()
            event_id = await talk.send("!help")
            acknowledged = time.monotonic()
            first = None
            async for message in talk.replies(event_id, within=30):
                first = first or message
            assert first is not None
            if index >= WARMUP:
                samples.append(((acknowledged - started) * 1000, (first.seen_at - started) * 1000))
    return samples


async def main() -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        async with LocalSynapse(data / "synapse", bcrypt_rounds=4) as server:
            bot_password, user_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
            await pause_background_updates(server, await register(server, "hiclaw-bot", bot_password, admin=True))
            user_token = await register(server, "alice", user_password)
            user_id, bot_id = f"@alice:{server.server_name}", f"@hiclaw-bot:{server.server_name}"
            config_path = write_config(data, server, bot_password, user_id)
            bot = await asyncio.create_subprocess_exec(sys.executable, __file__, "--bot", str(config_path),
                                                       stdout=asyncio.subprocess.PIPE)
            try:
                assert bot.stdout is not None
                if (await asyncio.wait_for(bot.stdout.readline(), 60)).strip() != b"ready":
                    raise RuntimeError("the bot did not start")
                samples = await measure(server, user_id, user_token, bot_id)
            finally:
                if bot.returncode is None:
                    bot.terminate()
                await bot.wait()
    replies = [reply for _, reply in samples]
    sends = [send for send, _ in samples]
    after_send = [reply - send for send, reply in samples]
    return {
        "commands": len(samples),
        "reply_p50_ms": round(statistics.median(replies), 1),
        "reply_p95_ms": round(percentile(replies, 0.95), 1),
        "reply_max_ms": round(max(replies), 1),
        "user_send_p50_ms": round(statistics.median(sends), 1),
        "after_send_p50_ms": round(statistics.median(after_send), 1),
        "after_send_p95_ms": round(percentile(after_send, 0.95), 1),
        "target_p95_ms": 150,
        "synapse_background_updates": "paused",
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    if sys.argv[1:2] == ["--bot"]:
        asyncio.run(serve_bot(sys.argv[2]))
    else:
        print(json.dumps(asyncio.run(main())))
