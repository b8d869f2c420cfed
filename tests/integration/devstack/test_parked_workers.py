"""``hiclaw-bot dev`` parks its process workers when it stops and starts them again with it: real
worker processes on the process backend, under the data directory the stack's bot would use."""

from __future__ import annotations

from pathlib import Path

from backends import WorkerSpec, WorkerState
from hiclaw_bot.app import make_backend
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.workers import park, unpark
from tests.fixtures.backends import close_all
from tests.fixtures.processes import processes_under

LOOP = ["sh", "-c", "while true; do sleep 1; done"]


def make_config(tmp: Path) -> Config:
    return Config.model_validate({
        "data_dir": str(tmp / "bot"),
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "example.org", "bot": {"password": "unused"},
                   "admins": ["@root:example.org"], "registration": {"mode": "token", "token": "unused"}},
        "storage": {"kind": "local", "directory": str(tmp / "objects")},
        "backend": {"kind": "process", "process": {"grace_period": "2s"}},
    })


async def test_stopping_parks_running_workers_and_the_next_start_brings_back_those(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    backend = make_backend(config)
    try:
        for name in ("awake", "asleep", "deleted"):
            await backend.create(WorkerSpec(name, "none", LOOP, {}))
            await backend.start(name)
        await backend.stop("asleep")
        listed = {s.name: s for s in await backend.list()}
        assert {n for n, s in listed.items() if s.state is WorkerState.RUNNING} == {"awake", "deleted"}

        assert await park(config) == ["awake", "deleted"]
        assert {s.name: s.state for s in await backend.list()} == {
            "awake": WorkerState.STOPPED, "asleep": WorkerState.STOPPED, "deleted": WorkerState.STOPPED}
        assert processes_under(tmp_path) == []

        await backend.delete("deleted")  # deleted while the stack was down: nothing to bring back
        assert await unpark(config) == ["awake"]
        assert {s.name: s.state for s in await backend.list()} == {
            "awake": WorkerState.RUNNING, "asleep": WorkerState.STOPPED}
        assert await unpark(config) == []  # once: a start after a crash (nothing parked) starts nothing
    finally:
        await close_all(backend)
