"""A provisioned worker (account, room, ``openclaw.json`` in a local object store) and its agent as a process.

The worker is set up the way the bot's flows do it: an account registered with the registration
token, a room created by the admin with the worker invited, and the files rendered by
:func:`~hiclaw_bot.flows.worker_config.render_worker_config` pushed under ``agents/<name>/``. The
agent then runs as a real subprocess with only the environment the backends give it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from hiclaw_bot.agent.env import LocalStorage, worker_env
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, RoomEvent
from hiclaw_bot.clients.objectstore import LocalObjectStore
from hiclaw_bot.flows.worker_config import WorkerConfigSpec, render_worker_config
from hiclaw_bot.types import EventId, RoomId, UserId, WorkerName
from tests.fixtures.synapse import SynapseEnv, unique

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, what: str) -> T:
    """Poll ``probe`` until it returns something other than None, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def send_text(synapse: SynapseEnv, room_id: RoomId, content: dict[str, Any], *, token: str) -> EventId:
    """Send an ``m.room.message`` as the owner of ``token`` (the admin client only sends notices)."""
    url = f"{synapse.url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as http, http.put(
        url, json=content, headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200, await response.text()
        return EventId((await response.json())["event_id"])


async def matrix_post(synapse: SynapseEnv, path: str, body: dict[str, Any], *, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.post(f"{synapse.url}{path}", json=body,
                                                          headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def replies_to(events: list[RoomEvent], event_id: EventId, sender: UserId) -> list[RoomEvent]:
    return [e for e in events if e.sender == sender
            and e.content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id]


@dataclass
class Worker:
    """A provisioned worker: its account, its room and its object store."""

    name: WorkerName
    user_id: UserId
    password: str = field(repr=False)
    access_token: str = field(repr=False)
    room_id: RoomId
    store: LocalObjectStore
    spec: WorkerConfigSpec

    async def push_config(self, spec: WorkerConfigSpec) -> None:
        for path, data in render_worker_config(spec).files.items():
            await self.store.put(f"agents/{self.name}/{path}", data)
        self.spec = spec

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", os.defpath),
                **worker_env(LocalStorage(self.store.root), self.name)}


@pytest.fixture
async def admin(synapse: SynapseEnv) -> AsyncIterator[MatrixAdmin]:
    async with synapse.admin_client() as client:
        yield client


@pytest.fixture
async def worker(synapse: SynapseEnv, admin: MatrixAdmin, tmp_path: Path) -> Worker:
    """A worker named ``alice-<random>`` whose only allowed sender is the session's admin."""
    name = WorkerName(unique("alice"))
    password = secrets.token_urlsafe(16)
    user = await admin.ensure_user(name, password)
    room = await admin.ensure_room(unique("hiclaw-worker"), name=f"Worker {name}", invite=[user.user_id])
    spec = WorkerConfigSpec(worker=name, homeserver_url=synapse.url, user_id=user.user_id,
                            access_token=user.access_token, room_id=room.room_id,
                            allowed_senders=(synapse.admin_user_id,), model="qwen-max",
                            gateway_url="http://127.0.0.1:9", gateway_key=secrets.token_urlsafe(16))
    created = Worker(name, user.user_id, password, user.access_token, room.room_id,
                     LocalObjectStore(tmp_path / "objects"), spec)
    await created.push_config(spec)
    return created


class AgentProcess:
    """``python -m hiclaw_bot.agent`` with a worker's environment; its stdout goes to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hiclaw_bot.agent", env=self._env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the process took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 10)
        return code, time.monotonic() - started

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


@pytest.fixture
async def run_agent(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, str]], Awaitable[AgentProcess]]]:
    """Start agents with a given environment; any still running at the end are killed."""
    started: list[AgentProcess] = []

    async def start(env: dict[str, str]) -> AgentProcess:
        agent = AgentProcess(env, tmp_path / f"agent-{len(started)}.log")
        started.append(agent)
        await agent.start()
        return agent

    yield start
    for agent in started:
        await agent.kill()
