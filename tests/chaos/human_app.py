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
import os
import sys

from hiclaw_bot.engine import hook_from_env
from hiclaw_bot.flows import human as flows
from tests.chaos.child import child, report


async def main(config_path: str, mode: str, humans: list[str]) -> int:
    async with child(config_path, hook_from_env()) as run:
        engine, services = run.engine, run.services
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
        return report([await engine.wait(op_id) for op_id in op_ids])


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
