"""What every crash-test child process does around its own operations.

A child opens the store, an engine (with the fault hook it is given) and the real services from a
config file, runs or resumes its operations, prints one line per operation and exits 0 only when
every one succeeded. The parent kills it at a step boundary, runs it again and checks what the
servers hold, so the children differ only in what they submit.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from hiclaw_bot.app import open_services
from hiclaw_bot.config import Config
from hiclaw_bot.engine import BoundaryHook, Engine, RetryPolicy
from hiclaw_bot.flows.services import Services
from storage import Operation, Store

RETRY = RetryPolicy(max_attempts=4, initial=0.05)


@dataclass(frozen=True)
class Child:
    store: Store
    engine: Engine
    services: Services


@asynccontextmanager
async def child(config_path: str, hook: BoundaryHook | None) -> AsyncIterator[Child]:
    """Store, engine and services from the config at ``config_path``, the bot's access token in
    ``HICLAW_TEST_BOT_TOKEN``; the engine is stopped and the store closed after the block."""
    config = Config.model_validate(json.loads(Path(config_path).read_text()))  # noqa: ASYNC240 -- once, at start
    store = await Store.open(config.database_path)
    engine = Engine(store, boundary_hook=hook, retry=RETRY)
    try:
        async with open_services(config, store, bot_token=os.environ["HICLAW_TEST_BOT_TOKEN"]) as services:
            try:
                yield Child(store, engine, services)
            finally:
                await engine.stop()
    finally:
        await store.close()


def report(ops: list[Operation]) -> int:
    """One line per operation for the parent's failure message; the child's exit status."""
    for op in ops:
        print(f"op {op.op_id} {op.subject} {op.state} {op.failed_step or ''} {op.error or ''}")
    return 0 if all(op.state == "succeeded" for op in ops) else 1
