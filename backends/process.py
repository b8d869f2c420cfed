"""Workers as local process groups: the embedded default when no container engine is configured.

Each worker lives in a directory of its own under ``<data_dir>/<instance>/<name>/``: ``state.json``
(mode 0600: it holds the spec, whose environment may carry secrets), ``worker.log`` (the
process's stdout and stderr, appended across restarts) and ``work/``, the working directory.

The process runs in a session of its own (``start_new_session``), so a stop signals the whole
group: SIGTERM, then SIGKILL after a grace period. The pid *and* the process's start (in clock
ticks since boot, with the boot's id) are recorded: a bot that restarts adopts a worker only when
both still match, because a bare pid can have been reused by an unrelated process
(:mod:`backends.process_identity`). Children are started with ``asyncio``'s subprocess
support, whose child watcher reaps them, so no exited worker lingers as a zombie.

An update starts the new command beside the old one and waits a settle period; only a new
process that is still alive replaces the old one. The attempt is recorded under ``next`` in the
state file first, so a bot that dies mid-update either promotes the new process (the old one is
already gone) or stops it (both run) on the next call. ``image`` means nothing here: it is
recorded, hashed and reported like the other backends do, nothing more. Resources are recorded,
not enforced.

Given a :class:`~backends.confinement.Confinement` (a bot running as root), each worker runs under
a uid and gid of its own. The worker's directory then stays the bot's (0711: the worker may pass
through, not list), with ``state.json`` and ``worker.log`` the bot's own (0600); only ``work/`` is
the worker's (0700, owned by its uid), and the backend's root is 0711, so a worker can neither
read another's directory nor anything else of the bot's.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backends.base import (
    BackendRef,
    ExecResult,
    WorkerSpec,
    WorkerState,
    WorkerStatus,
    check_instance,
    check_name,
    object_name,
    worker_labels,
)
from backends.confinement import Confinement
from backends.envrules import denied_by
from backends.errors import BackendError, Conflict, ExecTimeout, InvalidSpec, NotFound, UpdateFailed
from backends.forkserver import ForkServer
from backends.process_files import (
    LOG_FILE,
    STATE_FILE,
    exec_output,
    last_lines,
    open_private,
    read_state,
    spec_from_json,
    spec_to_json,
)
from backends.process_identity import IDENTITY, identify, still_running

log = logging.getLogger("backends.process")

BACKEND = "process"


class ProcessBackend:
    """Workers as process groups on this machine, with state under ``data_dir``.

    ``default_command`` runs when a spec has no command (the reference agent, typically);
    with a ``launcher`` (see :mod:`backends.forkserver`), such a start is a fork of a pre-imported
    copy of it instead.
    ``base_env`` is the only part of the bot's environment a worker sees, besides its own
    ``env``: by default ``PATH`` alone, so the bot's secrets never leak into a worker.
    """

    name = BACKEND

    def __init__(self, instance: str, data_dir: str | os.PathLike[str], *,
                 default_command: Sequence[str] | None = None, base_env: Mapping[str, str] | None = None,
                 stop_timeout: float = 10.0, settle_seconds: float = 1.0,
                 confinement: Confinement | None = None, launcher: Sequence[str] | None = None) -> None:
        check_instance(BACKEND, instance)
        self.instance = instance
        self._root = Path(data_dir) / instance
        self._default_command = list(default_command) if default_command else None
        self._base_env = dict(base_env) if base_env is not None else {"PATH": os.environ.get("PATH", os.defpath)}
        self._stop_timeout = stop_timeout
        self._settle_seconds = settle_seconds
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._launcher = ForkServer(BACKEND, launcher, str(self._root)) if launcher else None
        self._confinement = confinement

    @property
    def confinement(self) -> Confinement | None:
        """The uids workers run as, or ``None`` when they run as the bot's user."""
        return self._confinement

    # -- the contract ---------------------------------------------------------------------------

    async def create(self, spec: WorkerSpec, *, replace: bool = False) -> BackendRef:
        self._command(spec)
        async with self._lock(spec.name):
            state = await self._load(spec.name)
            if state is None:
                self._make_dirs(spec.name)
                self._save(spec.name, {"spec": spec_to_json(spec), "pid": None})
                return BackendRef(BACKEND, spec.name, object_name(spec.name), str(self._dir(spec.name)),
                                  spec.spec_hash, adopted=False)
            found = spec_from_json(state["spec"]).spec_hash
            if found != spec.spec_hash:
                if not replace:
                    raise Conflict(BACKEND, f"worker {spec.name} exists with spec hash {found}, "
                                            f"not {spec.spec_hash}")
                await self._update_locked(spec.name, state, spec)
        return BackendRef(BACKEND, spec.name, object_name(spec.name), str(self._dir(spec.name)),
                          spec.spec_hash, adopted=True)

    async def start(self, name: str) -> None:
        check_name(BACKEND, name)
        async with self._lock(name):
            state = await self._require(name)
            if still_running(state):
                return
            spec = spec_from_json(state["spec"])
            state.update(await self._spawn(spec))
            self._save(name, state)

    async def stop(self, name: str) -> None:
        check_name(BACKEND, name)
        async with self._lock(name):
            state = await self._require(name)
            await self._terminate(state)
            state["pid"] = None
            self._save(name, state)

    async def update(self, name: str, spec: WorkerSpec) -> None:
        check_name(BACKEND, name)
        if spec.name != name:
            raise InvalidSpec(BACKEND, f"spec is for worker {spec.name}, not {name}")
        self._command(spec)
        async with self._lock(name):
            state = await self._require(name)
            await self._update_locked(name, state, spec)

    async def delete(self, name: str) -> None:
        check_name(BACKEND, name)
        async with self._lock(name):
            state = await self._load(name)
            if state is not None:
                await self._terminate(state)
            await asyncio.to_thread(shutil.rmtree, self._dir(name), ignore_errors=True)

    async def status(self, name: str) -> WorkerStatus:
        check_name(BACKEND, name)
        try:
            state = read_state(self._dir(name))
        except FileNotFoundError:
            return WorkerStatus(name, WorkerState.NOT_FOUND)
        return await self._status_of(name, state)

    async def exec(self, name: str, argv: Sequence[str], timeout: float) -> ExecResult:  # noqa: ASYNC109
        check_name(BACKEND, name)
        command = list(argv)
        if not command or not all(isinstance(arg, str) for arg in command):
            raise InvalidSpec(BACKEND, "exec needs a non-empty list of strings")
        state = self._peek(name)
        if not still_running(state):
            raise Conflict(BACKEND, f"worker {name} is not running")
        spec = spec_from_json(state["spec"])
        try:
            process = await asyncio.create_subprocess_exec(
                *command, cwd=self._dir(name) / "work", env=self._env(name, spec), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                **self._identity(name))
        except OSError as exc:  # like a container engine: the command could not be run
            return ExecResult(126, "", f"cannot run {command[0]!r}: {exc.strerror}\n")
        try:
            stdout, stderr = await asyncio.wait_for(exec_output(process), timeout)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            raise ExecTimeout(BACKEND, f"command in worker {name} did not finish in {timeout:g}s; "
                                       "it was killed") from None
        return ExecResult(process.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    async def logs(self, name: str, tail: int | None = None) -> str:
        check_name(BACKEND, name)
        self._peek(name)
        log = self._dir(name) / LOG_FILE
        if tail is None:
            return await asyncio.to_thread(lambda: log.read_bytes().decode(errors="replace") if log.exists() else "")
        if tail <= 0:
            return ""
        return await asyncio.to_thread(last_lines, log, tail)

    async def list(self) -> builtins.list[WorkerStatus]:
        found = []
        for directory in sorted(self._root.glob(f"*/{STATE_FILE}")):
            with suppress(FileNotFoundError):
                found.append(await self._status_of(directory.parent.name, read_state(directory.parent)))
        return found

    async def close(self) -> None:
        """Forget the child handles; the workers keep running and a new instance adopts them."""
        self._children.clear()
        if self._launcher is not None:
            await self._launcher.close()

    # -- processes ------------------------------------------------------------------------------

    async def _spawn(self, spec: WorkerSpec) -> dict[str, Any]:
        """Start ``spec``'s command; the state fields that identify the new process."""
        directory = self._dir(spec.name)
        if spec.command is None and self._launcher is not None:
            uid, gid = self._confinement.ids(spec.name) if self._confinement is not None else (None, None)
            try:
                pid = await self._launcher.spawn(env=self._env(spec.name, spec), cwd=directory / "work",
                                                 log=directory / LOG_FILE, uid=uid, gid=gid)
                return self._identify(pid)
            except (BackendError, OSError) as exc:  # the preload is a speed-up: a fresh start still works
                log.warning("starting worker %s without the launcher: %s", spec.name, exc)
        with await asyncio.to_thread(open, directory / LOG_FILE, "ab", opener=open_private) as output:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._command(spec), cwd=directory / "work", env=self._env(spec.name, spec),
                    stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True, **self._identity(spec.name))
            except OSError as exc:
                raise BackendError(BACKEND, f"cannot start worker {spec.name}: {exc.strerror}") from exc
        self._children = {pid: child for pid, child in self._children.items() if child.returncode is None}
        self._children[process.pid] = process
        return self._identify(process.pid)

    @staticmethod
    def _identify(pid: int) -> dict[str, Any]:
        return {**identify(pid), "started_at": datetime.now(UTC).isoformat(), "exit_code": None}

    async def _terminate(self, state: Mapping[str, Any]) -> None:
        """SIGTERM the worker's group (and a pending update's), SIGKILL after the grace period."""
        for process in (state, state.get("next") or {}):
            if not still_running(process):
                continue
            pid = process["pid"]
            _signal_group(pid, signal.SIGTERM)
            await self._wait_while_alive(process, self._stop_timeout)
            _signal_group(pid, signal.SIGKILL)  # the leader, if deaf to SIGTERM, and any straggler
            await self._wait_while_alive(process, 5.0)

    async def _wait_while_alive(self, process: Mapping[str, Any], timeout: float) -> None:  # noqa: ASYNC109
        """Poll: an adopted worker is no child of ours, so nothing would tell us it exited."""
        deadline = time.monotonic() + timeout
        while still_running(process) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def _update_locked(self, name: str, state: dict[str, Any], spec: WorkerSpec) -> None:
        if spec_from_json(state["spec"]).spec_hash == spec.spec_hash:
            return
        if not still_running(state):
            state.update({"spec": spec_to_json(spec), "pid": None})
            self._save(name, state)
            return
        state["next"] = {**await self._spawn(spec), "spec": spec_to_json(spec)}
        self._save(name, state)
        await self._wait_while_alive(state["next"], self._settle_seconds)
        pending = state.pop("next")
        if not still_running(pending):
            self._save(name, state)
            code = await self._exit_code(pending)
            raise UpdateFailed(BACKEND, f"worker {name} kept its previous version: the new command exited"
                                        + (f" with code {code}" if code is not None else ""))
        await self._terminate(state)
        state.update({**dict.fromkeys(IDENTITY), **pending})
        self._save(name, state)

    async def _exit_code(self, state: Mapping[str, Any]) -> int | None:
        """The exit code of a dead worker this backend started (the watcher reports it a moment late)."""
        child = self._children.get(state.get("pid") or -1)
        if child is None:
            return None
        with suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), 1.0)
        return child.returncode

    async def _status_of(self, name: str, state: Mapping[str, Any]) -> WorkerStatus:
        spec = spec_from_json(state["spec"])
        started = datetime.fromisoformat(state["started_at"]) if state.get("started_at") else None
        if state.get("pid") is None:
            return WorkerStatus(name, WorkerState.STOPPED, spec.image, spec.spec_hash, None, "stopped")
        if still_running(state):
            return WorkerStatus(name, WorkerState.RUNNING, spec.image, spec.spec_hash, started, "")
        code = await self._exit_code(state)
        if code == 0:
            return WorkerStatus(name, WorkerState.STOPPED, spec.image, spec.spec_hash, started, "exited with code 0")
        detail = f"exited with code {code}" if code is not None else "exited (code unknown: not our child)"
        return WorkerStatus(name, WorkerState.FAILED, spec.image, spec.spec_hash, started, detail)

    # -- state ----------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self._root / name

    def _make_dirs(self, name: str) -> None:
        """The worker's directory (the bot's) and its ``work/`` (the worker's own, when confined)."""
        directory, work = self._dir(name), self._dir(name) / "work"
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._confinement is None:
            directory.chmod(0o700)
            return
        uid, gid = self._confinement.ids(name)
        for other in self._root.glob("*/work"):
            if other != work and other.stat().st_uid == uid:
                raise Conflict(BACKEND, f"worker {name} would share its user id with worker {other.parent.name}; "
                                        "choose another name")
        for path in (self._root.parent, self._root, directory):
            path.chmod(0o711)  # passable, not listable: a worker finds its own directory only
        os.chown(work, uid, gid)
        work.chmod(0o700)

    def _identity(self, name: str) -> dict[str, Any]:
        """The ``user``/``group`` a confined worker's processes run as (no supplementary groups)."""
        if self._confinement is None:
            return {}
        uid, gid = self._confinement.ids(name)
        return {"user": uid, "group": gid, "extra_groups": []}

    def _command(self, spec: WorkerSpec) -> builtins.list[str]:
        command = list(spec.command) if spec.command is not None else self._default_command
        if command is None:
            raise InvalidSpec(BACKEND, f"worker {spec.name} has no command and the backend no default command")
        return command

    def _env(self, name: str, spec: WorkerSpec) -> dict[str, str]:
        """The spec's variables, less any that would run code on this host (``backends.envrules``:
        the bot refuses them up front; this catches one stored before), then ours on top."""
        dropped = sorted(key for key in spec.env if denied_by(key) is not None)
        if dropped:
            log.warning("worker %s: not passing %s (variables that change how programs run)", name,
                        ", ".join(dropped))
        kept = {key: value for key, value in spec.env.items() if denied_by(key) is None}
        return {**kept, **self._base_env, "HOME": str(self._dir(name) / "work")}

    async def _load(self, name: str) -> dict[str, Any] | None:
        """The worker's state, after settling an update a dead bot left half done."""
        try:
            state = read_state(self._dir(name))
        except FileNotFoundError:
            return None
        pending = state.pop("next", None)
        if pending is not None:
            if still_running(pending) and not still_running(state):
                state.update({**dict.fromkeys(IDENTITY), **pending})
            else:
                await self._terminate(pending)
            self._save(name, state)
        return state

    def _peek(self, name: str) -> dict[str, Any]:
        """The worker's state as recorded, for calls that change nothing (and so take no lock)."""
        try:
            return read_state(self._dir(name))
        except FileNotFoundError:
            raise NotFound(BACKEND, f"worker {name} does not exist") from None

    async def _require(self, name: str) -> dict[str, Any]:
        state = await self._load(name)
        if state is None:
            raise NotFound(BACKEND, f"worker {name} does not exist")
        return state

    def _save(self, name: str, state: Mapping[str, Any]) -> None:
        """Replace the state file atomically; it is private to the bot's user."""
        path = self._dir(name) / STATE_FILE
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({**state, "instance": self.instance, "labels": self._labels(state)}, file, sort_keys=True)
        os.replace(temporary, path)

    def _labels(self, state: Mapping[str, Any]) -> dict[str, str]:
        return worker_labels(spec_from_json(state["spec"]), self.instance)

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        async with self._locks.setdefault(name, asyncio.Lock()):
            yield


def _signal_group(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
