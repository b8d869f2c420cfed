"""The agent's activity record, ``agents/<name>/state/activity.json``, written back to the object store.

The bot decides when a worker is idle (and may be put to sleep) from this file, so it must be
current, but a busy room must not turn into a write per message: writes are throttled to one per
``interval`` (10 s), with a trailing write so the last change always lands. The first change is
written at once. On shutdown, a pending change is flushed within a short, bounded time, so a
SIGTERM still stops the agent in well under a second.

The record::

    {"worker": "alice", "started_at": "...", "synced_at": "...", "last_seen": "...",
     "last_reply": "...", "messages": 3, "replies": 1}

``synced_at`` is when the agent's first sync of its current login completed: from then on it
hears its rooms, so the bot takes it as the moment the worker is ready.

``last_seen`` is when the agent last saw a message from someone else in one of its rooms,
``last_reply`` when it last answered; timestamps are ISO 8601 in UTC. A failed write is logged and
retried with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from hiclaw_bot.clients.errors import ClientError, NotFoundError
from hiclaw_bot.clients.objectstore import ObjectStore

__all__ = ["ActivityRecorder"]

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ActivityRecorder:
    """Counts what the agent sees and does, and writes it to ``key`` at most once per ``interval``.

    Use as ``async with recorder:``: entering starts the writer, leaving flushes what is pending
    (waiting at most ``flush_timeout``).
    """

    def __init__(self, store: ObjectStore, key: str, worker: str, *, interval: float = 10.0,
                 flush_timeout: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._key = key
        self._interval = interval
        self._flush_timeout = flush_timeout
        self._clock = clock
        started = datetime.now(UTC).isoformat(timespec="microseconds")
        self._record: dict[str, Any] = {"worker": worker, "started_at": started, "synced_at": None, "last_seen": None,
                                        "last_reply": None, "messages": 0, "replies": 0}
        self._dirty = asyncio.Event()
        self._last_write: float | None = None
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"ActivityRecorder(key={self._key!r}, messages={self._record['messages']})"

    def saw_message(self) -> None:
        self._record["messages"] += 1
        self._record["last_seen"] = _now()
        self._dirty.set()

    def synced(self) -> None:
        """The agent now hears its rooms (microsecond precision: readiness compares it to a start time)."""
        self._record["synced_at"] = datetime.now(UTC).isoformat(timespec="microseconds")
        self._dirty.set()

    def replied(self) -> None:
        self._record["replies"] += 1
        self._record["last_reply"] = _now()
        self._dirty.set()

    async def __aenter__(self) -> Self:
        self._writer = asyncio.create_task(self._write_loop(), name="activity-writer")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._dirty.is_set():
            try:
                await asyncio.wait_for(self._write(), self._flush_timeout)
            except TimeoutError:
                logger.warning("activity not written on shutdown: the object store did not answer in time")

    async def _superseded(self) -> bool:
        """Whether the stored record belongs to a later start of this worker.

        During an update the old and new runtimes overlap for a moment (new beside old); the old
        one's final flush must not overwrite what the new one wrote, or the bot would never see the
        new one become ready.
        """
        try:
            stored = json.loads(await self._store.get(self._key))
        except (NotFoundError, ValueError):
            return False
        theirs = stored.get("started_at") if isinstance(stored, dict) else None
        return isinstance(theirs, str) and theirs > self._record["started_at"]

    async def _write_loop(self) -> None:
        while True:
            await self._dirty.wait()
            if self._last_write is not None:
                wait = self._last_write + self._interval - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
            await self._write()

    async def _write(self) -> None:
        self._dirty.clear()
        data = (json.dumps(self._record, sort_keys=True, indent=2) + "\n").encode()
        try:
            if await self._superseded():
                logger.info("a newer start of this worker keeps %s; not overwriting it", self._key)
                return
            await self._store.put(self._key, data)
        except ClientError as exc:
            logger.warning("could not write %s: %s", self._key, exc)
            self._dirty.set()
        self._last_write = self._clock()
