"""A child process for the crash tests: runs one operation whose steps create named objects
on a real HTTP server, with the engine's boundary hook taken from ``HICLAW_FAULT``.

Usage: ``python -m tests.chaos.crash_app DB_PATH SERVER_URL STEP [STEP ...]``. It submits the
operation (or resumes it, when a previous run was killed), waits for it and exits 0 on success.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp

from hiclaw_bot.engine import Done, Engine, Outcome, ResourceRef, RetryPolicy, Step, StepContext, hook_from_env
from storage import Operation, Store
from tests.chaos.child import report


class CreateObject(Step):
    def __init__(self, http: aiohttp.ClientSession, url: str, name: str) -> None:
        self.http = http
        self.url = f"{url}/objects/{name}"
        self.name = name
        self.resource = ResourceRef("object", name)

    async def observe(self, ctx: StepContext) -> Outcome | None:
        async with self.http.get(self.url) as response:
            if response.status == 404:
                return None
            body: dict[str, Any] = await response.json()
            return Done({"id": body["id"]}, external_id=body["id"])

    async def do(self, ctx: StepContext) -> Outcome:
        async with ctx.external("objects"), self.http.post(self.url) as response:
            body: dict[str, Any] = await response.json()
            if response.status != 201:
                raise RuntimeError(f"create {self.name}: {response.status}")
            return Done({"id": body["id"]}, external_id=body["id"])


async def main(db_path: str, url: str, names: list[str]) -> int:
    store = await Store.open(db_path)
    async with aiohttp.ClientSession() as http:
        engine = Engine(store, boundary_hook=hook_from_env(), retry=RetryPolicy(max_attempts=2, initial=0.01))

        def build(op: Operation) -> list[Step]:
            return [CreateObject(http, url, name) for name in op.params["names"]]

        engine.register("objects.create", build)
        resumed = await engine.start()
        if resumed:
            op_id = resumed[0]
        else:
            op_id = (await engine.submit("objects.create", "objects:demo", {"names": names},
                                         source_event_id="$crash-test")).op.op_id
        op = await engine.wait(op_id)
        await engine.stop()
    await store.close()
    return report([op])


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
