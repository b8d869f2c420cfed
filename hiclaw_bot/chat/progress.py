"""Live progress: one message per operation, edited in place, and a new message with the result.

Why edits and not a message per step: a nine-step create would post nine notifications; an edit
notifies nobody and keeps the room readable. Why a *new* message for the result: edits do not
notify, and the person who typed the command wants to hear when it is done (ARCHITECTURE §6).

The message is rendered from the database (the op row and its step rows), not from the event
stream: events only say *when* to look. So a reporter that missed events, or one started after a
restart for an operation that resumed, still shows the truth. Edits are throttled to one per
``interval`` (1 s) with later events coalesced into the next edit; every edit replaces the
*original* event. Transaction ids are derived from the op id and a sequence number, fixed before
the first attempt, so a send retried after a network error is deduplicated by the homeserver
instead of posted twice: the progress message's id is the same in every process (after a crash the
repeated send returns the message already made), an edit's carries the reporter's own run id as
well (so a new edit after a restart never collides with an old one), and the result's carries a
digest of its content, which names the command it answers (one result per command, however often
it is sent).
The progress message's event id is stored on the op row, so a resumed reporter edits the same
message instead of starting another. Once the result is out, the op row records which finish it
told (``reported_at``); a bot that died in between tells it on its next start, and a result sent
twice across that crash is still one message, by its transaction id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from hiclaw_bot.chat.replies import JsonDict, Outbox, Reply, SendFailed, duration, edit, escape, notice
from hiclaw_bot.chat.wording import doing, succeeded
from hiclaw_bot.engine import Clock, Engine, EventKind, ProgressEvent, SystemClock
from storage import Operation, StepRecord, Store

log = logging.getLogger("hiclaw_bot.chat.progress")

ACTIVE_STATES = frozenset({"queued", "running", "compensating"})
ICONS = {"done": "✓", "running": "…", "failed": "✗", "skipped": "↷", "pending": "·", "compensated": "↺"}
_HEADLINE = {
    "queued": "⏸ queued", "running": "⏳ running", "compensating": "↺ undoing", "succeeded": "✓ succeeded",
    "failed": "✗ failed", "compensated": "↺ undone", "cancelled": "⊘ cancelled",
}


class Throttle:
    """At most one turn per ``interval`` seconds on ``clock``; the first turn is immediate."""

    def __init__(self, clock: Clock, interval: float = 1.0) -> None:
        self.clock = clock
        self.interval = interval
        self._last: float | None = None

    async def wait(self) -> None:
        if self._last is not None:
            delay = self._last + self.interval - self.clock.monotonic()
            if delay > 0:
                await self.clock.sleep(delay)
        self._last = self.clock.monotonic()


def _step_line(step: StepRecord, note: str | None) -> tuple[str, str, str]:
    icon = ICONS.get(step.status, "?")
    if step.status in ("done", "compensated") and step.duration_ms is not None:
        took = duration(step.duration_ms / 1000)
        if step.adopted:
            took += " (found)"
    elif step.status == "failed":
        took = (step.error or "failed")[:200]
    elif step.status == "running" and note:
        took = note
    else:
        took = ""
    return icon, step.name, took


def render(op: Operation, steps: Sequence[StepRecord], notes: Mapping[str, str] | None = None) -> Reply:
    """The progress message: a headline, then one line (or table row) per step."""
    notes = notes or {}
    headline = f"{_HEADLINE.get(op.state, op.state)}: {doing(op)}"
    lines = [_step_line(s, notes.get(s.name)) for s in steps]
    text = "\n".join([headline, *(f"{icon} {name}{'  ' + took if took else ''}" for icon, name, took in lines)])
    rows = "".join(f"<tr><td>{icon}</td><td>{escape(name)}</td><td>{escape(took)}</td></tr>"
                   for icon, name, took in lines)
    body = f"<p><b>{escape(headline)}</b></p>"
    if rows:
        body += f"<table><tbody>{rows}</tbody></table>"
    return Reply(text, body)


def render_result(op: Operation, steps: Sequence[StepRecord]) -> Reply:
    """The final message: what happened and, when it went wrong, what to do next."""
    what = doing(op)
    elapsed = duration(max(op.finished_at - op.created_at, 0)) if op.finished_at is not None else None
    took = f" in {elapsed}" if elapsed else ""
    if op.state == "succeeded":
        adopted = sum(1 for s in steps if s.adopted)
        extra = f"; {adopted} step(s) found already done" if adopted else ""
        return Reply.of(f"✓ {succeeded(op, elapsed)}{extra}")
    if op.state == "compensated":
        return Reply.of(f"↺ {what} was undone{took}: every completed step was reversed.")
    if op.state == "cancelled":
        return Reply.of(f"⊘ {what} was cancelled before it started.")
    reason = op.error or "no reason recorded"
    if op.state == "compensating":
        return Reply.of(f"✗ undoing {what} stopped at step {op.failed_step}: {reason}. "
                        f"Fix the cause, then `!op retry {op.op_id}` continues the undo.")
    step = f" at step {op.failed_step}" if op.failed_step else ""
    return Reply.of(f"✗ {what} failed{step}: {reason}. Fix the cause, then `!op retry {op.op_id}` resumes "
                    f"at that step; `!op abort {op.op_id}` undoes what was done.")


def result_txn_id(op_id: int, content: JsonDict) -> str:
    """The same result for the same command is one message, however often it is sent."""
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    return f"hiclaw.op{op_id}.result.{digest}"


class Reporter:
    """Reports one operation until it stops moving; see the module docstring."""

    def __init__(self, op: Operation, relates_to: Mapping[str, Any] | None, *, command_event_id: str | None,
                 store: Store, outbox: Outbox, clock: Clock, interval: float) -> None:
        self.op_id = op.op_id
        self.room_id = op.room_id or ""
        self.command_event_id = command_event_id or op.source_event_id
        self.relates_to = dict(relates_to) if relates_to is not None else None
        self.store = store
        self.outbox = outbox
        self.throttle = Throttle(clock, interval)
        self.notes: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._final = False
        self.finishing = False
        """The operation stopped moving and the result is on its way: a new run needs a new reporter."""
        self._seq = 0
        self._run = secrets.token_hex(4)

    def poke(self, event: ProgressEvent) -> None:
        if event.kind is EventKind.STEP_RETRYING and event.step:
            wait = f", retrying in {duration(event.delay)}" if event.delay else ""
            self.notes[event.step] = f"attempt {event.attempt} failed{wait}: {event.error or 'error'}"
        elif event.step:
            self.notes.pop(event.step, None)
        if event.final:
            self._final = True
        self._dirty.set()

    async def run(self) -> None:
        op, steps = await self._load()
        message_id = op.progress_event_id
        shown = render(op, steps, self.notes)
        if message_id is None:
            content = notice(shown, command_event_id=self.command_event_id, final=False, relates_to=self.relates_to)
            message_id = await self.outbox.send(self.room_id, content, txn_id=f"hiclaw.op{self.op_id}.progress")
            await self.store.ops.update(self.op_id, progress_event_id=message_id)
        else:
            shown = await self._edit(message_id, shown, None)
        await self.throttle.wait()
        while op.state in ACTIVE_STATES and not self._final:
            await self._dirty.wait()
            self._dirty.clear()
            await self.throttle.wait()
            op, steps = await self._load()
            shown = await self._edit(message_id, render(op, steps, self.notes), shown)
        self.finishing = True
        op, steps = await self._load()  # the final event may have come during the last edit
        result = render_result(op, steps)
        content = notice(result, command_event_id=self.command_event_id, final=True, relates_to=self.relates_to)
        await self.outbox.send(self.room_id, content, txn_id=result_txn_id(self.op_id, content))
        if op.finished_at is not None:  # told: a restart from here on does not tell it again
            await self.store.ops.update(self.op_id, reported_at=op.finished_at)
        # The result is out (it notifies); the last edit may wait for its turn.
        await self.throttle.wait()
        await self._edit(message_id, render(op, steps, self.notes), shown)

    async def _load(self) -> tuple[Operation, list[StepRecord]]:
        op = await self.store.ops.get(self.op_id)
        if op is None:
            raise LookupError(f"operation {self.op_id} vanished")
        return op, await self.store.steps.of(self.op_id)

    async def _edit(self, message_id: str, reply: Reply, shown: Reply | None) -> Reply:
        if reply == shown:
            return reply
        self._seq += 1
        content = edit(message_id, reply, command_event_id=self.command_event_id)
        await self.outbox.send(self.room_id, content, txn_id=f"hiclaw.op{self.op_id}.edit.{self._run}.{self._seq}")
        return reply


class ProgressHub:
    """Routes the engine's progress events to one :class:`Reporter` per tracked operation."""

    def __init__(self, engine: Engine, store: Store, outbox: Outbox, *, clock: Clock | None = None,
                 interval: float = 1.0) -> None:
        self.engine = engine
        self.store = store
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.interval = interval
        self._reporters: dict[int, Reporter] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subscribed = asyncio.Event()
        self._pump = asyncio.create_task(self._forward(subscribed), name="progress-hub")
        await subscribed.wait()

    async def stop(self, grace: float = 3.0) -> None:
        """Stop reporting; a reporter whose result is already out may finish its last edit first.

        That edit waits for its turn under the edit rate limit, so stopping right after a result
        (a restart, a test's end) would otherwise leave the progress message one step behind.
        """
        finishing = [task for op_id, task in self._tasks.items()
                     if (reporter := self._reporters.get(op_id)) is not None and reporter.finishing]
        if finishing:
            await asyncio.wait(finishing, timeout=grace)
        tasks = [t for t in (self._pump, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pump = None
        self._tasks.clear()
        self._reporters.clear()

    def track(self, op: Operation, relates_to: Mapping[str, Any] | None, *, command_event_id: str | None = None,
              after: asyncio.Event | None = None) -> bool:
        """Report ``op`` in its room; False (and nothing done) if it is already reported or has no room.

        ``command_event_id`` is the command being answered: the one that started the operation by
        default, or the ``!op retry`` that resumed it. ``after`` holds the reporter back until it is
        set (the dispatcher's own answer goes first). A reporter that is only finishing (its result
        sent) does not count: the new one takes over the same message once the old one is done.
        """
        current = self._reporters.get(op.op_id)
        if (current is not None and not current.finishing) or not op.room_id:
            return False
        reporter = Reporter(op, relates_to, command_event_id=command_event_id, store=self.store,
                            outbox=self.outbox, clock=self.clock, interval=self.interval)
        previous = self._tasks.get(op.op_id)
        self._reporters[op.op_id] = reporter
        task = asyncio.create_task(self._report(reporter, previous, after), name=f"progress-op-{op.op_id}")
        self._tasks[op.op_id] = task
        return True

    async def wait(self, op_id: int) -> None:
        """Until the reporters of ``op_id`` (if any) have sent their result and last edit."""
        while (task := self._tasks.get(op_id)) is not None:
            if task.done():  # cancelled before it ever ran: nothing left to clean up after it
                self._tasks.pop(op_id, None)
                self._reporters.pop(op_id, None)
                continue
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def _report(self, reporter: Reporter, previous: asyncio.Task[None] | None,
                      after: asyncio.Event | None) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            if after is not None:
                await after.wait()
            await reporter.run()
        except SendFailed as exc:
            log.warning("progress of operation %s could not be sent: %s", reporter.op_id, exc)
        except Exception:
            log.exception("progress of operation %s stopped", reporter.op_id)
        finally:
            if self._reporters.get(reporter.op_id) is reporter:
                del self._reporters[reporter.op_id]
                self._tasks.pop(reporter.op_id, None)

    async def _forward(self, subscribed: asyncio.Event) -> None:
        async with self.engine.subscribe() as queue:
            subscribed.set()
            while True:
                event = await queue.get()
                reporter = self._reporters.get(event.op_id)
                if reporter is not None:
                    reporter.poke(event)
