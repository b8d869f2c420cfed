"""Human member creation on the local stack (real Synapse) with welcome mail to a local SMTP server.

Two teams with real rooms and three workers' rooms each stand ready. Measures 20 sequential
``human.create`` (team level, one team: account, display name, 4 invites, mail; p50/p95 wall),
the engine's overhead ratio — (wall − time inside external calls) / wall, from the per-step
timings the engine records — 10 concurrent creates (wall, failures, mails per human) and 20
sequential deletes (p50). Prints one JSON object as its last line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import statistics
import sys
import tempfile
import time
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiosmtpd.controller import Controller

from hiclaw_bot.app import App, running
from hiclaw_bot.devstack.stack import LocalStack
from hiclaw_bot.flows import human as flows

SEQUENTIAL = 20
CONCURRENT = 10
WORKERS_PER_TEAM = 3


class Inbox:
    def __init__(self) -> None:
        self.received: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(message_from_bytes(envelope.content))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def prepare_teams(app: App) -> None:
    for team in ("red", "blue"):
        room = await app.services.matrix.ensure_room(f"bench-team-{team}", name=f"Team: {team}")
        await app.store.teams.upsert(team, leader=f"{team}-lead", state="Active", room_id=room.room_id)
        for i in range(WORKERS_PER_TEAM):
            worker = f"{team}-w{i}"
            room = await app.services.matrix.ensure_room(f"bench-worker-{worker}", name=f"Worker: {worker}")
            await app.store.workers.insert(worker, backend="process", state="Running", desired_state="Running",
                                           team=team, room_id=room.room_id)


async def run(app: App, kind: str, name: str, params: dict[str, Any]) -> tuple[float, str, float]:
    """Run one operation; return wall ms, final state and the summed external ms of its steps."""
    started = time.perf_counter()
    submitted = await app.engine.submit(kind, flows.subject(name), {"name": name, **params})
    op = await app.engine.wait(submitted.op.op_id)
    wall = (time.perf_counter() - started) * 1000
    external = sum(s.external_ms for s in await app.store.steps.of(op.op_id))
    return wall, op.state, external


def create_params(name: str) -> dict[str, Any]:
    return {"level": "team", "teams": ["red"], "email": f"{name}@example.org"}


async def measure(app: App, inbox: Inbox) -> dict[str, object]:
    await prepare_teams(app)
    walls: list[float] = []
    ratios: list[float] = []
    for i in range(SEQUENTIAL):
        wall, state, external = await run(app, flows.CREATE, f"seq-{i}", create_params(f"seq-{i}"))
        assert state == "succeeded", state
        walls.append(wall)
        ratios.append(max(0.0, (wall - external) / wall))
    started = time.perf_counter()
    results = await asyncio.gather(*(run(app, flows.CREATE, f"par-{i}", create_params(f"par-{i}"))
                                     for i in range(CONCURRENT)), return_exceptions=True)
    concurrent_wall = (time.perf_counter() - started) * 1000
    failures = sum(1 for r in results if isinstance(r, BaseException) or r[1] != "succeeded")
    mails = [sum(1 for m in inbox.received if m["To"] == f"par-{i}@example.org") for i in range(CONCURRENT)]
    deletes = []
    for i in range(SEQUENTIAL):
        wall, state, _ = await run(app, flows.DELETE, f"seq-{i}", {})
        assert state == "succeeded", state
        deletes.append(wall)
    return {
        "creates": SEQUENTIAL,
        "human_create_p50_ms": round(statistics.median(walls), 1),
        "human_create_p95_ms": round(percentile(walls, 0.95), 1),
        "overhead_ratio": round(statistics.median(ratios), 4),
        "concurrent": CONCURRENT,
        "concurrent_wall_ms": round(concurrent_wall, 1),
        "concurrent_failures": failures,
        "mails_per_human": sorted(set(mails)),
        "human_delete_p50_ms": round(statistics.median(deletes), 1),
    }


async def main() -> dict[str, object]:
    logging.basicConfig(level=logging.ERROR)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with LocalStack(Path(tmp) / "stack", bcrypt_rounds=4) as stack:
                config = stack.config.model_copy(update={"mail": stack.config.mail.model_copy(update={
                    "enabled": True, "host": "127.0.0.1", "port": controller.port, "security": "none"})})
                async with running(config) as app:
                    return await measure(app, inbox)
    finally:
        controller.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
