"""The bot as a child process, for the tests that kill it with SIGKILL.

Usage: ``python -m tests.integration.chat.bot_app CONFIG_PATH``. Runs the store, the engine (with the
demo flow) and the bot from that configuration, prints ``ready`` once the first sync is handled,
and runs until killed or terminated. With ``HICLAW_TEST_KILL_BEFORE_RESULT=MARKER`` set, the process
SIGKILLs itself once (the marker file records it), the moment a finished operation's final message
is about to be sent: after the finish is committed, before anybody is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from hiclaw_bot.chat import Bot, default_registry, progress
from hiclaw_bot.chat.replies import JsonDict
from hiclaw_bot.config import load_config
from hiclaw_bot.engine import Engine, RetryPolicy
from storage import Store
from tests.integration.chat.demo import register_demo


def kill_before_the_first_result(marker: Path) -> None:
    tell = progress.result_txn_id

    def txn_id(op_id: int, content: JsonDict) -> str:
        if not marker.exists():
            marker.write_text(f"{op_id}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return tell(op_id, content)

    progress.result_txn_id = txn_id


async def main(config_path: str) -> None:
    if marker := os.environ.get("HICLAW_TEST_KILL_BEFORE_RESULT"):
        kill_before_the_first_result(Path(marker))
    config = load_config(config_path)
    store = await Store.open(config.database_path)
    engine = Engine(store, retry=RetryPolicy(max_attempts=2, initial=0.01))
    registry = default_registry()
    register_demo(engine, registry)
    bot = Bot(config, store, engine, registry=registry, sync_timeout=5.0)
    await engine.start()
    running = asyncio.create_task(bot.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.cancel)
    while not bot.ready:
        if running.done():
            running.result()
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await engine.stop()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
