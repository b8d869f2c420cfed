"""Lifecycle unit tests: a real store in a temporary directory, a backend that only reports what
the test tells it, and services whose Matrix and gateway clients are never contacted."""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from backends import BackendError, WorkerState, WorkerStatus
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.clients.objectstore import LocalObjectStore
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Done, Engine, FakeClock, FuncStep, Outcome, StepContext
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker import REPAIR, SLEEP, UPDATE, WAKE
from hiclaw_bot.types import UserId
from storage import Operation, Store

DOMAIN = "example.org"
BOT = UserId(f"@hiclaw-bot:{DOMAIN}")


@dataclass
class ScriptedBackend:
    """Answers ``list()`` from ``statuses``; records every delete (the reconciler must make none)."""

    statuses: dict[str, WorkerStatus] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    broken: bool = False
    name: str = "scripted"

    def show(self, worker: str, state: WorkerState, spec_hash: str | None = None, detail: str = "") -> None:
        self.statuses[worker] = WorkerStatus(worker, state, "img", spec_hash, None, detail)

    async def list(self) -> builtins.list[WorkerStatus]:
        if self.broken:
            raise BackendError("scripted", "the engine does not answer")
        return list(self.statuses.values())

    async def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.statuses.pop(name, None)


class NoRooms:
    """A Matrix client of a bot that is in no room (the orphan inventory's only question to it)."""

    async def joined_rooms(self) -> set[str]:
        return set()


def make_config(tmp: Path) -> Config:
    return Config.model_validate({
        "data_dir": str(tmp / "data"),
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": DOMAIN, "bot": {"password": "not-used"},
                   "admins": ["@root:example.org"], "registration": {"mode": "token", "token": "not-used"}},
        "storage": {"kind": "local", "directory": str(tmp / "objects")},
    })


@dataclass
class Rig:
    store: Store
    engine: Engine
    services: Services
    backend: ScriptedBackend
    clock: FakeClock
    ran: list[Operation] = field(default_factory=list)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = await Store.open(tmp_path / "db.sqlite")
    clock = FakeClock(time.time())
    engine = Engine(store, clock=clock)
    backend = ScriptedBackend()
    services = Services(config=make_config(tmp_path), store=store, matrix=cast(MatrixAdmin, NoRooms()), gateway=None,
                        objects=LocalObjectStore(tmp_path / "objects"), backend=cast(Any, backend), bot_user_id=BOT)
    rig = Rig(store, engine, services, backend, clock)

    def noop(op: Operation) -> Sequence[FuncStep]:
        async def do(ctx: StepContext) -> Outcome:
            rig.ran.append(op)
            return Done()

        return [FuncStep("noop", do)]

    for kind in (WAKE, SLEEP, UPDATE, REPAIR):
        engine.register(kind, noop)
    yield rig
    await engine.stop()
    await store.close()


async def add_worker(store: Store, name: str, *, state: str = "Running", **fields: Any) -> None:
    fields.setdefault("backend", "scripted")
    await store.workers.insert(name, state=state, desired_state="Running",
                               image="img", model="m", spec={"name": name, "image": "img", "model": "m"},
                               user_id=f"@{name}:{DOMAIN}", **fields)
