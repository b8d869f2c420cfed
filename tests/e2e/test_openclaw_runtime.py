"""A real OpenClaw worker (from npm, ``scripts/install-openclaw.sh``) driven from chat, end to end:
real Synapse, the process backend, the gateway simulator's echo model behind key-auth.

One worker's whole life in one test, because OpenClaw takes ~20 s to start on this machine:
create → ready by ``openclaw gateway health`` → a mention answered through the model → sleep →
woken by a mention → answers again → model update used → route authorization removed: 401 and
``!worker status`` says so → delete leaves nothing (no process, no files, no consumer).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hiclaw_bot.clients.higress import HigressClient
from storage import Store
from tests.e2e.openclaw_chat import answer_from, join, mention, no_worker_left_behind, openclaw_app
from tests.fixtures.processes import worker_processes
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import ChatSetup, ask, final_text

__all__ = ["no_worker_left_behind"]  # the autouse fixture, imported to apply here


@pytest.mark.timeout(1200)  # OpenClaw takes ~1 min to start on two shared cores, a few times here
async def test_openclaw_worker_from_chat(setup: ChatSetup, tmp_path: Path) -> None:
    async with openclaw_app(setup, tmp_path) as world:
        setup, gateway, app, talk = world.setup, world.gateway, world.app, world.talk
        worker = unique("oc")
        user_id = f"@{worker}:{setup.synapse.server_name}"
        consumer = f"worker-{worker}"

        # 1. Created, and ready only once OpenClaw's own health check says so.
        _, answers = await ask(talk, f"!worker create {worker} --runtime openclaw", within=300)
        assert final_text(answers).startswith("✓"), final_text(answers)
        row = await app.store.workers.get(worker)
        assert row is not None
        assert row.room_id is not None
        assert row.spec.get("runtime") == "openclaw"
        room = row.room_id
        processes = worker_processes(tmp_path / "data", worker)
        assert any(p.name() == "node" or "openclaw" in " ".join(p.cmdline()) for p in processes)

        # 2. A mention is answered by OpenClaw, through the gateway's model, with the worker's key.
        await join(setup, setup.admin, room)
        gateway.models.script("first question", "first answer from the echo model")
        await mention(setup, setup.admin, room, user_id, "first question, please")
        try:
            await answer_from(setup, setup.admin, room, user_id, "first answer from the echo model")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; model calls: {gateway.models.calls}") from None
        answered = [c for c in gateway.models.calls if c.status == 200 and "first question" in c.prompt]
        assert answered, gateway.models.calls
        assert {(c.consumer, c.model) for c in answered} == {(consumer, "qwen-max")}

        # 3. Asleep, then woken by a mention; it answers again.
        _, answers = await ask(talk, f"!worker sleep {worker}", within=60)
        assert final_text(answers).startswith("✓"), final_text(answers)
        assert (await app.services.backend.status(worker)).state.value == "stopped"
        assert worker_processes(tmp_path / "data", worker) == [], "the stop killed OpenClaw, however long it drains"
        await mention(setup, setup.admin, room, user_id, "wake up")
        await _wait_state(app.store, worker, "Running")
        gateway.models.script("second question", "second answer after the wake")
        await mention(setup, setup.admin, room, user_id, "second question")
        await answer_from(setup, setup.admin, room, user_id, "second answer after the wake")

        # 4. A new model: the worker's next call uses it.
        _, answers = await ask(talk, f"!worker update {worker} --model qwen-plus", within=300)
        assert final_text(answers).startswith("✓"), final_text(answers)
        gateway.models.script("third question", "third answer on the new model")
        await mention(setup, setup.admin, room, user_id, "third question")
        await answer_from(setup, setup.admin, room, user_id, "third answer on the new model")
        third = [c for c in gateway.models.calls if c.status == 200 and "third question" in c.prompt]
        assert {c.model for c in third} == {"qwen-plus"}

        # 5. Its consumer taken off the route (by hand, in the console): 401, and status says so.
        async with HigressClient(gateway.url, "admin", gateway.password) as console:
            await console.deauthorize(consumer, "all")
        before = len(gateway.models.calls)
        await mention(setup, setup.admin, room, user_id, "fourth question")
        await _wait_for(lambda: any(c.status == 401 and c.consumer == consumer
                                    for c in gateway.models.calls[before:]))
        _, answers = await ask(talk, f"!worker status {worker}")
        assert f"{consumer} is not authorized on AI route(s) default" in final_text(answers), final_text(answers)
        assert "401" in final_text(answers)

        # 6. Deleted: nothing left of it anywhere.
        _, answers = await ask(talk, f"!worker delete {worker}")
        code = re.search(r"!confirm ([A-Z0-9]+)", final_text(answers))
        assert code is not None, final_text(answers)
        _, answers = await ask(talk, f"!confirm {code.group(1)}", within=120)
        assert final_text(answers).startswith("✓"), final_text(answers)
        assert await app.services.backend.list() == []
        assert await app.store.workers.get(worker) is None
        assert consumer not in gateway.consumers
        assert worker_processes(tmp_path / "data", worker) == []
        assert await app.services.objects.list(f"agents/{worker}/") == []
        assert not any(path.name == worker for path in (tmp_path / "data").rglob(worker))


async def _wait_state(store: Store, worker: str, state: str, within: float = 240.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = await store.workers.get(worker)
        if row is not None and row.state == state:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{worker} did not reach {state} within {within:.0f}s")


async def _wait_for(condition: Callable[[], bool], within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not hold in time")
        await asyncio.sleep(0.5)
