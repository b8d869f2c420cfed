"""``hiclaw-agent-launcher SOCKET``: the reference agent, imported once, forked per start.

Why: a fresh agent spends most of its start-up importing matrix-nio and botocore (about 0.9 CPU
seconds, several seconds when a team's six agents start at once on two cores). The launcher pays
that once; each start is then a ``fork`` of an interpreter that has everything loaded.

Each child is a worker like any other, as the process backend promises:

* a session of its own (a stop signals its group), stdin ``/dev/null``, stdout and stderr
  appended to the worker's log;
* the worker's environment **only**: the launcher's own is cleared before the agent reads it;
* its working directory, and its uid/gid when the request names them (the launcher then runs as
  root, like the bot that started it).

The launcher is single-threaded and never runs an event loop, so forking it is safe. It never
reads a request itself: the child does, so no worker's secrets stay in the launcher's memory for
the next child to inherit. It accepts
requests only from its own uid (``SO_PEERCRED``), and exits after ``IDLE_SECONDS`` without one, or
when its socket file is gone, so a launcher left by a bot that died does not outlive its use.
Protocol: one JSON object per connection, ``{"env", "cwd", "log", "uid", "gid"}``, answered by
``{"pid": N}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

IDLE_SECONDS = 120.0
_MAX_REQUEST = 1 << 20


def _reap(signum: int, frame: object) -> None:
    """Collect exited children, so no worker the launcher forked lingers as a zombie."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        return


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _read_request(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk or len(data) + len(chunk) > _MAX_REQUEST:
            raise ValueError("incomplete or oversized request")
        data += chunk
    request = json.loads(data)
    if not isinstance(request, dict) or not isinstance(request.get("env"), dict):
        raise ValueError("a request is an object with an env")
    return request


def stdio_to(log: str) -> None:
    """In a forked child: stdin from ``/dev/null``, stdout and stderr appended to ``log`` (0600)."""
    output = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.close(null)


def _become_worker(conn: socket.socket, listener: socket.socket) -> None:
    """In the child: read the request, take the worker's identity, answer with our pid, run the
    agent. Never returns; a failure before the answer is the answer.

    The request is read here, after the fork, and never in the launcher: a launcher that had read
    worker A's environment could leave A's secrets in memory that worker B inherits."""
    code = 1
    try:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            request = _read_request(conn)
        except (ValueError, OSError) as exc:
            conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
            return
        os.setsid()  # before the answer: a stop that follows at once must find the group
        stdio_to(request["log"])
        os.chdir(request["cwd"])  # before the uid switch, as subprocess does: the path may be closed to it
        if request.get("gid") is not None:
            os.setgroups([])
            os.setgid(int(request["gid"]))
        if request.get("uid") is not None:
            os.setuid(int(request["uid"]))
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")  # a worker in full from here
        conn.close()
        sys.argv = [sys.executable, "-m", "hiclaw_bot.agent"]
        from hiclaw_bot.agent.__main__ import main

        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - the child must end in os._exit whatever happened
        traceback.print_exc()
        with contextlib.suppress(OSError):  # closed already once the worker was answered
            conn.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _handle(conn: socket.socket, listener: socket.socket) -> None:
    """Fork for one request; the child, not us, reads it (see :func:`_become_worker`)."""
    if _peer_uid(conn) != os.getuid():
        conn.sendall(b'{"error": "refused: another user"}\n')
        return
    if os.fork() == 0:
        _become_worker(conn, listener)


def serve(path: Path, idle: float = IDLE_SECONDS) -> None:
    """Listen on ``path`` until idle for ``idle`` seconds or until the socket file is removed."""
    import hiclaw_bot.agent.__main__  # noqa: F401 - the point of the launcher: import once, fork many

    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = path.with_name(path.name + f".{os.getpid()}")
    old_umask = os.umask(0o077)
    try:
        listener.bind(str(partial))
    finally:
        os.umask(old_umask)
    listener.listen(16)
    os.replace(partial, path)  # appears only once it accepts connections
    identity = path.stat().st_ino
    listener.settimeout(1.0)
    idle_for = 0.0
    try:
        while idle_for < idle:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                idle_for += 1.0
                try:
                    if path.stat().st_ino != identity:
                        return  # removed, or replaced by a newer launcher
                except FileNotFoundError:
                    return
                continue
            idle_for = 0.0
            with conn:
                conn.settimeout(5.0)
                try:
                    _handle(conn, listener)
                except OSError:
                    continue
    finally:
        listener.close()
        try:
            if path.stat().st_ino == identity:
                path.unlink()
        except FileNotFoundError:
            pass


def main() -> None:
    serve(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
