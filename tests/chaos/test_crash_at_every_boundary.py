"""SIGKILL a real process at every step boundary; after a restart every object exists once.

The object server is real HTTP and answers 409 to a second create of the same name, so a step
whose ``do`` ran twice would show up both as a 409 and as a creation count above one.
"""

from __future__ import annotations

import itertools
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from hiclaw_bot.engine import BOUNDARIES
from storage import Store
from tests.chaos.harness import run_app

NAMES = ["room", "consumer", "config", "container"]


@dataclass
class ObjectServer:
    objects: dict[str, str] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    url: str = ""

    async def get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.objects:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response({"id": self.objects[name]})

    async def post(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.objects:
            self.conflicts[name] += 1
            return web.json_response({"error": "exists"}, status=409)
        self.creates[name] += 1
        self.objects[name] = f"obj-{name}-{len(self.objects)}"
        return web.json_response({"id": self.objects[name]}, status=201)


@pytest.fixture
async def server() -> AsyncIterator[ObjectServer]:
    state = ObjectServer()
    app = web.Application()
    app.router.add_get("/objects/{name}", state.get)
    app.router.add_post("/objects/{name}", state.post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def run_child(db: Path, url: str, env_extra: dict[str, str]) -> int:
    return await run_app("crash_app", str(db), url, *NAMES, env=env_extra, timeout=60)


@pytest.mark.parametrize(("step", "point"), list(itertools.product(NAMES, BOUNDARIES)))
async def test_kill_at_boundary_then_restart(server: ObjectServer, tmp_path: Path, step: str, point: str) -> None:
    db = tmp_path / "crash.db"
    marker = tmp_path / "killed"
    fault = {"HICLAW_FAULT": f"kill:{step}:{point}", "HICLAW_FAULT_MARKER": str(marker)}

    first = await run_child(db, server.url, fault)
    assert first == -signal.SIGKILL, "the fault must have killed the process"
    assert marker.exists()
    second = await run_child(db, server.url, fault)  # the marker keeps it from dying twice
    assert second == 0

    assert server.creates == {name: 1 for name in NAMES}, "every object exactly once"
    assert not server.conflicts, "no step's do ran again after its object existed"
    store = await Store.open(db)
    try:
        ops = await store.ops.find()
        assert [(op.state, op.source_event_id) for op in ops] == [("succeeded", "$crash-test")]
        steps = {s.name: s for s in await store.steps.of(ops[0].op_id)}
        assert all(s.status == "done" for s in steps.values())
        # Only the killed step may have entered do() twice, and only if killed before its call.
        for name, record in steps.items():
            expected = 2 if (name == step and point == "after_intent") else 1
            assert record.calls == expected, (name, record.calls)
        ledger = {r.external_name: (r.state, r.external_id) for r in await store.ledger.live("object")}
        assert ledger == {name: ("created", server.objects[name]) for name in NAMES}
    finally:
        await store.close()
