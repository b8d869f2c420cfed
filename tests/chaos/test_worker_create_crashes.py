"""SIGKILL the bot between intent and call, and between call and commit, at every step of
``worker.create``; after a restart the worker exists exactly once in every system.

Counted at the servers: the worker's rooms on Synapse (admin API), the alias, the consumer and
its entries on every route allow list in the console simulator, the files in the object store,
the backend's runtimes, and the agent processes on this machine (a runtime orphaned by the
killed bot would be a second one).
"""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path

import pytest

from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.flows import names
from hiclaw_bot.types import RoomAlias, UserId
from tests.chaos.harness import POINTS, child_config, fault, run_app
from tests.fixtures.processes import runtimes
from tests.fixtures.synapse import SynapseEnv, unique

STEPS = ["secrets", "account", "room", "humans", "gateway_consumer", "gateway_auth", "config", "skills", "runtime",
         "ready", "record"]


def write_config(path: Path, synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp: Path, *,
                 preload: bool = True) -> None:
    """Agents are forked from the launcher, as in production (one interpreter start for every
    agent of the test), unless the test reads an agent's environment from /proc (``preload=False``:
    a forked agent's shows the launcher's)."""
    path.write_text(json.dumps(child_config(
        synapse, tmp, gateway, backend={"kind": "process", "instance": "crash", "process": {"preload": preload}},
        lifecycle={"ready_timeout": "40s"})))


async def run_child(config: Path, worker: str, env_extra: dict[str, str], token: str, kind: str = "create") -> int:
    return await run_app("worker_app", str(config), worker, kind, token=token, env=env_extra)


async def crash_then_finish(synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp: Path, worker: str,
                            kind: str, step: str, point: str) -> None:
    """Create the worker first (unless the crash is in the create), run ``worker.<kind>`` until the
    fault kills it at ``step``/``point``, then run it again to completion."""
    config = tmp / "config.json"
    write_config(config, synapse, gateway, tmp, preload=kind != "update")  # the update reads MOOD from /proc
    await kill_then_finish(config, synapse.admin_token, worker, kind, step, point)


async def kill_then_finish(config: Path, token: str, worker: str, kind: str, step: str, point: str) -> None:
    """With the child's ``config`` written: create the worker first (unless the crash is in the
    create), run ``worker.<kind>`` until the fault kills it, then run it again to completion."""
    kill = fault(f"worker.{kind}", step, point, config.parent / "killed")
    if kind != "create":
        assert await run_child(config, worker, {}, token) == 0
    assert await run_child(config, worker, kill, token, kind) == -signal.SIGKILL
    assert await run_child(config, worker, kill, token, kind) == 0


@pytest.mark.parametrize(("step", "point"), list(itertools.product(STEPS, POINTS)))
async def test_kill_the_bot_then_restart(synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp_path: Path,
                                         step: str, point: str) -> None:
    worker = unique("w")
    await crash_then_finish(synapse, gateway, tmp_path, worker, "create", step, point)

    user_id = UserId(f"@{worker}:{synapse.server_name}")
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                           access_token=synapse.admin_token) as admin:
        rooms = await admin.rooms_of(user_id)
        alias = RoomAlias(names.full_alias(names.worker_room_alias(worker), synapse.server_name))
        room_id = await admin.resolve_alias(alias)
    assert rooms == {room_id}, "exactly one room, the aliased one"
    consumer = names.consumer(worker)
    assert consumer in gateway.consumers
    for route, allowed in gateway.route_allow.items():
        assert allowed.count(consumer) == 1, route
    assert (tmp_path / "objects" / f"agents/{worker}/openclaw.json").exists()
    assert len(runtimes(tmp_path / "data", worker)) == 1, "one runtime: none orphaned by the killed bot"


UPDATE_STEPS = ["mark", "config", "runtime_update", "ready", "restore"]
DELETE_STEPS = ["mark", "leave_team", "remove_runtime", "remove_config", "remove_gateway_auth",
                "remove_gateway_consumer", "remove_room", "remove_account", "forget"]


@pytest.mark.parametrize(("step", "point"), list(itertools.product(UPDATE_STEPS, POINTS)))
async def test_kill_the_bot_during_an_update(synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp_path: Path,
                                             step: str, point: str) -> None:
    worker = unique("u")
    await crash_then_finish(synapse, gateway, tmp_path, worker, "update", step, point)
    agents = runtimes(tmp_path / "data", worker)
    assert len(agents) == 1, "one runtime after the update"
    assert agents[0].environ().get("MOOD") == "calm", "and it runs the new spec"


@pytest.mark.parametrize(("step", "point"), list(itertools.product(DELETE_STEPS, POINTS)))
async def test_kill_the_bot_during_a_delete(synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp_path: Path,
                                            step: str, point: str) -> None:
    worker = unique("d")
    await crash_then_finish(synapse, gateway, tmp_path, worker, "delete", step, point)

    async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                           access_token=synapse.admin_token) as admin:
        alias = RoomAlias(names.full_alias(names.worker_room_alias(worker), synapse.server_name))
        with pytest.raises(NotFoundError):
            await admin.resolve_alias(alias)
        assert await admin.rooms_of(UserId(f"@{worker}:{synapse.server_name}")) == set()
    consumer = names.consumer(worker)
    assert consumer not in gateway.consumers
    assert all(consumer not in allowed for allowed in gateway.route_allow.values())
    assert not (tmp_path / "objects" / f"agents/{worker}").exists() or \
        not any((tmp_path / "objects" / f"agents/{worker}").rglob("*.*"))
    assert runtimes(tmp_path / "data", worker) == []


WAKE_STEPS = ["start", "ready", "record", "notify"]
REPAIR_STEPS = ["runtime", "ready", "record"]


@pytest.mark.parametrize(("step", "point"), list(itertools.product(WAKE_STEPS, POINTS)))
async def test_kill_the_bot_during_a_wake_on_mention(synapse: SynapseEnv, gateway: HigressConsoleSimulator,
                                                     tmp_path: Path, step: str, point: str) -> None:
    worker = unique("m")
    await crash_then_finish(synapse, gateway, tmp_path, worker, "wake", step, point)
    assert len(runtimes(tmp_path / "data", worker)) == 1, "one runtime, awake"
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                           access_token=synapse.admin_token) as admin:
        alias = RoomAlias(names.full_alias(names.worker_room_alias(worker), synapse.server_name))
        messages = await admin.recent_messages(await admin.resolve_alias(alias), limit=50)
    pointers = [m for m in messages if "please read it" in str(m.content.get("body", ""))]
    assert len(pointers) == 1, "the worker is pointed at the missed message exactly once"
    [mention] = [m for m in messages if m.content.get("body") == f"@{worker}: are you there?"]
    assert pointers[0].content["m.relates_to"] == {"m.in_reply_to": {"event_id": mention.event_id}}


@pytest.mark.parametrize(("step", "point"), list(itertools.product(REPAIR_STEPS, POINTS)))
async def test_kill_the_bot_during_a_repair(synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp_path: Path,
                                            step: str, point: str) -> None:
    worker = unique("r")
    await crash_then_finish(synapse, gateway, tmp_path, worker, "repair", step, point)
    assert len(runtimes(tmp_path / "data", worker)) == 1, "one runtime again, none twice"


RESTART_STEPS = ["stop", "start", "ready", "record"]


@pytest.mark.parametrize(("step", "point"), list(itertools.product(RESTART_STEPS, POINTS)))
async def test_kill_the_bot_during_a_restart(synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp_path: Path,
                                             step: str, point: str) -> None:
    worker = unique("s")
    config = tmp_path / "config.json"
    write_config(config, synapse, gateway, tmp_path)
    assert await run_child(config, worker, {}, synapse.admin_token) == 0
    [before] = runtimes(tmp_path / "data", worker)
    kill = fault("worker.restart", step, point, tmp_path / "killed")
    assert await run_child(config, worker, kill, synapse.admin_token, "restart") == -signal.SIGKILL
    assert await run_child(config, worker, kill, synapse.admin_token, "restart") == 0
    [after] = runtimes(tmp_path / "data", worker)
    assert after.pid != before.pid, "a fresh process, and only one"
