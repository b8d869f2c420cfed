"""One bot instance for the takeover test: the engine and a three-step operation, run only while
this process holds the Lease, through the same ``serve_while_leading`` that ``hiclaw-bot run`` uses.

Usage: ``python -m tests.integration.leadership.leader_app KUBECONFIG NAMESPACE LEASE DB JOURNAL
IDENTITY SLOW_SECONDS``. The instance submits the operation, or resumes it when a previous leader
left it unfinished; its middle step takes ``SLOW_SECONDS``. Every event is appended to
``JOURNAL`` as ``<wall-clock time> <identity> <event>``, one write per line, so the test can order
what both instances did.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from hiclaw_bot.config import HaConfig
from hiclaw_bot.engine import Done, Engine, FuncStep, Outcome, RetryPolicy, Step, StepContext
from hiclaw_bot.leadership.leading import serve_while_leading
from storage import Operation, Store

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 2.0, 1.5, 0.25


async def main(kubeconfig: str, namespace: str, lease: str, db: str, journal_path: str, identity: str,
               slow: float) -> int:
    def journal(event: str) -> None:
        fd = os.open(journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{time.time():.6f} {identity} {event}\n".encode())
        finally:
            os.close(fd)

    def step(name: str, seconds: float = 0.0) -> Step:
        async def do(ctx: StepContext) -> Outcome:
            journal(f"{name}-start")
            await asyncio.sleep(seconds)
            journal(f"{name}-end")
            return Done({"by": identity})
        return FuncStep(name, do)

    def build(op: Operation) -> list[Step]:
        return [step("first"), step("slow", slow), step("last")]

    async def work() -> None:
        journal("leader")
        store = await Store.open(db)
        journal("open")
        try:
            engine = Engine(store, retry=RetryPolicy(max_attempts=2, initial=0.01))
            engine.register("demo.slow", build)
            resumed = await engine.start()
            op_id = resumed[0] if resumed else (await engine.submit("demo.slow", "demo:takeover", {})).op.op_id
            op = await engine.wait(op_id)
            journal(f"op-{op.op_id}-{op.state}")
            await engine.stop()
        finally:
            await store.close()

    ha = HaConfig(enabled=True, namespace=namespace, lease_name=lease, identity=identity,
                  lease_duration=LEASE_DURATION, renew_deadline=RENEW_DEADLINE, retry_period=RETRY_PERIOD,
                  kubeconfig=Path(kubeconfig))
    journal("standby")
    await serve_while_leading(ha, work, standby_listen=None)
    journal("exit")
    return 0


if __name__ == "__main__":
    kubeconfig, namespace, lease, db, journal_path, identity, slow = sys.argv[1:8]
    sys.exit(asyncio.run(main(kubeconfig, namespace, lease, db, journal_path, identity, float(slow))))
