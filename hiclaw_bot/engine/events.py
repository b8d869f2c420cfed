"""The progress stream: what the engine tells the chat layer (and metrics) while it works.

A broadcast of plain events to every subscriber, each with its own unbounded queue: the engine
never waits on a slow reader, and a reader that goes away simply unsubscribes.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


class EventKind(enum.Enum):
    OP_STARTED = "op_started"
    STEP_STARTED = "step_started"
    STEP_DONE = "step_done"
    STEP_SKIPPED = "step_skipped"
    STEP_RETRYING = "step_retrying"
    STEP_FAILED = "step_failed"
    OP_SUCCEEDED = "op_succeeded"
    OP_FAILED = "op_failed"
    OP_COMPENSATING = "op_compensating"
    STEP_COMPENSATED = "step_compensated"
    OP_COMPENSATED = "op_compensated"
    OP_CANCELLED = "op_cancelled"


FINAL_KINDS = frozenset({EventKind.OP_SUCCEEDED, EventKind.OP_FAILED, EventKind.OP_COMPENSATED,
                         EventKind.OP_CANCELLED})


@dataclass(frozen=True)
class ProgressEvent:
    kind: EventKind
    op_id: int
    op_kind: str
    subject: str
    step: str | None = None
    attempt: int = 0
    error: str | None = None
    delay: float | None = None
    duration_ms: float | None = None
    external_ms: float | None = None
    adopted: bool = False

    @property
    def final(self) -> bool:
        return self.kind in FINAL_KINDS


class EventBus:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[ProgressEvent]] = set()

    def publish(self, event: ProgressEvent) -> None:
        for queue in self._queues:
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[ProgressEvent]]:
        queue: asyncio.Queue[ProgressEvent] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
