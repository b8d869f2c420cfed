"""The progress stream: what the engine tells the chat layer (and metrics) while it works.

A broadcast of plain events to every subscriber, each with its own unbounded queue: the engine
never waits on a slow reader, and a reader that goes away simply unsubscribes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

log = logging.getLogger("hiclaw_bot.engine")


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
    calls: tuple[tuple[str, float], ...] = ()
    """The step's external calls as (system, seconds), all attempts (done, failed, compensated)."""
    error_class: str | None = None
    """The exception class that failed a step, for error metrics (``error`` is the human text)."""

    @property
    def final(self) -> bool:
        return self.kind in FINAL_KINDS


class EventBus:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[ProgressEvent]] = set()
        self._listeners: list[Callable[[ProgressEvent], None]] = []

    def publish(self, event: ProgressEvent) -> None:
        for queue in self._queues:
            queue.put_nowait(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # an observer's bug must never stop an operation
                log.exception("progress listener %r failed on %s", listener, event.kind.value)

    def listen(self, listener: Callable[[ProgressEvent], None]) -> Callable[[], None]:
        """Call ``listener`` synchronously with every event; returns the function that stops it.

        For cheap, non-blocking observers (metrics counters): no queue, no task, no lag, so a
        counter is up to date the moment the operation's ``wait()`` returns.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[ProgressEvent]]:
        queue: asyncio.Queue[ProgressEvent] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
