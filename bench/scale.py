"""The bot at scale: 1000 workers, and what an operator and the automation do to them all.

One process holds what the running bot holds: the store, the engine with the worker flows, the
process backend, the chat dispatcher with every worker command, the lifecycle automation and the
HTTP API. The backend really has 1000 runtimes (a tiny ``sleep`` command; RUNNING of them running,
the rest created and stopped, as a sleeping worker's is), the database has their rows, 5000
finished operations and 5000 audit entries, and the metrics have seen a busy day of events.

Measured, each several times (medians, and p95 for the two requests people wait on):

* ``list_ms``: ``!worker list --limit 200`` typed by an admin (its largest page: the counts by state
  of all 1000 and 200 rows), through the real dispatcher (parse, permission, the handler's query, the
  table rendered as text and HTML), until its answer is handed to the outbox (a recorder here:
  Matrix's own latency is ``bench/chat_latency.py``'s subject);
* ``metrics_ms``: ``GET /metrics`` over HTTP on 127.0.0.1;
* ``api_list_ms``: ``GET /api/v1/workers``;
* ``reconcile_ms``: one drift-reconciler pass (one ``backend.list()``, the table, the policy);
* ``idle_sweep_ms``: one idle sweep (the candidate query, the activity flush);
* ``rss_mb``: the process's peak resident memory with all of the above loaded.

Nothing has drifted and nobody is idle, so the passes measure their own cost and Matrix is never
contacted. Prints one JSON object (last line). Targets: list ≤ 200 ms, metrics ≤ 100 ms,
reconciler pass ≤ 2000 ms, RSS ≤ 150 MB.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.api import ApiState, make_app, serving
from hiclaw_bot.app import make_backend
from hiclaw_bot.chat import default_registry
from hiclaw_bot.chat.context import Incoming
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.grammar import BotIdentity
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.clients.objectstore import LocalObjectStore
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, EventKind, ProgressEvent
from hiclaw_bot.flows.params import WorkerParams
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker import register_worker_flows
from hiclaw_bot.flows.worker_runtime import worker_spec
from hiclaw_bot.lifecycle import Lifecycle
from hiclaw_bot.types import EventId, RoomId, UserId
from storage import Store

WORKERS = 1000
RUNNING = 20
FINISHED_OPS = 5000
AUDIT_ROWS = 5000
REPEAT = 20
PASSES = 5
PAGE = 200
TOKEN = "bench-token"
ADMIN = "@admin:bench.local"
STEPS = {
    "worker.create": ["register", "secrets", "account", "room", "gateway_consumer", "gateway_auth", "config",
                      "skills", "runtime", "ready", "record"],
    "worker.sleep": ["stop", "record"], "worker.wake": ["start", "ready", "record"],
    "worker.update": ["mark", "config", "update", "ready", "restore"],
}
SYSTEMS = ("matrix", "higress", "storage", "backend")


@dataclass
class Outbox:
    """Takes the answers (the dispatcher's only way out), keeping the last one's size."""

    sent: int = 0
    last_chars: int = 0
    last_bytes: int = 0
    ids: dict[str, str] = field(default_factory=dict)

    async def send(self, room_id: str, content: dict[str, Any], *, txn_id: str) -> str:
        self.sent += 1
        self.last_chars = len(str(content.get("body", "")))
        self.last_bytes = len(json.dumps(content).encode())
        return self.ids.setdefault(txn_id, f"$sent{self.sent}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


async def populate(services: Services, store: Store) -> None:
    """1000 workers with real runtimes, a history of operations and an audit log."""
    backend = services.backend
    for index in range(WORKERS):
        name = f"w{index:04d}"
        params = {"name": name, "image": "hiclaw/worker-agent:bench", "model": "qwen-max"}
        running = index < RUNNING
        await backend.create(worker_spec(services, name, WorkerParams.of(params)))
        if running:
            await backend.start(name)
        await store.workers.insert(name, backend="process", state="Running" if running else "Sleeping",
                                   desired_state="Running", image=params["image"], model=params["model"],
                                   team=f"t{index % 10}", spec=params, last_active_at=time.time(),
                                   user_id=f"@{name}:bench.local")
    async with store.transaction() as tx:
        for i in range(FINISHED_OPS):
            await store.ops.insert(kind=list(STEPS)[i % len(STEPS)], subject=f"worker:w{i % WORKERS:04d}",
                                   params={}, actor=ADMIN, room_id="!r:bench.local", source_event_id=None,
                                   state="succeeded" if i % 7 else "compensated", tx=tx)
        for i in range(AUDIT_ROWS):
            await store.audit.add(actor=ADMIN, command="worker wake", decision="started",
                                  subject=f"worker:w{i % WORKERS:04d}", op_id=i + 1, room_id="!r:bench.local", tx=tx)


def busy_day(api: ApiState) -> None:
    """The events of a few hundred operations, so /metrics has histograms with something in them."""
    for op_id in range(200):
        for kind, steps in STEPS.items():
            for step in steps:
                calls = tuple((SYSTEMS[(op_id + n) % len(SYSTEMS)], 0.001 * (n + 1)) for n in range(3))
                api.metrics.observe(ProgressEvent(EventKind.STEP_DONE, op_id, kind, "worker:x", step=step,
                                                  duration_ms=5.0 * (op_id % 40), calls=calls))
            api.metrics.observe(ProgressEvent(EventKind.OP_SUCCEEDED, op_id, kind, "worker:x"))


async def worker_list(dispatcher: Dispatcher, outbox: Outbox) -> list[float]:
    timings = []
    for n in range(REPEAT):
        message = Incoming(RoomId("!dm:bench.local"), EventId(f"$list{n}"), UserId(ADMIN),
                           f"!worker list --limit {PAGE}")
        started = time.perf_counter()
        assert await dispatcher.handle(message)
        timings.append(ms(started))
    assert outbox.sent == REPEAT, "not every !worker list was answered"
    assert outbox.last_chars > PAGE * 20, "the page did not come out whole"
    assert outbox.last_bytes < 60_000, "the page would not fit in a Matrix event (64 KiB with its envelope)"
    return timings


async def get(session: aiohttp.ClientSession, path: str) -> list[float]:
    timings = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        async with session.get(path, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            await response.read()
            assert response.status == 200, (path, response.status)
        timings.append(ms(started))
    return timings


async def main() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hiclaw-bench-scale-"))
    sleep = shutil.which("sleep") or "/bin/sleep"
    config = Config.model_validate({
        "data_dir": str(root / "data"),
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "bench.local", "bot": {"password": "unused"},
                   "admins": [ADMIN], "registration": {"mode": "token", "token": "unused"}},
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
    registry = default_registry()
    register_worker_commands(registry, services)
    outbox = Outbox()
    hub = ProgressHub(engine, store, outbox)
    dispatcher = Dispatcher(config=config, store=store, engine=engine, registry=registry, hub=hub, outbox=outbox,
                            identity=BotIdentity("@hiclaw-bot:bench.local", "HiClaw"), resolver=Resolver(config, store))
    api = ApiState(store=store, engine=engine, backend=backend, token=SecretStr(TOKEN))
    try:
        started = time.perf_counter()
        await populate(services, store)
        setup_s = (time.perf_counter() - started)
        busy_day(api)
        listing = await worker_list(dispatcher, outbox)
        async with serving(make_app(api)) as url, aiohttp.ClientSession(url) as session:
            await get(session, "/metrics")  # the first scrape warms the page cache and the JSON path
            metrics = await get(session, "/metrics")
            api_list = await get(session, "/api/v1/workers")
        reconcile, sweep, findings = [], [], 0
        for _ in range(PASSES):
            report = await lifecycle.reconcile_once()
            reconcile.append(report.elapsed_ms)
            findings += len(report.findings)
            sweep.append((await lifecycle.sweep_once()).elapsed_ms)
        return {
            "workers": WORKERS,
            "list_ms": round(statistics.median(listing), 1),
            "list_p95_ms": round(percentile(listing, 0.95), 1),
            "list_event_bytes": outbox.last_bytes,
            "metrics_ms": round(statistics.median(metrics), 1),
            "metrics_p95_ms": round(percentile(metrics, 0.95), 1),
            "api_list_ms": round(statistics.median(api_list), 1),
            "reconcile_ms": round(statistics.median(reconcile), 1),
            "reconcile_first_ms": round(reconcile[0], 1),
            "idle_sweep_ms": round(statistics.median(sweep), 2),
            "drift_findings": findings,
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "setup_s": round(setup_s, 1),
            "targets": {"list_ms": 200, "metrics_ms": 100, "reconcile_ms": 2000, "rss_mb": 150},
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
