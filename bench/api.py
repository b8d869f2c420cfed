"""The operations API with 1000 workers: listing, one worker's status, the audit log and /metrics.

Seeds a temporary database with 1000 workers (a fifth of them under an operation), 5000 finished
operations and 5000 audit rows, feeds the metrics the events of a busy day (every flow's steps,
calls to six systems), serves the API on 127.0.0.1 over the process backend and times real HTTP
requests. Prints one JSON object (last line). Targets: list ≤ 200 ms, metrics ≤ 100 ms (p95).
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.process import ProcessBackend
from hiclaw_bot.api import ApiState, make_app, serving
from hiclaw_bot.engine import Engine, EventKind, ProgressEvent
from storage import Store

WORKERS = 1000
FINISHED_OPS = 5000
AUDIT_ROWS = 5000
REQUESTS = 30
TOKEN = "bench-token"
KINDS = {
    "worker.create": ["register", "secrets", "account", "room", "gateway_consumer", "gateway_auth", "config",
                      "skills", "runtime", "ready", "record"],
    "worker.sleep": ["stop", "record"], "worker.wake": ["start", "ready", "record"],
    "worker.update": ["mark", "config", "update", "ready", "restore"],
    "worker.delete": ["mark", "remove_runtime", "remove_config", "remove_gateway_auth", "forget"],
}
SYSTEMS = ("matrix", "higress", "storage", "backend", "worker", "mail")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def seed(store: Store) -> None:
    async with store.transaction() as tx:
        for i in range(WORKERS):
            state = "Running" if i % 3 else "Sleeping"
            await store.workers.insert(f"w{i:04d}", backend="process", state=state, desired_state=state,
                                       image="hiclaw/worker-agent:latest", model="qwen-max", team=f"t{i % 10}",
                                       tx=tx)
        for i in range(FINISHED_OPS):
            await store.ops.insert(kind=list(KINDS)[i % len(KINDS)], subject=f"worker:w{i % WORKERS:04d}",
                                   params={}, actor="@root:bench", room_id="!r:bench", source_event_id=None,
                                   state="succeeded" if i % 7 else "compensated", tx=tx)
        for i in range(0, WORKERS, 5):
            await store.ops.insert(kind="worker.wake", subject=f"worker:w{i:04d}", params={}, actor="api:bench",
                                   room_id=None, source_event_id=None, state="running" if i % 10 else "failed",
                                   tx=tx)
        for i in range(AUDIT_ROWS):
            await store.audit.add(actor="@root:bench", command="worker wake", decision="started",
                                  subject=f"worker:w{i % WORKERS:04d}", op_id=i + 1, room_id="!r:bench", tx=tx)


def busy_day(state: ApiState) -> None:
    for op_id in range(200):
        for kind, steps in KINDS.items():
            for step in steps:
                calls = tuple((SYSTEMS[(op_id + n) % len(SYSTEMS)], 0.001 * (n + 1)) for n in range(3))
                state.metrics.observe(ProgressEvent(EventKind.STEP_DONE, op_id, kind, "worker:x", step=step,
                                                    duration_ms=5.0 * (op_id % 40), calls=calls))
            state.metrics.observe(ProgressEvent(EventKind.OP_SUCCEEDED, op_id, kind, "worker:x"))


async def timed(session: aiohttp.ClientSession, path: str) -> list[float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        async with session.get(path, headers=headers) as response:
            await response.read()
            assert response.status == 200, (path, response.status)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "hiclaw.db")
        backend = ProcessBackend("bench", Path(tmp) / "workers")
        engine = Engine(store)
        try:
            await seed(store)
            state = ApiState(store=store, engine=engine, backend=backend, token=SecretStr(TOKEN))
            busy_day(state)
            async with serving(make_app(state)) as url, aiohttp.ClientSession(url) as session:
                await timed(session, "/api/v1/workers")  # warm up the page cache and the JSON path
                listing = await timed(session, "/api/v1/workers")
                status = await timed(session, "/api/v1/workers/w0500")
                audit = await timed(session, "/api/v1/audit?limit=100")
                metrics = await timed(session, "/metrics")
                async with session.get("/metrics") as response:
                    exposition = await response.read()
        finally:
            await engine.stop()
            await backend.close()
            await store.close()
    return {
        "workers": WORKERS,
        "list_ms": round(statistics.median(listing), 2),
        "list_p95_ms": round(percentile(listing, 0.95), 2),
        "status_ms": round(statistics.median(status), 2),
        "audit_ms": round(statistics.median(audit), 2),
        "metrics_ms": round(statistics.median(metrics), 2),
        "metrics_p95_ms": round(percentile(metrics, 0.95), 2),
        "metrics_bytes": len(exposition),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
