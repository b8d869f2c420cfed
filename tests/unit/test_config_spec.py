"""A worker's files are the same whichever path writes them: the ``config`` step of its own
operation (from the operation's params) or :func:`push_config` (from its row, when a team or a
human changes around it). The two once built the spec apart and drifted."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hiclaw_bot.config import Config
from hiclaw_bot.engine import StepContext
from hiclaw_bot.flows.params import WorkerParams
from hiclaw_bot.flows.rendering import WriteConfig, push_config
from hiclaw_bot.flows.worker_steps import ACCESS_TOKEN, GATEWAY_KEY
from hiclaw_bot.types import Role, WorkerPhase
from storage import Operation, Store


class Objects:
    """An object store that keeps what is written to it."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes) -> bool:
        changed = self.files.get(key) != data
        self.files[key] = data
        return changed

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        if key in self.files:
            return False
        self.files[key] = data
        return True


def config() -> Config:
    return Config.model_validate({
        "matrix": {"homeserver": "http://127.0.0.1:8008", "server_name": "example.org",
                   "worker_homeserver": "http://synapse:8008", "bot": {"password": "x"},
                   "admins": ["@root:example.org"], "registration": {"mode": "token", "token": "x"}},
        "gateway": {"kind": "higress", "console_url": "http://127.0.0.1:8001", "password": "x",
                    "gateway_url": "http://127.0.0.1:8080", "worker_gateway_url": "http://gateway:8080",
                    "mcp_servers": ["search"]},
        "storage": {"kind": "local", "directory": "objects"},
        "backend": {"kind": "process"},
    })


def op(worker: str, params: dict[str, Any]) -> Operation:
    return Operation(op_id=1, kind="worker.update", subject=f"worker:{worker}", params=params, actor=None,
                     room_id=None, source_event_id=None, state="running", error=None, failed_step=None,
                     progress_event_id=None, created_at=0.0, updated_at=0.0, finished_at=None)


async def add_worker(store: Store, name: str, params: dict[str, Any], *, room: str) -> None:
    await store.workers.insert(name, backend="process", state=WorkerPhase.RUNNING, desired_state=WorkerPhase.RUNNING,
                               team=params.get("team"), role=params.get("role", Role.WORKER), image=params["image"],
                               model=params["model"], spec=params, user_id=f"@{name}:example.org")
    await store.workers.update(name, room_id=room)
    await store.secrets.put(f"worker:{name}", ACCESS_TOKEN, f"token-of-{name}")
    await store.secrets.put(f"worker:{name}", GATEWAY_KEY, f"key-of-{name}")


@pytest.mark.parametrize("role", [Role.TEAM_LEADER, Role.WORKER])
async def test_the_config_step_and_push_config_write_the_same_files(store: Store, role: Role) -> None:
    params: dict[str, Any] = {
        "name": "lead", "model": "qwen-max", "image": "img", "runtime": "openclaw", "team": "red",
        "leader": "lead" if role is Role.TEAM_LEADER else "boss", "role": role,
        "skills": ["file-sync"], "mcp": ["search"],
    }
    await store.teams.upsert("red", leader="lead", state="Active", spec={})
    await add_worker(store, "lead", params, room="!lead:example.org")
    await add_worker(store, "member", {"name": "member", "model": "qwen-max", "image": "img", "team": "red"},
                     room="!member:example.org")
    ctx = StepContext(op("lead", params), store, {})
    by_step, by_push = Objects(), Objects()

    await WriteConfig(SimpleNamespace(config=config(), domain="example.org", objects=by_step),  # type: ignore[arg-type]
                      "lead", WorkerParams.of(params)).do(ctx)
    await push_config(SimpleNamespace(config=config(), domain="example.org", objects=by_push),  # type: ignore[arg-type]
                      ctx, "lead")

    assert by_step.files == by_push.files
    openclaw = by_step.files["agents/lead/openclaw.json"].decode()
    assert "http://synapse:8008" in openclaw
    assert "http://gateway:8080" in openclaw
    assert ("member" in by_step.files["agents/lead/AGENTS.md"].decode()) is (role is Role.TEAM_LEADER)
