"""Engine throughput: 1000 operations of 10 no-op steps on a temporary SQLite file.

Prints one JSON object (last line): steps per second, checkpoint (transaction) latency p50/p99,
and the engine's overhead per step. Targets: ≥ 1500 steps/s, checkpoint p50 ≤ 1 ms, p99 ≤ 5 ms (4 operations in flight).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.engine import Done, Engine, FuncStep, StepContext
from storage import Database, Statement, Store, Tx

OPS = 1000
STEPS = 10
CONCURRENCY = int(sys.argv[1]) if len(sys.argv) > 1 else 4


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class TimedDatabase(Database):
    """Records how long each write transaction holds the database (the checkpoint latency)."""

    latencies: list[float]
    """From asking for the checkpoint to its commit: what a step waits, queueing included."""
    holds: list[float]
    """From taking the write lock to the commit, for multi-statement transactions only."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        asked = time.perf_counter()
        async with super().transaction() as tx:
            held = time.perf_counter()
            yield tx
        done = time.perf_counter()
        self.latencies.append((done - asked) * 1000)
        self.holds.append((done - held) * 1000)

    async def write(self, statements: Sequence[Statement]) -> list[Any]:
        """A one-trip checkpoint: its latency includes waiting for a group commit to take it."""
        asked = time.perf_counter()
        results = await super().write(statements)
        self.latencies.append((time.perf_counter() - asked) * 1000)
        return results


async def main() -> dict[str, float | int | None]:
    async def nothing(ctx: StepContext) -> Done:
        return Done()

    with tempfile.TemporaryDirectory() as tmp:
        db = await TimedDatabase.open(Path(tmp) / "bench.db")
        assert isinstance(db, TimedDatabase)
        db.latencies = []
        db.holds = []
        store = Store(db)
        engine = Engine(store, max_concurrent_ops=CONCURRENCY)
        engine.register("noop", lambda op: [FuncStep(f"s{i}", nothing) for i in range(STEPS)])
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(OPS):
            queue.put_nowait(i)

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                sub = await engine.submit("noop", f"subject-{i}")
                await engine.wait(sub.op.op_id)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - started
        succeeded = len(await store.ops.find(states=["succeeded"], limit=OPS * 2))
        await engine.stop()
        await store.close()
    steps = OPS * STEPS
    return {
        "ops": OPS,
        "steps": steps,
        "succeeded_ops": succeeded,
        "wall_s": round(wall, 3),
        "steps_per_s": round(steps / wall, 1),
        "checkpoint_p50_ms": round(statistics.median(db.latencies), 3),
        "checkpoint_p99_ms": round(percentile(db.latencies, 0.99), 3),
        "transaction_hold_p50_ms": round(statistics.median(db.holds), 3) if db.holds else None,
        "transaction_hold_p99_ms": round(percentile(db.holds, 0.99), 3) if db.holds else None,
        "checkpoints": len(db.latencies),
        "concurrent_ops": CONCURRENCY,
        "overhead_per_step_ms": round(wall * 1000 / steps, 3),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
