"""A child process for the worker crash tests: the real worker flows on real services.

Usage: ``python -m tests.chaos.worker_app CONFIG_JSON WORKER KIND`` (``create``, ``update``,
``delete``, ``wake`` or ``repair``), with the bot's access token in ``HICLAW_TEST_BOT_TOKEN`` and the fault in
``HICLAW_FAULT``. It resumes an unfinished operation if a killed predecessor left one, else submits
``worker.KIND`` (a create runs ``$HICLAW_TEST_IMAGE``, default ``hiclaw/worker-agent:1``; an update
moves to image ``:2`` with a new variable; a wake follows a sleep and a
mention, as wake on mention does; a repair follows the runtime's deletion behind the bot's back);
exits 0 when it succeeded.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from hiclaw_bot.engine import Engine, hook_from_env
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import RoomId, WorkerPhase
from tests.chaos.child import child, report


async def main(config_path: str, worker: str, kind: str) -> int:
    async with child(config_path, hook_from_env()) as run:
        engine, services, store = run.engine, run.services, run.store
        flows.register_worker_flows(engine, services)
        resumed = await engine.start()
        if resumed:
            op_id = resumed[0]
        else:
            image = os.environ.get("HICLAW_TEST_IMAGE", "hiclaw/worker-agent:1")
            params: dict[str, Any] = {"name": worker, "model": "qwen-max", "image": image,
                                      "skills": ["file-sync"]}
            row = await store.workers.get(worker)
            if row is not None:
                params = {**row.spec, "model": row.model, "image": row.image, "name": worker}
            if kind == "update":
                params.update(image="hiclaw/worker-agent:2", env={"MOOD": "calm"})
            elif kind == "wake":
                params = await asleep_and_mentioned(engine, services, worker)
            elif kind == "repair":
                await services.backend.delete(worker)  # the runtime vanishes behind the bot's back
                params["state"] = WorkerPhase.RUNNING
            op_id = (await engine.submit(f"worker.{kind}", flows.subject(worker), params)).op.op_id
        return report([await engine.wait(op_id)])


async def asleep_and_mentioned(engine: Engine, services: Services, worker: str) -> dict[str, Any]:
    """Put the worker to sleep, mention it in its room: the params of the wake a mention starts."""
    sleep = await engine.submit(flows.SLEEP, flows.subject(worker), {"name": worker})
    assert (await engine.wait(sleep.op.op_id)).state == "succeeded"
    row = await services.store.workers.get(worker)
    assert row is not None
    assert row.room_id is not None
    room = RoomId(row.room_id)
    event_id = await services.matrix.send_text(room, f"@{worker}: are you there?", txn_id=f"mention-{worker}")
    return {"name": worker, "missed": {"room_id": room, "event_id": event_id, "sender": str(services.bot_user_id)}}


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3])))
