"""The parent's side of the crash tests: the children's config, their runs, the fault to inject.

A crash test writes a config, runs a child (``tests.chaos.*_app``) with a fault that SIGKILLs it
at a step boundary, runs it again to completion, then counts what the servers hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.devstack.seaweed import SeaweedServer
from tests.fixtures.synapse import SynapseEnv

ROOT = Path(__file__).resolve().parents[2]
POINTS = ("after_intent", "after_call")


def child_config(synapse: SynapseEnv, tmp: Path, gateway: HigressConsoleSimulator | None = None,
                 **sections: Any) -> dict[str, Any]:
    """The bot's config for a child: data under ``tmp``, objects on local disk unless ``sections``
    say otherwise, the gateway simulator (when given) with model calls going nowhere."""
    document: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "matrix": synapse.bot_matrix(),
        "storage": {"kind": "local", "directory": str(tmp / "objects")},
    }
    if gateway is not None:
        document["gateway"] = {"kind": "higress", "console_url": gateway.url, "password": gateway.password,
                               "gateway_url": "http://127.0.0.1:9"}
    return {**document, **sections}


def s3_storage(seaweed: SeaweedServer, bucket: str) -> dict[str, Any]:
    return {"kind": "s3", "endpoint": seaweed.endpoint_url, "bucket": bucket, "access_key": seaweed.access_key,
            "secret_key": seaweed.secret_key, "region": seaweed.region}


def fault(kind: str, step: str, point: str, marker: Path) -> dict[str, str]:
    """The environment that kills the child once, at ``step``/``point`` of operation ``kind``."""
    return {"HICLAW_FAULT": f"kill:{step}:{point}:{kind}", "HICLAW_FAULT_MARKER": str(marker)}


class Zygote:
    """The client of :mod:`tests.chaos.zygote`, started on first use and stopped at the session's end.

    The zygote is a plain ``subprocess.Popen``: each test runs on an event loop of its own, and
    the zygote outlives them all."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None

    def socket(self) -> Path:
        """The zygote's socket, the zygote started first when none runs."""
        if self._process is None or self._process.poll() is not None:
            self._start()
        assert self._directory is not None
        return self._directory / "zygote.sock"

    def _start(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="hiclaw-zygote-"))
        path = self._directory / "zygote.sock"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.zygote", str(path)], cwd=ROOT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 60
        while not path.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the crash tests' zygote did not start (exit {self._process.poll()})")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


ZYGOTE = Zygote()


async def run_app(module: str, *args: str, token: str | None = None, env: dict[str, str] | None = None,
                  timeout: float = 120.0) -> int:  # noqa: ASYNC109
    """Run ``tests.chaos.<module> ARGS`` as a process of its own, forked from the zygote, to its end;
    its exit status, which must be success or the fault's SIGKILL (anything else fails the test
    with the run's output)."""
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    if token is not None:
        environment["HICLAW_TEST_BOT_TOKEN"] = token
    with tempfile.NamedTemporaryFile(prefix="hiclaw-child-", suffix=".log") as output:
        path = await asyncio.to_thread(ZYGOTE.socket)  # the first call starts it
        reader, writer = await asyncio.open_unix_connection(str(path))
        pid: int | None = None
        try:
            request = {"module": module, "args": list(args), "env": environment, "output": output.name}
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            async with asyncio.timeout(timeout):
                pid = int(json.loads(await reader.readline())["pid"])
                code = int(json.loads(await reader.readline())["status"])
        except TimeoutError:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{module} {' '.join(args[1:])} did not end in {timeout:g} s: {_tail(output.name)}")
        finally:
            writer.close()
        if code not in (0, -signal.SIGKILL):
            pytest.fail(f"{module} {' '.join(args[1:])} exited {code}: {_tail(output.name)}"
                        f"{_worker_logs(Path(args[0]).parent) if args else ''}")
    return code


def _tail(path: str) -> str:
    return Path(path).read_text(errors="replace")[-1500:]


def _worker_logs(directory: Path) -> str:
    """The end of every worker's log under a child's directory: why a runtime stopped, when one did."""
    return "".join(f"\n--- {log.relative_to(directory)}:\n{_tail(str(log))}"
                   for log in sorted(directory.glob("data/**/worker.log")))
