"""A child process for the human crash tests: the real human flows on real services.

Usage: ``python -m tests.chaos.human_app CONFIG_JSON MODE [NAME ...]``, with the bot's access token
in ``HICLAW_TEST_BOT_TOKEN`` and an optional fault in ``HICLAW_FAULT``.

* ``create`` / ``delete`` submit ``human.<MODE>`` for each name (team level, team ``red``, welcome
  mail to ``<name>@example.org``, or with ``HICLAW_TEST_DM=ROOM`` the credentials in that room)
  *without* resuming anything a killed predecessor left, so a fault always strikes this
  process's own operation;
* ``resume`` only resumes every unfinished operation, all at once.

It exits 0 when every operation it ran succeeded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from hiclaw_bot.app import open_services
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, RetryPolicy, hook_from_env
from hiclaw_bot.flows import human as flows
from storage import Store


async def main(config_path: str, mode: str, humans: list[str]) -> int:
    config = Config.model_validate(json.loads(Path(config_path).read_text()))  # noqa: ASYNC240 -- once, at start
    store = await Store.open(config.database_path)
    engine = Engine(store, boundary_hook=hook_from_env(), retry=RetryPolicy(max_attempts=4, initial=0.05))
    async with open_services(config, store, bot_token=os.environ["HICLAW_TEST_BOT_TOKEN"]) as services:
        flows.register_human_flows(engine, services)
        if mode == "resume":
            op_ids = await engine.start()
        else:
            op_ids = []
            dm = os.environ.get("HICLAW_TEST_DM")
            for name in humans:
                params = {"name": name, "level": "team", "teams": ["red"],
                          "email": None if dm else f"{name}@example.org"}
                submitted = await engine.submit(f"human.{mode}", flows.subject(name), params, room_id=dm,
                                                actor=str(services.bot_user_id) if dm else None)
                op_ids.append(submitted.op.op_id)
        ops = [await engine.wait(op_id) for op_id in op_ids]
        await engine.stop()
    await store.close()
    for op in ops:
        print(f"op {op.op_id} {op.subject} {op.state} {op.failed_step or ''} {op.error or ''}")
    return 0 if all(op.state == "succeeded" for op in ops) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
