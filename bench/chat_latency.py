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
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chat_stack import ChatStack, bench_main, bot_process, chat_stack, percentile
from hiclaw_bot.chat import Bot
from hiclaw_bot.chat.say import Conversation
from hiclaw_bot.config import load_config
from hiclaw_bot.engine import Engine
from storage import Store

COMMANDS = 100
WARMUP = 5


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


async def measure(stack: ChatStack) -> list[tuple[float, float]]:
    """Per command: (ms until the user's send was acknowledged, ms until the answer was seen)."""
    async with Conversation(stack.server.url, stack.user_id, stack.bot_id) as talk:
        await talk.login(access_token=stack.user_token)
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
    async with chat_stack() as stack, bot_process(__file__, stack.write_config()):
        samples = await measure(stack)
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
    bench_main(main, serve_bot)
