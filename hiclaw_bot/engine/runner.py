"""The engine: accepts operations, runs them one per subject, resumes them after a restart.

Scheduling rules (ARCHITECTURE §3):

* One operation holds a subject at a time (``running``, ``failed`` awaiting a decision, or
  ``compensating``), enforced by a partial UNIQUE index, not just by this process.
* A new command on a held subject is refused (``SubjectBusy``) or queued behind the holder.
  Re-issuing the very command that failed resumes it at the failed step; a flow registered with
  ``supersedes_failed`` (a delete) cancels a failed holder and takes its place.
* ``start()`` resumes every operation left ``running`` or ``compensating`` by a previous process.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal

from hiclaw_bot.engine._execute import Executor
from hiclaw_bot.engine.errors import InvalidTransition, OperationNotFound, SubjectBusy, describe
from hiclaw_bot.engine.events import EventBus, EventKind, ProgressEvent
from hiclaw_bot.engine.faults import BoundaryHook
from hiclaw_bot.engine.retry import RetryPolicy
from hiclaw_bot.engine.steps import Step
from hiclaw_bot.timing import Clock, SystemClock
from storage import Operation, Store, Tx, is_holder_conflict

log = logging.getLogger("hiclaw_bot.engine")

FlowBuilder = Callable[[Operation], Sequence[Step]]
ParamsParser = Callable[[Mapping[str, Any]], object]
"""Parses an operation's params, raising ValueError on params its flow could not run."""
SameTransaction = Callable[[Tx, int], Awaitable[None]]


@dataclass(frozen=True)
class Flow:
    kind: str
    build: FlowBuilder
    supersedes_failed: bool = False
    parse: ParamsParser | None = None


@dataclass(frozen=True)
class Submission:
    op: Operation
    created: bool
    """False when an existing operation answered: the same event again, or a resumed failure."""
    resumed: bool = False


class Engine:
    def __init__(self, store: Store, *, clock: Clock | None = None, retry: RetryPolicy | None = None,
                 boundary_hook: BoundaryHook | None = None, max_concurrent_ops: int = 64) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.bus = EventBus()
        self._executor = Executor(store, self.bus, self.clock, retry or RetryPolicy(), boundary_hook)
        self._flows: dict[str, Flow] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_concurrent_ops)
        self._closing = False

    # -- configuration --------------------------------------------------------------------------

    def register(self, kind: str, build: FlowBuilder, *, supersedes_failed: bool = False,
                 parse: ParamsParser | None = None) -> None:
        """``parse`` checks the params of each operation of ``kind`` when it is submitted, before
        anything is recorded (the flows' typed params, :mod:`hiclaw_bot.flows.params`)."""
        self._flows[kind] = Flow(kind, build, supersedes_failed, parse)

    def subscribe(self) -> AbstractAsyncContextManager[asyncio.Queue[ProgressEvent]]:
        """All progress events from now on, in a queue of the caller's own."""
        return self.bus.subscribe()

    # -- accepting work -------------------------------------------------------------------------

    async def submit(self, kind: str, subject: str, params: dict[str, Any] | None = None, *,
                     actor: str | None = None, room_id: str | None = None,
                     source_event_id: str | None = None,
                     when_busy: Literal["refuse", "queue"] = "refuse",
                     same_transaction: SameTransaction | None = None) -> Submission:
        """Record a new operation and start it; see the module docstring for the busy rules.

        ``same_transaction`` runs inside the transaction that records the operation: the chat layer
        marks the Matrix event processed there, so a crash can neither lose nor repeat a command.
        """
        flow = self._flow(kind)
        params = dict(params or {})
        if flow.parse is not None:
            flow.parse(params)
        ops = self.store.ops
        try:
            async with self.store.transaction() as tx:
                if source_event_id is not None:
                    existing = await ops.by_event(source_event_id, tx=tx)
                    if existing is not None:
                        return Submission(existing, created=False)
                holder = await ops.holder(subject, tx=tx)
                resumed = False
                if holder is None:
                    op_id = await ops.insert(kind=kind, subject=subject, params=params, actor=actor,
                                             room_id=room_id, source_event_id=source_event_id,
                                             state="running", tx=tx)
                elif holder.state == "failed" and holder.kind == kind and holder.params == params:
                    op_id, resumed = holder.op_id, True
                    await self._reopen(holder.op_id, tx)
                elif holder.state == "failed" and flow.supersedes_failed:
                    await ops.update(holder.op_id, state="cancelled", finished_at=tx.now(), tx=tx)
                    op_id = await ops.insert(kind=kind, subject=subject, params=params, actor=actor,
                                             room_id=room_id, source_event_id=source_event_id,
                                             state="running", tx=tx)
                elif when_busy == "queue":
                    op_id = await ops.insert(kind=kind, subject=subject, params=params, actor=actor,
                                             room_id=room_id, source_event_id=source_event_id,
                                             state="queued", tx=tx)
                else:
                    raise SubjectBusy(holder)
                if same_transaction is not None:
                    await same_transaction(tx, op_id)
        except sqlite3.IntegrityError as exc:
            # Another process (or a racing task) took the subject between our read and write.
            if not is_holder_conflict(exc):
                raise
            holder = await ops.holder(subject)
            if holder is None:
                raise
            raise SubjectBusy(holder) from exc
        op = await self._get(op_id)
        if op.state == "running":
            self._spawn(op.op_id)
        return Submission(op, created=not resumed, resumed=resumed)

    async def retry(self, op_id: int) -> Operation:
        """Resume a failed operation at its failed step (earlier steps are not repeated)."""
        op = await self._get(op_id)
        if op.state == "compensating" and op_id not in self._tasks:
            self._spawn(op_id)
            return op
        if op.state != "failed":
            raise InvalidTransition(f"operation {op_id} is {op.state}; only a failed operation can be retried")
        async with self.store.transaction() as tx:
            await self._reopen(op_id, tx)
        self._spawn(op_id)
        return await self._get(op_id)

    async def abort(self, op_id: int) -> Operation:
        """Stop an operation and undo, in reverse, what its steps did."""
        op = await self._get(op_id)
        if op.terminal:
            raise InvalidTransition(f"operation {op_id} is already {op.state}")
        if op.state == "queued":
            await self.store.ops.update(op_id, state="cancelled", finished_at=self.store.db.now())
            self._executor.emit(op, EventKind.OP_CANCELLED)
            return await self._get(op_id)
        task = self._tasks.get(op_id)
        if task is not None and op.state == "running":
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif task is not None:
            return op  # already compensating
        await self.store.ops.update(op_id, state="compensating")
        self._spawn(op_id)
        return await self._get(op_id)

    async def wait(self, op_id: int) -> Operation:
        """Wait until the operation stops moving (succeeded, failed, compensated…)."""
        while (task := self._tasks.get(op_id)) is not None:
            await asyncio.wait([task])  # neither cancels the task nor raises its error
        return await self._get(op_id)

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> list[int]:
        """Resume what a previous process left unfinished; return the resumed op ids."""
        self._closing = False
        resumed: list[int] = []
        for op in await self.store.ops.find(states=["running", "compensating"], limit=10_000):
            if op.op_id not in self._tasks:
                log.info("resuming operation %s (%s %s, %s)", op.op_id, op.kind, op.subject, op.state)
                self._spawn(op.op_id)
                resumed.append(op.op_id)
        for op in reversed(await self.store.ops.find(states=["queued"], limit=10_000)):
            await self._promote(op.subject)
        return resumed

    async def stop(self) -> None:
        """Cancel running operations; they stay ``running`` in the database and resume next start."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def busy(self) -> int:
        return len(self._tasks)

    # -- internals ------------------------------------------------------------------------------

    def _flow(self, kind: str) -> Flow:
        try:
            return self._flows[kind]
        except KeyError:
            raise ValueError(f"no flow registered for {kind!r}") from None

    async def _get(self, op_id: int) -> Operation:
        op = await self.store.ops.get(op_id)
        if op is None:
            raise OperationNotFound(op_id)
        return op

    async def _reopen(self, op_id: int, tx: Tx) -> None:
        await self.store.steps.reset(op_id, ["failed", "running"], tx=tx)
        await self.store.ops.update(op_id, state="running", error=None, failed_step=None, tx=tx)

    def _spawn(self, op_id: int) -> None:
        if self._closing or op_id in self._tasks:
            return
        task = asyncio.create_task(self._drive(op_id), name=f"op-{op_id}")
        self._tasks[op_id] = task
        task.add_done_callback(lambda t: self._finished(op_id, t))

    def _finished(self, op_id: int, task: asyncio.Task[None]) -> None:
        self._tasks.pop(op_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The operation stays as it was in the database and resumes at the next start.
            log.error("operation %s stopped unexpectedly: %s", op_id, describe(exc), exc_info=exc)

    async def _drive(self, op_id: int) -> None:
        async with self._slots:
            op = await self._get(op_id)
            try:
                steps = self._flow(op.kind).build(op)
            except Exception as exc:
                log.error("operation %s: cannot build its steps", op_id, exc_info=exc)
                await self.store.ops.update(op_id, state="failed", error=f"invalid operation: {describe(exc)}")
                self._executor.emit(op, EventKind.OP_FAILED, error=describe(exc))
                return
            if op.state == "running":
                await self._executor.run(op, steps)
            elif op.state == "compensating":
                await self._executor.compensate(op, steps)
        after = await self._get(op_id)
        if after.terminal and not self._closing:
            await self._promote(after.subject)

    async def _promote(self, subject: str) -> None:
        """Start the oldest queued operation of ``subject`` if nothing holds it."""
        queued = await self.store.ops.find(states=["queued"], subject=subject, limit=10_000)
        if not queued:
            return
        oldest = queued[-1]
        try:
            await self.store.ops.update(oldest.op_id, state="running")
        except sqlite3.IntegrityError as exc:
            if is_holder_conflict(exc):
                return
            raise
        self._spawn(oldest.op_id)
