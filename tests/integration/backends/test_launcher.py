"""The process backend's pre-imported launcher: a start is a fork, and the child is still a worker
like any other (its own session, exactly its environment, its log, its uid, reaped when it exits)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from backends.base import WorkerSpec, WorkerState
from backends.forkserver import ForkServer
from backends.process import ProcessBackend
from tests.fixtures.backends import unique

LAUNCHER = [sys.executable, "-m", "hiclaw_bot.agent.launcher"]
AGENT = [sys.executable, "-m", "hiclaw_bot.agent"]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait for ``condition`` (a log line lands, a process goes) or fail saying so."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


def agent_spec(tmp_path: Path, name: str) -> WorkerSpec:
    """The reference agent on an empty local store: it waits for its config, and keeps running."""
    (tmp_path / "objects").mkdir(exist_ok=True)
    return WorkerSpec(name, "recorded-only:1", None, {
        "HICLAW_WORKER_NAME": name, "HICLAW_FS_KIND": "local", "HICLAW_FS_DIR": str(tmp_path / "objects"),
    })


def stop_launcher(server: ForkServer) -> None:
    if server._server is not None and server._server.returncode is None:
        server._server.send_signal(signal.SIGTERM)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ProcessBackend]:
    backend = ProcessBackend("bot", tmp_path / "workers", default_command=AGENT, launcher=LAUNCHER, stop_timeout=2)
    try:
        yield backend
    finally:
        for status in await backend.list():
            await backend.delete(status.name)
        assert backend._launcher is not None
        stop_launcher(backend._launcher)
        await backend.close()


def pid_of(backend: ProcessBackend, name: str) -> int:
    return int(backend._peek(name)["pid"])


async def test_a_preloaded_start_is_a_worker_like_any_other(tmp_path: Path, backend: ProcessBackend) -> None:
    name = unique()
    spec = agent_spec(tmp_path, name)
    await backend.create(spec)
    await backend.start(name)
    pid = pid_of(backend, name)
    process = psutil.Process(pid)

    assert (await backend.status(name)).state == WorkerState.RUNNING
    assert process.parent().pid != os.getpid(), "forked by the launcher, not started by us"
    assert "hiclaw_bot.agent.launcher" in " ".join(process.parent().cmdline())
    assert os.getsid(pid) == pid, "a session of its own, so a stop signals the whole group"
    workdir = str(tmp_path / "workers" / "bot" / name / "work")
    await until(lambda: process.cwd() == workdir)
    # /proc/<pid>/environ keeps the block the launcher was exec'd with (where to find code, no
    # secret): the worker's own environment is what the agent reads, and it is exactly the spec's.
    assert set(process.environ()) <= {"PATH", "PYTHONPATH"}
    await until(lambda: f"agent for worker {name} starting" in backend._root.joinpath(name, "worker.log")
                     .read_text())

    await backend.stop(name)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_DEAD
    assert (await backend.status(name)).state == WorkerState.STOPPED


async def test_an_exited_child_is_reaped(tmp_path: Path, backend: ProcessBackend) -> None:
    name = unique()
    await backend.create(WorkerSpec(name, "recorded-only:1", None, {"HICLAW_WORKER_NAME": name}))  # incomplete env
    await backend.start(name)
    pid = pid_of(backend, name)

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_DEAD
        except psutil.NoSuchProcess:
            return True

    await until(gone)  # exit code 2, and no zombie left under the launcher
    assert (await backend.status(name)).state == WorkerState.FAILED
    assert "HICLAW_FS_KIND is not set" in backend._root.joinpath(name, "worker.log").read_text()


async def test_a_restarted_bot_reuses_the_launcher(tmp_path: Path, backend: ProcessBackend) -> None:
    first, second = unique(), unique()
    await backend.create(agent_spec(tmp_path, first))
    await backend.start(first)
    await backend.close()
    restarted = ProcessBackend("bot", tmp_path / "workers", default_command=AGENT, launcher=LAUNCHER)
    await restarted.create(agent_spec(tmp_path, second))
    await restarted.start(second)
    assert psutil.Process(pid_of(backend, first)).ppid() == psutil.Process(pid_of(restarted, second)).ppid()
    await restarted.delete(second)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")
async def test_a_start_can_take_another_uid(tmp_path: Path) -> None:
    server = ForkServer("process", LAUNCHER, str(tmp_path))
    shared = Path(tempfile.mkdtemp(prefix="hiclaw-uid-"))  # 0700, root's: closed to the worker's uid
    store = Path(tempfile.mkdtemp(prefix="hiclaw-uid-store-"))
    try:
        os.mkdir(shared / "work", 0o700)  # its own, reachable only by a chdir made before the uid switch
        os.chown(shared / "work", 65534, 65534)
        os.mkdir(store / "objects", 0o700)
        os.chown(store / "objects", 65534, 65534)
        os.chmod(store, 0o711)  # noqa: S103 - the agent reaches its object folder through here
        env = {"PATH": os.defpath, "HICLAW_WORKER_NAME": "nobody-worker", "HICLAW_FS_KIND": "local",
               "HICLAW_FS_DIR": str(store / "objects")}
        pid = await server.spawn(env=env, cwd=shared / "work", log=tmp_path / "log", uid=65534, gid=65534)
        process = psutil.Process(pid)
        log = tmp_path / "log"
        await until(lambda: log.exists() and "agent for worker nobody-worker starting" in log.read_text())
        uids, gids = process.uids(), process.gids()
        assert (uids.real, uids.effective, gids.real, gids.effective) == (65534, 65534, 65534, 65534)
        assert process.is_running()
        os.kill(pid, signal.SIGKILL)
    finally:
        stop_launcher(server)
        shutil.rmtree(shared)
        shutil.rmtree(store)


async def test_the_launcher_leaves_when_its_socket_is_removed(tmp_path: Path) -> None:
    server = ForkServer("process", LAUNCHER, str(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    pid = await server.spawn(env={"PATH": os.defpath}, cwd=work, log=tmp_path / "log")
    os.kill(pid, signal.SIGKILL)
    assert server._server is not None
    launcher = server._server
    server.path.unlink()
    await until(lambda: launcher.returncode is not None, timeout=10)
