"""Worker creation on the local stack (real Synapse, SeaweedFS, the gateway simulator) with the
process backend running the reference agent.

Measures 20 sequential creates (p50/p95 wall), 10 wakes of a sleeping worker (until its agent has
synced: the wake's ``ready`` step waits for that), each step's median (where the time goes), the
engine's overhead ratio — (wall − time during which some step ran) / wall, from the steps' start
and end times the engine records: the engine's own time between and around its steps — and 20
concurrent creates (wall, failures, duplicates counted at the servers).
Prints one JSON object as its last line (``--process-only``: the process backend alone). Targets
(process backend): create p50 ≤ 1000 ms, wake p50 ≤ 500 ms; overhead ≤ 5 %, 0 failures and 0
duplicates when concurrent.

With Docker (a private dockerd this script starts) it measures twice. ``docker``: the worker is a
busybox loop and readiness is "the container runs" (``ready_check: running``), which measures
everything but the agent's own start-up. ``docker_agent``: the real image, built here from Debian
and PyPI (``hiclaw-bot image build``, cached), on host networking, and readiness is the agent's first
sync (``ready_check: agent``). Targets there: create p50 ≤ 2.5 s, wake
p50 ≤ 1.5 s, 0 failures and 0 duplicates when concurrent.
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
from hiclaw_bot.devstack.worker_image import build_worker_image
from hiclaw_bot.flows import worker as flows
from storage import StepRecord

ROOT = Path(__file__).resolve().parents[1]
SEQUENTIAL = 20
CONCURRENT = 20
WAKES = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


LOOP = ["sh", "-c", "while true; do sleep 1; done"]


Run = tuple[float, str, float, dict[str, float]]
"""Wall ms, final state, ms during which some step ran, ms by step."""


def busy_ms(steps: list[StepRecord]) -> float:
    """How long at least one step ran: the union of the steps' intervals. A create runs its
    branches side by side, so the steps' own times overlap, and their sum exceeds the wall."""
    spans = sorted((s.started_at, s.finished_at) for s in steps
                   if s.started_at is not None and s.finished_at is not None)
    total, covered = 0.0, float("-inf")
    for start, finish in spans:
        if finish > covered:
            total += finish - max(start, covered)
            covered = finish
    return total * 1000


async def run_op(app: object, kind: str, name: str, params: dict[str, object]) -> Run:
    """Run one operation on worker ``name``."""
    engine = app.engine  # type: ignore[attr-defined]
    store = app.store  # type: ignore[attr-defined]
    started = time.perf_counter()
    sub = await engine.submit(kind, flows.subject(name), params)
    op = await engine.wait(sub.op.op_id)
    wall = (time.perf_counter() - started) * 1000
    if op.state != "succeeded":
        print(f"{kind} {name}: {op.state} at {op.failed_step}: {op.error}", file=sys.stderr)
    steps = await store.steps.of(op.op_id)
    return wall, op.state, busy_ms(steps), {s.name: s.duration_ms or 0.0 for s in steps}


async def create(app: object, name: str, extra: dict[str, object]) -> Run:
    return await run_op(app, flows.CREATE, name,
                        {"name": name, "model": "qwen-max", "image": "hiclaw/worker-agent:latest", **extra})


async def wake(app: object, name: str) -> Run:
    """Sleep ``name``, then wake it; the wake's figures (until the agent is ready again)."""
    _, state, _, _ = await run_op(app, flows.SLEEP, name, {"name": name})
    assert state == "succeeded", state
    woken = await run_op(app, flows.WAKE, name, {"name": name})
    assert woken[1] == "succeeded", woken[1]
    return woken


def by_step(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each step's median ms, slowest first: where the time goes."""
    names = {name for run in runs for name in run}
    medians = {name: round(statistics.median(run.get(name, 0.0) for run in runs), 1) for name in names}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


async def measure(config: Config, stack: LocalStack, extra: dict[str, object], *,
                  prefix: str) -> dict[str, object]:
    """``prefix`` names this run's workers, and its own database: a run never sees another's rows
    (whose runtimes it deleted), which the drift reconciler would otherwise try to repair."""
    config = config.model_copy(update={"data_dir": config.data_dir / prefix.strip("-")})
    async with running(config) as app:
        creates = [await create(app, f"{prefix}seq-{i}", extra) for i in range(SEQUENTIAL)]
        assert all(state == "succeeded" for _, state, _, _ in creates)
        wakes = [await wake(app, f"{prefix}seq-{i}") for i in range(WAKES)]
        started = time.perf_counter()
        results = await asyncio.gather(*(create(app, f"{prefix}par-{i}", extra) for i in range(CONCURRENT)),
                                       return_exceptions=True)
        concurrent_wall = (time.perf_counter() - started) * 1000
        failures = sum(1 for r in results if isinstance(r, BaseException) or r[1] != "succeeded")
        consumers = list(stack.gateway.consumers)
        duplicates = len(consumers) - len(set(consumers))
        runtimes = [s.name for s in await app.services.backend.list()]
        duplicates += len(runtimes) - len(set(runtimes))
        for status in await app.services.backend.list():
            await app.services.backend.delete(status.name)
    walls = [wall for wall, _, _, _ in creates]
    wake_walls = [wall for wall, _, _, _ in wakes]
    return {
        "creates": SEQUENTIAL,
        "create_p50_ms": round(statistics.median(walls), 1),
        "create_p95_ms": round(percentile(walls, 0.95), 1),
        "create_steps_p50_ms": by_step([steps for _, _, _, steps in creates]),
        "wakes": WAKES,
        "wake_p50_ms": round(statistics.median(wake_walls), 1),
        "wake_p95_ms": round(percentile(wake_walls, 0.95), 1),
        "wake_steps_p50_ms": by_step([steps for _, _, _, steps in wakes]),
        "overhead_ratio": round(statistics.median(max(0.0, (wall - busy) / wall) for wall, _, busy, _ in creates), 4),
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
            results["process"] = await measure(config, stack, {}, prefix="proc-")
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
                results["docker"] = await measure(config, stack, {"image": image, "command": LOOP}, prefix="box-")
                built = await asyncio.to_thread(build_worker_image, ROOT, base_url=dockerd.base_url)
                agent_backend = backend.model_copy(update={
                    "kind": "docker", "ready_check": "agent", "instance": "bench-agent", "default_image": built.tag,
                    "docker": backend.docker.model_copy(update={"host": dockerd.base_url, "network": "host"})})
                config = stack.config.model_copy(update={"backend": agent_backend})
                results["docker_agent"] = {"image": built.tag, **await measure(
                    config, stack, {"image": built.tag}, prefix="agent-")}
            finally:
                dockerd.stop()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
