"""Worker creation on the local stack (real Synapse, SeaweedFS, the gateway simulator) with the
process backend running the reference agent.

Measures 20 sequential creates (p50/p95 wall), 10 wakes of a sleeping worker (until its agent has
synced: the wake's ``ready`` step waits for that), each step's median (where the time goes), the
engine's overhead ratio — (wall − time inside external calls) / wall, from the per-step timings the
engine records — and 20 concurrent creates (wall, failures, duplicates counted at the servers).
Prints one JSON object as its last line. Targets (process backend): create p50 ≤ 1000 ms, wake p50
≤ 500 ms; overhead ≤ 5 %, 0 failures and 0 duplicates when concurrent.

With Docker (a private dockerd this script starts) the worker is a busybox loop, since an image
with the agent cannot be built here without a registry: readiness is then "the container runs"
(``ready_check: running``), and the figures measure everything but the agent's own start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
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
WAKES = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


LOOP = ["sh", "-c", "while true; do sleep 1; done"]


Run = tuple[float, str, float, dict[str, float]]
"""Wall ms, final state, summed external ms, ms by step."""


async def run_op(app: object, kind: str, name: str, params: dict[str, object]) -> Run:
    """Run one operation on worker ``name``; wall ms, final state, summed external ms, ms by step."""
    engine = app.engine  # type: ignore[attr-defined]
    store = app.store  # type: ignore[attr-defined]
    started = time.perf_counter()
    sub = await engine.submit(kind, flows.subject(name), params)
    op = await engine.wait(sub.op.op_id)
    wall = (time.perf_counter() - started) * 1000
    if op.state != "succeeded":
        print(f"{kind} {name}: {op.state} at {op.failed_step}: {op.error}", file=sys.stderr)
    steps = await store.steps.of(op.op_id)
    return wall, op.state, sum(s.external_ms for s in steps), {s.name: s.duration_ms or 0.0 for s in steps}


async def create(app: object, name: str, extra: dict[str, object]) -> Run:
    return await run_op(app, flows.CREATE, name,
                        {"name": name, "model": "qwen-max", "image": "hiclaw/worker-agent:latest", **extra})


def by_step(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each step's median ms, slowest first: where the time goes."""
    names = {name for run in runs for name in run}
    medians = {name: round(statistics.median(run.get(name, 0.0) for run in runs), 1) for name in names}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


async def measure(config: Config, stack: LocalStack, extra: dict[str, object]) -> dict[str, object]:
    async with running(config) as app:
        walls: list[float] = []
        ratios: list[float] = []
        create_steps: list[dict[str, float]] = []
        for i in range(SEQUENTIAL):
            wall, state, external, steps = await create(app, f"seq-{i}", extra)
            assert state == "succeeded", state
            walls.append(wall)
            ratios.append(max(0.0, (wall - external) / wall))
            create_steps.append(steps)
        wakes: list[float] = []
        wake_steps: list[dict[str, float]] = []
        for i in range(WAKES):
            _, state, _, _ = await run_op(app, flows.SLEEP, f"seq-{i}", {"name": f"seq-{i}"})
            assert state == "succeeded", state
            wall, state, _, steps = await run_op(app, flows.WAKE, f"seq-{i}", {"name": f"seq-{i}"})
            assert state == "succeeded", state
            wakes.append(wall)
            wake_steps.append(steps)
        started = time.perf_counter()
        results = await asyncio.gather(*(create(app, f"par-{i}", extra) for i in range(CONCURRENT)),
                                       return_exceptions=True)
        concurrent_wall = (time.perf_counter() - started) * 1000
        failures = sum(1 for r in results if isinstance(r, BaseException) or r[1] != "succeeded")
        consumers = list(stack.gateway.consumers)
        duplicates = len(consumers) - len(set(consumers))
        runtimes = [s.name for s in await app.services.backend.list()]
        duplicates += len(runtimes) - len(set(runtimes))
        for status in await app.services.backend.list():
            await app.services.backend.delete(status.name)
    return {
        "creates": SEQUENTIAL,
        "create_p50_ms": round(statistics.median(walls), 1),
        "create_p95_ms": round(percentile(walls, 0.95), 1),
        "create_steps_p50_ms": by_step(create_steps),
        "wakes": WAKES,
        "wake_p50_ms": round(statistics.median(wakes), 1),
        "wake_p95_ms": round(percentile(wakes, 0.95), 1),
        "wake_steps_p50_ms": by_step(wake_steps),
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
        os.chmod(tmp, 0o711)  # noqa: S103 -- run as root, workers get uids of their own and must pass through
        async with LocalStack(Path(tmp) / "stack", bcrypt_rounds=4) as stack:
            backend = stack.config.backend
            config = stack.config.model_copy(update={"backend": backend.model_copy(update={"kind": "process"})})
            results["process"] = await measure(config, stack, {})
            if "--process-only" in sys.argv:
                return results
            try:
                dockerd = LocalDockerd.start()
            except DockerdUnavailable as exc:
                results["docker"] = {"skipped": f"no Docker engine: {exc}"}
                return results
            try:
                dockerd.import_busybox("localhost/hiclaw-bench/busybox", "1")
                image = "localhost/hiclaw-bench/busybox:1"
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
