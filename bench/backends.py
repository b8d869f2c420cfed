"""Latency of the worker backends' lifecycle calls, on a private dockerd and on local processes.

For each backend, 20 workers go through create, wake (start), sleep (stop), wake, update (to a
second image and environment, while running) and delete, one call at a time; then all 20 are put
to sleep and woken at once. Prints the settings, then one JSON object as the last line:
``{"docker": {...}, "process": {...}}`` with p50/p95 per call in milliseconds and the wall time of
the 20 parallel wakes. Run as ``python bench/backends.py`` (as root, with ``docker.io`` and
``busybox-static`` installed; without them the docker entry holds the reason it was skipped).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.base import WorkerBackend, WorkerSpec
from backends.docker import DockerBackend
from backends.process import ProcessBackend
from backends.testing import DockerdUnavailable, LocalDockerd

WORKERS = 20
SETTLE_SECONDS = 0.5
COMMAND = ["sh", "-c", "echo up $GREETING; while true; do sleep 1; done"]
IMAGES = ("localhost/hiclaw-bench/busybox:1", "localhost/hiclaw-bench/busybox:2")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def timed(call: Awaitable[object]) -> float:
    started = time.perf_counter()
    await call
    return (time.perf_counter() - started) * 1000


async def measure(backend: WorkerBackend) -> dict[str, float]:
    names = [f"bench-{index:02d}" for index in range(WORKERS)]
    samples: dict[str, list[float]] = {"create": [], "sleep": [], "wake": [], "update": [], "delete": []}
    try:
        for name in names:
            first = WorkerSpec(name, IMAGES[0], COMMAND, {"GREETING": "one"})
            second = WorkerSpec(name, IMAGES[1], COMMAND, {"GREETING": "two"})
            samples["create"].append(await timed(backend.create(first)))
            samples["wake"].append(await timed(backend.start(name)))
            samples["sleep"].append(await timed(backend.stop(name)))
            samples["wake"].append(await timed(backend.start(name)))
            samples["update"].append(await timed(backend.update(name, second)))
        await asyncio.gather(*(backend.stop(name) for name in names))
        parallel = await timed(asyncio.gather(*(backend.start(name) for name in names)))
        for name in names:
            samples["delete"].append(await timed(backend.delete(name)))
    finally:
        for status in await backend.list():
            await backend.delete(status.name)
        await backend.close()
    result = {}
    for call, values in samples.items():
        result[f"{call}_p50_ms"] = round(statistics.median(values), 1)
        result[f"{call}_p95_ms"] = round(percentile(values, 0.95), 1)
    result["parallel_wake_ms"] = round(parallel, 1)
    return result


async def bench_docker() -> dict[str, object]:
    try:
        engine = await asyncio.to_thread(LocalDockerd.start)
    except DockerdUnavailable as exc:
        return {"skipped": str(exc)}
    try:
        for index, image in enumerate(IMAGES, start=1):
            repository, tag = image.split(":")
            await asyncio.to_thread(engine.import_busybox, repository, tag, {"IMAGE_VERSION": str(index)})
        backend = DockerBackend("bench", base_url=engine.base_url, settle_seconds=SETTLE_SECONDS)
        return dict(await measure(backend))
    finally:
        await asyncio.to_thread(engine.stop)


async def bench_process() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hiclaw-bench-") as data:
        return dict(await measure(ProcessBackend("bench", data, settle_seconds=SETTLE_SECONDS)))


async def main() -> None:
    print(f"{WORKERS} workers per backend; an update waits {SETTLE_SECONDS}s for the new version to settle; "
          "docker runs its busybox image with init=True and network none")
    results = {"docker": await bench_docker(), "process": await bench_process()}
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
