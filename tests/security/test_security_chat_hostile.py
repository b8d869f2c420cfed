"""One message must not stall the bot: ``/healthz`` answers while hostile messages are handled.

The attack: a ``formatted_body`` that opens a pill to the bot and never closes it, followed by
~60 KiB; the old pill pattern backtracked quadratically on it, twice per message (non-commands
included), and the event loop stopped for seconds. Anyone in a room with the bot can send it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from hiclaw_bot.app import running
from hiclaw_bot.config import Config
from tests.integration.chat.conftest import ask, talking
from tests.security.conftest import ChatSetup, answer, app_config, healthz_ms

BULK = 60 * 1024
HOSTILE = [
    ('<a href="https://matrix.to/#/' + "x" * BULK, "HiClaw: !help"),
    ('<a href="https://matrix.to/#/@' + "a" * BULK + "'", "hello"),
    ("<" * BULK, "<" * 100),
    ("!help", "!help " + "x" * BULK),
]
HEALTHZ_LIMIT_MS = 500.0
"""A loaded CI machine's margin over bench/hostile_input.py's 100 ms target; the attack took ~20 s."""


async def poll_healthz(config: Config, stop: asyncio.Event) -> list[float]:
    samples: list[float] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            samples.append(await healthz_ms(session, config))
            await asyncio.sleep(0.01)
    return samples


async def test_hostile_messages_do_not_stall_the_bot(secure: ChatSetup, tmp_path: Path) -> None:
    config = app_config(secure, tmp_path)
    async with running(config), talking(secure, secure.admin) as talk:
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_healthz(config, stop))
        try:
            for formatted, body in HOSTILE:
                await talk.client.room_send(talk.room_id, "m.room.message",
                                            {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
                                             "formatted_body": formatted})
            # The bot answers after them, in order: it has handled them all by then.
            _, answers = await ask(talk, "!help", within=60)
            assert "!worker" in answer(answers)
        finally:
            stop.set()
            samples = await poller
        assert samples, "no /healthz sample was taken"
        assert max(samples) <= HEALTHZ_LIMIT_MS, f"/healthz took {max(samples):.0f} ms during the hostile messages"
