"""The parent's side of the crash tests: the children's config, their runs, the fault to inject.

A crash test writes a config, runs a child (``tests.chaos.*_app``) with a fault that SIGKILLs it
at a step boundary, runs it again to completion, then counts what the servers hold.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
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


async def run_app(module: str, *args: str, token: str, env: dict[str, str] | None = None) -> int:
    """Run ``python -m tests.chaos.<module> ARGS`` to its end; its exit status, which must be
    success or the fault's SIGKILL (anything else fails the test with the child's output)."""
    environment = {**os.environ, **(env or {}), "HICLAW_TEST_BOT_TOKEN": token, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"tests.chaos.{module}", *args, cwd=ROOT, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    if proc.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"{module} {' '.join(args[1:])} exited {proc.returncode}: {out.decode()[-1500:]}")
    return proc.returncode
