"""``python -m tests.chaos.zygote SOCKET``: the crash tests' children, imported once, forked per run.

Why: a child is a bot that runs for a few seconds, and a fresh interpreter spends about 1.5 CPU
seconds importing the bot first; the crash tests start several hundred children. The zygote
imports the children's modules once and forks for each run. A run is still a process of its own,
with its own environment and output, killed for real by its fault (SIGKILL), and its exit status
is reported as ``asyncio`` reports a subprocess's (``-9`` for the kill).

Per connection: one JSON request ``{"module", "args", "env", "output"}``, answered by
``{"pid": N}`` once the run is forked and ``{"status": S}`` when it has ended. A waiter forked per
request does the waiting, so runs may overlap while the zygote only accepts and forks. The zygote
never starts an event loop or a thread, so forking it is safe; it exits when its socket file is
removed or the test process that started it is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import runpy
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import tests.chaos.crash_app
import tests.chaos.human_app
import tests.chaos.team_app
import tests.chaos.worker_app  # noqa: F401 - the point of the zygote: import once, fork many
from hiclaw_bot.agent.launcher import stdio_to

MODULES = frozenset({"crash_app", "human_app", "team_app", "worker_app"})


def _run(request: dict[str, Any]) -> NoReturn:
    """In the run's process: its output, its environment, its module as ``__main__``."""
    code = 1
    try:
        stdio_to(request["output"])  # as the agent launcher does for a worker
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        random.seed()  # a fork shares the zygote's sequence otherwise
        module = f"tests.chaos.{request['module']}"
        sys.argv = [module, *map(str, request["args"])]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _wait_for_run(conn: socket.socket) -> NoReturn:
    """In the waiter: read the request, fork the run, report its pid and then its exit status."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # ours to wait for, and asyncio's in the run
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                os._exit(1)
            data += chunk
        request = json.loads(data)
        if request.get("module") not in MODULES:
            conn.sendall(json.dumps({"error": f"no child module {request.get('module')!r}"}).encode() + b"\n")
            os._exit(1)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run(request)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        conn.sendall(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
    finally:
        os._exit(0)


def _reap(signum: int, frame: object) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def serve(path: Path) -> None:
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, _reap)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = path.with_name(path.name + ".partial")
    listener.bind(str(partial))
    listener.listen(16)
    os.replace(partial, path)  # appears only once it accepts connections
    listener.settimeout(1.0)
    with listener:
        while path.exists() and os.getppid() == parent:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            with conn:
                conn.settimeout(None)
                if os.fork() == 0:
                    listener.close()
                    _wait_for_run(conn)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
