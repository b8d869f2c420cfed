"""Lifecycle passes at scale: 1000 workers on the process backend, one reconciler pass, one idle sweep.

The workers table holds 1000 workers whose runtimes exist on the process backend (a tiny
``sleep`` command): RUNNING of them run and are recorded Running, the rest are created and
recorded Sleeping. Nothing has drifted and nobody is idle, so the passes measure their own cost:
one ``backend.list()``, the table read, the policy and the spec hashes (reconciler); the candidate
query and the activity flush (idle sweep). Matrix is never contacted (no finding, no report room).

Prints one JSON object (last line). Target: a reconciler pass ≤ 2000 ms.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.clients.objectstore import LocalObjectStore
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine
from hiclaw_bot.flows.services import Services, make_backend
from hiclaw_bot.flows.worker import register_worker_flows
from hiclaw_bot.flows.worker_steps import worker_spec
from hiclaw_bot.lifecycle import Lifecycle
from hiclaw_bot.types import UserId
from storage import Store

WORKERS = 1000
RUNNING = 20
PASSES = 5


async def main() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hiclaw-bench-lifecycle-"))
    sleep = shutil.which("sleep") or "/bin/sleep"
    config = Config.model_validate({
        "data_dir": str(root / "data"),
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "bench.local", "bot": {"password": "unused"},
                   "admins": ["@admin:bench.local"], "registration": {"mode": "token", "token": "unused"}},
        "storage": {"kind": "local", "directory": str(root / "objects")},
        "backend": {"kind": "process", "instance": "bench", "process": {"command": [sleep, "3600"]}},
    })
    store = await Store.open(config.database_path)
    backend = make_backend(config)
    services = Services(config=config, store=store, matrix=cast(MatrixAdmin, None), gateway=None,
                        objects=LocalObjectStore(root / "objects"), backend=backend,
                        bot_user_id=UserId("@hiclaw-bot:bench.local"))
    engine = Engine(store)
    register_worker_flows(engine, services)
    lifecycle = Lifecycle(services, engine)
    try:
        made = time.perf_counter()
        for index in range(WORKERS):
            name = f"w{index:04d}"
            params = {"name": name, "image": "hiclaw/worker-agent:bench", "model": "qwen-max"}
            running = index < RUNNING
            await backend.create(worker_spec(services, name, params))
            if running:
                await backend.start(name)
            await store.workers.insert(name, backend="process", state="Running" if running else "Sleeping",
                                       desired_state="Running", image=params["image"], model=params["model"],
                                       spec=params, last_active_at=time.time(), user_id=f"@{name}:bench.local")
        setup_s = time.perf_counter() - made
        reconcile, sweep, findings = [], [], 0
        for _ in range(PASSES):
            report = await lifecycle.reconcile_once()
            reconcile.append(report.elapsed_ms)
            findings += len(report.findings)
            sweep.append((await lifecycle.sweep_once()).elapsed_ms)
        return {
            "workers": WORKERS, "running": RUNNING, "setup_s": round(setup_s, 1),
            "reconcile_ms": round(statistics.median(reconcile), 1), "reconcile_first_ms": round(reconcile[0], 1),
            "idle_sweep_ms": round(statistics.median(sweep), 2), "findings": findings,
            "target_reconcile_ms": 2000,
        }
    finally:
        await engine.stop()
        for status in await backend.list():
            await backend.delete(status.name)
        await backend.close()
        await store.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
