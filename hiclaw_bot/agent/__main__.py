"""``python -m hiclaw_bot.agent``: the reference worker agent, as the bot's backends start it.

Exit codes: 0 after SIGTERM or SIGINT (a stop takes well under a second: the long-poll is
cancelled, pending activity is flushed within half a second), 1 when the agent cannot run (no
``openclaw.json``, an unreachable object store), 2 when the environment is incomplete.
Logs go to stdout, one line each; they name rooms and users, never a token or a key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from hiclaw_bot.agent.env import AgentEnv, EnvError, read_env
from hiclaw_bot.agent.files import open_store
from hiclaw_bot.agent.runner import Agent

logger = logging.getLogger("hiclaw_bot.agent")


async def _run_agent(env: AgentEnv) -> None:
    store = await open_store(env.storage)
    try:
        await Agent(env.worker, store).run()
    finally:
        await store.close()


async def _main(env: AgentEnv) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    agent = asyncio.create_task(_run_agent(env), name=f"agent-{env.worker}")
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    await asyncio.wait({agent, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not agent.done():
        logger.info("stopping: signal received")
        agent.cancel()
        try:
            await agent
        except asyncio.CancelledError:
            return 0
    error = agent.exception()
    logger.error("the agent stopped: %s", error if error is not None else "its loop ended")
    return 1


def main() -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.WARNING)
    try:
        env = read_env(os.environ)
    except EnvError as exc:
        logger.error("cannot start: %s", exc)
        sys.exit(2)
    logger.info("agent for worker %s starting", env.worker)
    sys.exit(asyncio.run(_main(env)))


if __name__ == "__main__":
    main()
