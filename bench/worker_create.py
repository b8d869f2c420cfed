"""Worker creation on the local stack (real Synapse, SeaweedFS, the gateway simulator) with the
process backend running the reference agent.

Measures 20 sequential creates (p50/p95 wall), the engine's overhead ratio — (wall − time inside
external calls) / wall, from the per-step timings the engine records — and 20 concurrent creates
(wall, failures, duplicates counted at the servers). Prints one JSON object as its last line.
Targets: create p50 ≤ 1.5 s, overhead ≤ 5 %, 0 failures and 0 duplicates when concurrent.

With Docker (a private dockerd this script starts) the worker is a busybox loop, since an image
with the agent cannot be built here without a registry: readiness is then "the container runs"
(``ready_check: running``), and the figures measure everything but the agent's own start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.testing import DockerdUnavailable, LocalDockerd
from hiclaw_bot.app import running
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.stack import LocalStack
from hiclaw_bot.flows import worker as flows

SEQUENTIAL = 20
CONCURRENT = 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


LOOP = ["sh", "-c", "while true; do sleep 1; done"]


async def create(app: object, name: str, extra: dict[str, object]) -> tuple[float, str, float, float]:
    """Create ``name``; return wall ms, final state, and the op's summed step and external ms."""
    engine = app.engine  # type: ignore[attr-defined]
    store = app.store  # type: ignore[attr-defined]
    started = time.perf_counter()
    sub = await engine.submit(flows.CREATE, flows.subject(name),
                              {"name": name, "model": "qwen-max", "image": "hiclaw/worker-agent:latest", **extra})
    op = await engine.wait(sub.op.op_id)
    wall = (time.perf_counter() - started) * 1000
    if op.state != "succeeded":
        raise RuntimeError(f"create {name}: {op.state} at step {op.failed_step}: {op.error}")
    steps = await store.steps.of(op.op_id)
    external = sum(s.external_ms for s in steps)
    return wall, op.state, external, sum(s.duration_ms or 0 for s in steps)


async def delete_all(app: object) -> None:
    """Delete every worker as `!worker delete` would, so the next phase (another backend) starts
    from an empty table: a worker outlives a backend switch only by refusing the bot's start."""
    engine, store = app.engine, app.store  # type: ignore[attr-defined]
    subs = [await engine.submit(flows.DELETE, flows.subject(row.name),
                                {**row.spec, "model": row.model, "image": row.image, "name": row.name})
            for row in await store.workers.all()]
    ops = await asyncio.gather(*(engine.wait(sub.op.op_id) for sub in subs))
    assert all(op.state == "succeeded" for op in ops), [(op.subject, op.state, op.error) for op in ops]


async def measure(config: Config, stack: LocalStack, extra: dict[str, object]) -> dict[str, object]:
    async with running(config) as app:
        walls: list[float] = []
        ratios: list[float] = []
        for i in range(SEQUENTIAL):
            wall, state, external, _ = await create(app, f"seq-{i}", extra)
            assert state == "succeeded", state
            walls.append(wall)
            ratios.append(max(0.0, (wall - external) / wall))
        started = time.perf_counter()
        results = await asyncio.gather(*(create(app, f"par-{i}", extra) for i in range(CONCURRENT)),
                                       return_exceptions=True)
        concurrent_wall = (time.perf_counter() - started) * 1000
        failures = sum(1 for r in results if isinstance(r, BaseException) or r[1] != "succeeded")
        consumers = list(stack.gateway.consumers)
        duplicates = len(consumers) - len(set(consumers))
        runtimes = [s.name for s in await app.services.backend.list()]
        duplicates += len(runtimes) - len(set(runtimes))
        await delete_all(app)
    return {
        "creates": SEQUENTIAL,
        "create_p50_ms": round(statistics.median(walls), 1),
        "create_p95_ms": round(percentile(walls, 0.95), 1),
        "overhead_ratio": round(statistics.median(ratios), 4),
        "concurrent": CONCURRENT,
        "concurrent_wall_ms": round(concurrent_wall, 1),
        "concurrent_failures": failures,
        "concurrent_duplicates": duplicates,
        "workers_running": len(runtimes),
    }


async def main() -> dict[str, object]:
    logging.basicConfig(level=logging.ERROR)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalStack(Path(tmp) / "stack", bcrypt_rounds=4) as stack:
            backend = stack.config.backend
            config = stack.config.model_copy(update={"backend": backend.model_copy(update={"kind": "process"})})
            results["process"] = await measure(config, stack, {})
            try:
                dockerd = LocalDockerd.start()
            except DockerdUnavailable as exc:
                results["docker"] = {"skipped": f"no Docker engine: {exc}"}
                return results
            try:
                dockerd.import_busybox("hiclaw-bench/busybox", "1")
                image = "hiclaw-bench/busybox:1"
                docker_backend = backend.model_copy(update={
                    "kind": "docker", "ready_check": "running", "instance": "bench-docker",
                    "docker": backend.docker.model_copy(update={"host": dockerd.base_url, "network": "none"})})
                config = stack.config.model_copy(update={"backend": docker_backend})
                results["docker"] = await measure(config, stack, {"image": image, "command": LOOP})
            finally:
                dockerd.stop()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
