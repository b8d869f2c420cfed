"""The client side of a fork server: a pre-imported program that forks one process per start.

The process backend asks one to start its default command when it is configured with one (the
reference agent's launcher, :mod:`hiclaw_bot.agent.launcher`): a start then costs a ``fork``
instead of an interpreter's start-up and imports. The server is started on first use, in a
session of its own, and exits by itself when idle; a bot that restarts finds it again by its
socket. The socket lives in a directory only this uid can enter, and each side checks the
other's uid (``SO_PEERCRED``): a request carries a worker's environment, secrets included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import stat
import struct
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from backends.errors import BackendError

_START_TIMEOUT = 30.0
_LAUNCHER_ENV = ("PATH", "PYTHONPATH")
"""All the launcher gets of our environment: where to find its code. Its children get the worker's."""


def _private_dir() -> Path:
    """``$TMPDIR/hiclaw-<uid>``, 0700 and ours, or an error: never a directory someone else made."""
    directory = Path(tempfile.gettempdir()) / f"hiclaw-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise BackendError("process", f"{directory} is not a private directory of this user")
    return directory


class ForkServer:
    """Starts ``command + [socket]`` when needed; :meth:`spawn` asks it for one process."""

    def __init__(self, backend: str, command: Sequence[str], key: str) -> None:
        self._backend = backend
        self._command = list(command)
        digest = hashlib.sha256(json.dumps([key, self._command]).encode()).hexdigest()[:20]
        self._name = f"launcher-{digest}.sock"
        self._lock = asyncio.Lock()
        self._server: asyncio.subprocess.Process | None = None

    @property
    def path(self) -> Path:
        return _private_dir() / self._name

    async def spawn(self, *, env: Mapping[str, str], cwd: Path, log: Path, uid: int | None = None,
                    gid: int | None = None) -> int:
        """Fork one process with exactly ``env``; its pid. Starts the server first if none answers."""
        request = {"env": dict(env), "cwd": str(cwd), "log": str(log), "uid": uid, "gid": gid}
        try:
            return await self._ask(request)
        except (FileNotFoundError, ConnectionRefusedError):
            async with self._lock:
                try:
                    return await self._ask(request)
                except (FileNotFoundError, ConnectionRefusedError):
                    await self._start()
            return await self._ask(request)

    async def close(self) -> None:
        """Let the server go: it keeps serving a restarted bot until it has been idle a while."""
        self._server = None

    async def _ask(self, request: Mapping[str, object]) -> int:
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        try:
            sock = writer.get_extra_info("socket")
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            if struct.unpack("3i", creds)[1] != os.getuid():
                raise BackendError(self._backend, "the launcher socket belongs to another user")
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            answer = json.loads(await asyncio.wait_for(reader.readline(), 10.0) or b"{}")
        finally:
            writer.close()
        if "pid" not in answer:
            raise BackendError(self._backend, f"the launcher refused a start: {answer.get('error', 'no answer')}")
        return int(answer["pid"])

    async def _start(self) -> None:
        path = self.path
        self._server = await asyncio.create_subprocess_exec(
            *self._command, str(path), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
            env={name: os.environ[name] for name in _LAUNCHER_ENV if name in os.environ})
        deadline = time.monotonic() + _START_TIMEOUT
        while not path.exists():
            if self._server.returncode is not None or time.monotonic() > deadline:
                raise BackendError(self._backend, f"the launcher did not start ({' '.join(self._command)})")
            await asyncio.sleep(0.01)
