"""Hostile input: messages built to make the bot's parsing slow, sent through the real bot.

Starts its own Synapse (``LocalSynapse`` in a temporary directory), registers the bot and a user,
runs the whole app (``hiclaw_bot.app.running``: chat, engine, API) in a process of its own, and has
the user send a set of ~60 KiB hostile messages in their direct room: unclosed pills, unclosed
quotes, thousands of ``<``, a command line too long to be one, a wall of reply-fallback lines.
Meanwhile ``/healthz`` is asked every 5 ms; the run ends when the bot has answered a ``!help`` sent
after them (it handles a room's messages in order). Each shape is also timed through the grammar
(``command_text`` then ``parse``, what the bot runs on every message) in this process; a few
more shapes sit just under the size cap, where a command line is still split.

Prints one JSON object (last line): ``worst_parse_ms`` (target ≤ 5), ``healthz_max_ms`` (target
≤ 100), ``healthz_samples`` and ``messages``.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from pathlib import Path

import aiohttp
import nio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chat_stack import ChatStack, bench_main, bot_process, chat_stack, free_port
from hiclaw_bot.app import running
from hiclaw_bot.chat.grammar import MAX_MESSAGE_CHARS, BotIdentity, command_text, parse
from hiclaw_bot.chat.say import Conversation
from hiclaw_bot.config import load_config

BULK = 60 * 1024
CAP = MAX_MESSAGE_CHARS
PARSE_ROUNDS = 20


def hostile(bot_id: str) -> list[tuple[str, str | None]]:
    """``(body, formatted_body)`` pairs, each about 60 KiB (one Matrix event holds at most 64 KiB)."""
    pill = f'<a href="https://matrix.to/#/{bot_id}">HiClaw</a>: '
    return [
        ("HiClaw: !help", '<a href="https://matrix.to/#/' + "x" * BULK),
        ("hello", "<a href='https://matrix.to/#/@" + "a" * BULK),
        ("hello", '<a href="https://matrix.to/#/@x:y' + "?" * BULK),
        ("hello", "<" * BULK),
        ("hello", "<a " * (BULK // 3)),
        ("HiClaw: !help", pill + "<b>" * (BULK // 3)),
        ("!help " + "x" * BULK, None),
        ('!worker create "' + "a" * BULK, None),
        ("!worker list " + "a " * (BULK // 2), None),
        ("> " + "> quoted\n" * (BULK // 10), None),
        ("HiClaw: " * (BULK // 8), None),
        ("\u201c" * (BULK // 3), None),
        # Just under the cap on what is read as a command: these are parsed, not refused for size.
        ("!worker list " + "a " * (CAP // 2 - 8), None),
        ('!worker create "' + "a" * (CAP - 20), None),
        ("!worker create " + "\\a" * (CAP // 2 - 10), None),
        ("!worker create " + "'a' " * (CAP // 4 - 5), None),
    ]


def worst_parse_ms(bot_id: str) -> float:
    """The slowest hostile message through the grammar, best of a few rounds (in ms)."""
    identity = BotIdentity(bot_id, "HiClaw")
    worst = 0.0
    for body, formatted in hostile(bot_id):
        best = float("inf")
        for _ in range(PARSE_ROUNDS):
            started = time.perf_counter()
            text = command_text(body, identity, formatted)
            if text is not None and len(body) <= MAX_MESSAGE_CHARS:  # as the dispatcher: longer is refused unread
                parse(text)
            best = min(best, time.perf_counter() - started)
        worst = max(worst, best * 1000)
    return worst


async def serve_bot(config_path: str) -> None:
    """The bot's own process (``--bot CONFIG``): the whole app, API included."""
    config = load_config(config_path)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    async with running(config):
        print("ready", flush=True)
        await stopping.wait()


async def poll(listen: str, stop: asyncio.Event) -> list[float]:
    samples: list[float] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.perf_counter()
            async with session.get(f"http://{listen}/healthz") as response:
                response.raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)
    return samples


async def attack(stack: ChatStack, listen: str) -> list[float]:
    async with Conversation(stack.server.url, stack.user_id, stack.bot_id) as talk:
        await talk.login(access_token=stack.user_token)
        room = await talk.open()
        stop = asyncio.Event()
        poller = asyncio.create_task(poll(listen, stop))
        try:
            for body, formatted in hostile(stack.bot_id):
                content = {"msgtype": "m.text", "body": body}
                if formatted is not None:
                    content |= {"format": "org.matrix.custom.html", "formatted_body": formatted}
                sent = await talk.client.room_send(room, "m.room.message", content)
                if not isinstance(sent, nio.RoomSendResponse):
                    raise RuntimeError(f"the homeserver refused a hostile message: {sent}")
            event_id = await talk.send("!help")
            answered = [m async for m in talk.replies(event_id, within=60)]
            if not answered:
                raise RuntimeError("the bot did not answer after the hostile messages")
        finally:
            stop.set()
            samples = await poller
    return samples


async def main() -> dict[str, float | int]:
    listen = f"127.0.0.1:{free_port()}"
    async with chat_stack() as stack:
        config = stack.write_config(api={"enabled": True, "listen": listen, "token": secrets.token_hex(32)})
        async with bot_process(__file__, config):
            samples = await attack(stack, listen)
    bot_id = stack.bot_id
    return {
        "messages": len(hostile(bot_id)),
        "message_bytes_max": max(len(b.encode()) + len((f or "").encode()) for b, f in hostile(bot_id)),
        "worst_parse_ms": round(worst_parse_ms(bot_id), 3),
        "target_parse_ms": 5,
        "healthz_max_ms": round(max(samples), 1),
        "healthz_samples": len(samples),
        "target_healthz_ms": 100,
    }


if __name__ == "__main__":
    bench_main(main, serve_bot)
