"""What only the process backend promises: a restarted bot adopts its workers (and only them),
nothing of the bot's environment leaks in, stops escalate, and nothing is left as a zombie."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from backends.base import WorkerSpec, WorkerState
from backends.errors import InvalidSpec
from backends.process import ProcessBackend
from backends.process_identity import identify
from tests.fixtures.backends import WORKER_COMMAND, eventually, owned, unique


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ProcessBackend]:
    async with owned(ProcessBackend("bot", tmp_path, settle_seconds=0.3, stop_timeout=2)) as backend:
        yield backend


def worker(name: str, command: list[str] | None = WORKER_COMMAND, **env: str) -> WorkerSpec:
    return WorkerSpec(name, "recorded-only:1", command, env or {"GREETING": "hello"})


def state(backend: ProcessBackend, name: str) -> dict[str, object]:
    return dict(json.loads((backend._root / name / "state.json").read_text()))


async def until_dead(pid: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Until ``pid`` has exited (a zombie counts: it runs nothing)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"process {pid} still runs {timeout:g}s after SIGKILL")


def no_zombie_children() -> bool:
    return all(child.status() != psutil.STATUS_ZOMBIE for child in psutil.Process().children(recursive=True))


async def test_a_restarted_bot_adopts_running_workers(tmp_path: Path, backend: ProcessBackend) -> None:
    name = unique()
    await backend.create(worker(name))
    await backend.start(name)
    before = await backend.status(name)
    await backend.close()

    restarted = ProcessBackend("bot", tmp_path, stop_timeout=2)
    after = await restarted.status(name)
    assert (after.state, after.started_at, after.spec_hash) == (WorkerState.RUNNING, before.started_at,
                                                                before.spec_hash)
    assert (await restarted.create(worker(name))).adopted
    await restarted.start(name)  # already running: no second process
    assert state(restarted, name)["pid"] == state(backend, name)["pid"]
    pid = int(str(state(restarted, name)["pid"]))
    await restarted.stop(name)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def started(backend: ProcessBackend) -> tuple[str, Path, str]:
    """A new worker, started: its name, its state file and that file's text, to forge and restore."""
    name = unique()
    await backend.create(worker(name))
    await backend.start(name)
    path = backend._root / name / "state.json"
    return name, path, path.read_text()


async def test_a_reused_pid_is_not_adopted(backend: ProcessBackend) -> None:
    """Same pid, other start time: some other process now has the pid. Never signal it."""
    name, path, genuine = await started(backend)
    forged = json.loads(genuine)
    forged["start_ticks"] -= 1000
    path.write_text(json.dumps(forged))
    assert (await backend.status(name)).state == WorkerState.FAILED
    await backend.stop(name)  # must not touch the process behind that pid
    assert psutil.Process(forged["pid"]).is_running()
    path.write_text(genuine)
    await backend.stop(name)
    assert (await backend.status(name)).state == WorkerState.STOPPED


async def test_a_worker_stays_itself_when_the_clock_is_stepped(backend: ProcessBackend) -> None:
    """The boot time the kernel reports moves by whole seconds when the clock is stepped, and a
    wall-clock start time with it: the record of start ticks since boot does not, and a state
    written before those were kept is judged with a second's slack."""
    name, path, genuine = await started(backend)
    stepped = json.loads(genuine)
    stepped["create_time"] += 1.0  # as read after the kernel's boot time moved by a second
    path.write_text(json.dumps(stepped))
    assert (await backend.status(name)).state == WorkerState.RUNNING
    older = {key: value for key, value in stepped.items() if key not in ("start_ticks", "boot_id")}
    path.write_text(json.dumps(older))
    assert (await backend.status(name)).state == WorkerState.RUNNING
    older["create_time"] -= 1000
    path.write_text(json.dumps(older))
    assert (await backend.status(name)).state == WorkerState.FAILED
    path.write_text(genuine)
    await backend.stop(name)
    assert (await backend.status(name)).state == WorkerState.STOPPED


async def test_state_is_private_and_the_bot_environment_does_not_leak(backend: ProcessBackend,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HICLAW_BOT_SECRET", "bot-only")
    name = unique()
    await backend.create(worker(name, TOKEN="worker-token"))
    await backend.start(name)
    directory = backend._root / name
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "state.json").stat().st_mode) == 0o600
    result = await backend.exec(name, ["sh", "-c", "echo ${HICLAW_BOT_SECRET:-absent} $TOKEN; pwd"], 5)
    assert result.stdout == f"absent worker-token\n{directory / 'work'}\n"


async def test_stop_escalates_to_sigkill_and_reaps(tmp_path: Path) -> None:
    backend = ProcessBackend("bot", tmp_path, stop_timeout=0.3)
    name = unique()
    deaf = ["sh", "-c", "trap '' TERM; echo deaf; while true; do sleep 0.1; done"]
    await backend.create(worker(name, deaf))
    await backend.start(name)
    pid = int(str(state(backend, name)["pid"]))
    await backend.stop(name)
    assert (await backend.status(name)).state == WorkerState.STOPPED
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    await backend.delete(name)
    assert no_zombie_children()


async def test_a_crashed_worker_is_failed_with_its_exit_code(backend: ProcessBackend) -> None:
    name = unique()
    await backend.create(worker(name, ["sh", "-c", "exit 5"]))
    await backend.start(name)
    status = await eventually(lambda: backend.status(name), lambda found: found.state != WorkerState.RUNNING)
    assert (status.state, status.detail) == (WorkerState.FAILED, "exited with code 5")
    await backend.start(name)  # a failed worker can be started again


async def test_default_command(tmp_path: Path) -> None:
    backend = ProcessBackend("bot", tmp_path, default_command=[sys.executable, "-c", "print('default')"])
    name = unique()
    await backend.create(worker(name, None))
    await backend.start(name)
    assert await eventually(lambda: backend.logs(name), lambda text: bool(text)) == "default\n"
    status = await eventually(lambda: backend.status(name), lambda found: found.state != WorkerState.RUNNING)
    assert (status.state, status.detail) == (WorkerState.STOPPED, "exited with code 0")
    with pytest.raises(InvalidSpec, match="no command"):
        await ProcessBackend("bare", tmp_path).create(worker(unique(), None))
    await backend.delete(name)


@pytest.mark.parametrize("recorded", ["start ticks", "wall clock only"])
async def test_an_interrupted_update_is_settled(tmp_path: Path, backend: ProcessBackend, recorded: str) -> None:
    """The bot died during an update's settle period: with the old process gone the new one is
    promoted; with both alive the new one is stopped. Also when the attempt was recorded by a
    version that kept only the wall-clock start time."""
    name = unique()
    await backend.create(worker(name))
    await backend.start(name)
    new = worker(name, GREETING="bonjour")
    for old_alive in (False, True):
        record = state(backend, name)
        pending = await asyncio.create_subprocess_exec("sleep", "600", start_new_session=True)
        identity = identify(pending.pid) if recorded == "start ticks" else \
            {"pid": pending.pid, "create_time": psutil.Process(pending.pid).create_time()}
        record["next"] = {**identity, "started_at": record["started_at"], "exit_code": None,
                          "spec": {"name": name, "image": new.image, "command": list(WORKER_COMMAND),
                                   "env": dict(new.env), "labels": {}, "resources": None}}
        if not old_alive:
            old = int(str(record["pid"]))
            os.killpg(old, signal.SIGKILL)
            # A signal is delivered, not awaited: under load the killed process still runs for a
            # moment, and the restarted backend would rightly see both alive and stop the new one.
            await until_dead(old)
        (backend._root / name / "state.json").write_text(json.dumps(record))
        restarted = ProcessBackend("bot", tmp_path, stop_timeout=2)
        await restarted.start(name)
        status = await restarted.status(name)
        if old_alive:
            assert await asyncio.wait_for(pending.wait(), 5) is not None
            assert status.spec_hash == worker(name).spec_hash
        else:
            assert (state(restarted, name)["pid"], status.spec_hash) == (pending.pid, new.spec_hash)
            await restarted.update(name, worker(name))  # back to the original spec for the second round
            await asyncio.wait_for(pending.wait(), 5)
        assert "next" not in state(restarted, name)
