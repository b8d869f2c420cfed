"""Running one operation: its steps in dependency order, each checkpointed, and compensation.

Every step attempt follows the contract of ARCHITECTURE §3::

    mark running ─► observe ─► found? ─► commit done (adopted) ─────────────────┐
                        │                                                       │
                        └► commit intent ─► do() ─► commit done + external id ──┴► next steps

No SQLite transaction is open while a step awaits the network. A crash anywhere leaves the step
``running``; on resume it starts again at *observe*, which finds what the lost ``do`` made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from hiclaw_bot.engine.errors import classify, describe, expected, is_gone
from hiclaw_bot.engine.events import EventBus, EventKind, ProgressEvent
from hiclaw_bot.engine.faults import BoundaryHook
from hiclaw_bot.engine.retry import RetryPolicy
from hiclaw_bot.engine.steps import Done, Outcome, Skipped, Step, StepContext, dependencies
from hiclaw_bot.timing import Clock
from storage import Operation, ResourceState, Statement, Store

log = logging.getLogger("hiclaw_bot.engine")


class StepFailed(Exception):
    """A step gave up; ``reason`` is what a person should read."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class _Spent(stop_base):
    """Stop once the engine's clock passes ``deadline`` (tenacity's own ``stop_after_delay`` reads the real one)."""

    def __init__(self, clock: Clock, deadline: float) -> None:
        self._clock = clock
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._clock.monotonic() >= self._deadline


class Executor:
    """Runs and compensates operations; owns no scheduling (see :class:`Engine`)."""

    def __init__(self, store: Store, bus: EventBus, clock: Clock, retry: RetryPolicy,
                 hook: BoundaryHook | None) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.retry = retry
        self.hook = hook
        self._calls: dict[tuple[int, str], list[tuple[str, float]]] = {}
        """External calls of steps under way, by (op, step), until their event carries them."""

    # -- events ---------------------------------------------------------------------------------

    def emit(self, op: Operation, kind: EventKind, **fields: Any) -> None:
        self.bus.publish(ProgressEvent(kind=kind, op_id=op.op_id, op_kind=op.kind, subject=op.subject,
                                       **fields))

    def _calls_of(self, op: Operation, step: Step) -> list[tuple[str, float]]:
        return self._calls.setdefault((op.op_id, step.name), [])

    def _take_calls(self, op: Operation, step: Step) -> tuple[tuple[str, float], ...]:
        return tuple(self._calls.pop((op.op_id, step.name), ()))

    def _boundary(self, op: Operation, step: Step, point: str) -> None:
        if self.hook is not None:
            self.hook(op, step.name, point)

    # -- running --------------------------------------------------------------------------------

    async def run(self, op: Operation, steps: Sequence[Step]) -> None:
        """Drive ``op`` until every step is done, or one fails (then the op is ``failed``)."""
        deps = dependencies(steps)
        by_name = {s.name: s for s in steps}
        await self.store.steps.ensure(op.op_id, list(by_name))
        records = {r.name: r for r in await self.store.steps.of(op.op_id)}
        finished = {n for n, r in records.items() if r.status in ("done", "skipped")}
        outputs: dict[str, Mapping[str, Any]] = {
            n: (r.output or {}) for n, r in records.items() if r.status == "done"
        }
        pending = [s.name for s in steps if s.name not in finished]
        self.emit(op, EventKind.OP_STARTED)
        running: dict[asyncio.Task[Outcome], str] = {}
        failure: StepFailed | None = None
        try:
            while pending or running:
                if failure is None:
                    for name in [n for n in pending if all(d in finished for d in deps[n])]:
                        pending.remove(name)
                        task = asyncio.create_task(self._run_step(op, by_name[name], outputs))
                        running[task] = name
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    name = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        outcome = task.result()
                        finished.add(name)
                        if isinstance(outcome, Done):
                            outputs[name] = dict(outcome.output)
                    elif isinstance(exc, StepFailed):
                        failure = failure or exc
                    else:
                        raise exc
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        if failure is not None:
            await self.store.ops.update(op.op_id, state="failed", failed_step=failure.step,
                                        error=failure.reason)
            self.emit(op, EventKind.OP_FAILED, step=failure.step, error=failure.reason)
            return
        await self.store.ops.update(op.op_id, state="succeeded", finished_at=self.store.db.now(),
                                    error=None, failed_step=None)
        self.emit(op, EventKind.OP_SUCCEEDED)

    async def _run_step(self, op: Operation, step: Step, outputs: Mapping[str, Mapping[str, Any]]) -> Outcome:
        started = self.clock.monotonic()
        spent = [0.0]

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else None
            log.warning("op %s step %s attempt %s failed, retrying in %.1fs: %s", op.op_id, step.name,
                        state.attempt_number, delay or 0.0, describe(exc) if exc else "")
            self.emit(op, EventKind.STEP_RETRYING, step=step.name, attempt=state.attempt_number,
                      error=describe(exc) if exc else None, delay=delay)

        policy = step.retry or self.retry
        retrying = AsyncRetrying(
            stop=self._stop(step, policy, started), wait=policy.wait(),
            retry=retry_if_exception(lambda e: classify(e).transient), sleep=self.clock.sleep,
            before_sleep=before_sleep, reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(op, step, dict(outputs), attempt.retry_state.attempt_number,
                                               started, spent)
        except asyncio.CancelledError:
            self._take_calls(op, step)
            raise
        except Exception as exc:
            verdict = classify(exc)
            reason = describe(exc)
            if verdict.transient:
                tried = retrying.statistics.get("attempt_number", policy.max_attempts)
                reason = f"gave up after {tried} attempts: {reason}"
            if expected(exc):
                log.warning("op %s step %s failed: %s", op.op_id, step.name, reason)
            else:  # a bug, not a refusal from outside: keep the traceback for the log, never the chat
                log.error("op %s step %s failed: %s", op.op_id, step.name, reason, exc_info=exc)
            await self.store.steps.update(op.op_id, step.name, status="failed", error=reason,
                                          finished_at=self.store.db.now())
            self.emit(op, EventKind.STEP_FAILED, step=step.name, error=reason, error_class=type(exc).__name__,
                      calls=self._take_calls(op, step))
            raise StepFailed(step.name, reason) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _stop(self, step: Step, policy: RetryPolicy, started: float) -> stop_base:
        """Stop after the policy's attempts or, when the step declares a ``timeout``, once it is spent."""
        attempts = stop_after_attempt(policy.max_attempts)
        timeout = step.timeout
        if timeout is None:
            return attempts
        return stop_any(attempts, _Spent(self.clock, started + timeout))

    async def _attempt(self, op: Operation, step: Step, outputs: dict[str, Mapping[str, Any]],
                       number: int, started: float, spent: list[float]) -> Outcome:
        ctx = StepContext(op, self.store, outputs, self._calls_of(op, step))
        # "running" is written with the intent (or with the result, when observe finds it done):
        # a crashed step resumes at observe whether it reads pending or running, so a separate
        # checkpoint before observe would cost a transaction and buy nothing.
        attempt: dict[str, Any] = {"status": "running", "attempts": number}
        if number == 1:
            attempt["started_at"] = self.store.db.now()
            self.emit(op, EventKind.STEP_STARTED, step=step.name)
        try:
            outcome = await step.observe(ctx)
            if outcome is not None:
                await self._commit(op, step, outcome, ctx, started, spent, observed=True, attempt=attempt)
                return outcome
            self._boundary(op, step, "before_intent")
            intent = [self.store.steps.update_statement(op.op_id, step.name, **attempt),
                      self.store.steps.bump_statement(op.op_id, step.name, "calls")]
            if step.resource is not None:
                intent.insert(0, self._ledger_statement(op, step, "deleting" if step.destroys else "intended"))
            await self.store.db.write(intent)  # one trip, possibly one commit with other operations'
            self._boundary(op, step, "after_intent")
            outcome = await step.do(ctx)
            self._boundary(op, step, "after_call")
        finally:
            spent[0] += ctx.external_seconds
        await self._commit(op, step, outcome, ctx, started, spent, observed=False)
        self._boundary(op, step, "after_commit")
        return outcome

    async def _commit(self, op: Operation, step: Step, outcome: Outcome, ctx: StepContext,
                      started: float, spent: list[float], *, observed: bool,
                      attempt: dict[str, Any] | None = None) -> None:
        duration_ms = (self.clock.monotonic() - started) * 1000
        external_ms = (spent[0] + (ctx.external_seconds if observed else 0.0)) * 1000
        record = self.store.steps.update_statement(
            op.op_id, step.name, **{**(attempt or {}),
            "status": "skipped" if isinstance(outcome, Skipped) else "done"},
            output=json.dumps(dict(outcome.output) if isinstance(outcome, Done) else
                              {"skipped": outcome.reason}, sort_keys=True, default=str),
            adopted=0, finished_at=self.store.db.now(), duration_ms=duration_ms,
            external_ms=external_ms, error=None,
        )
        adopted = False
        if isinstance(outcome, Done) and step.resource is not None:
            # created, deleted, or (found by observe) decided by SQL from what the ledger holds
            state: ResourceState | None = "deleted" if step.destroys else None if observed else "created"
            resource = step.resource
            results = await self.store.db.write([
                self._ledger_statement(op, step, state, external_id=outcome.external_id,
                                       spec_hash=outcome.spec_hash),
                record,
                self.store.steps.mark_adopted_statement(op.op_id, step.name, resource.kind, resource.name),
                Statement("SELECT adopted FROM steps WHERE op_id = ? AND name = ?", (op.op_id, step.name),
                          rows=True),
            ])
            adopted = bool(results[-1][0][0])
        else:
            await self.store.db.write([record])
        calls = self._take_calls(op, step)
        if isinstance(outcome, Skipped):
            self.emit(op, EventKind.STEP_SKIPPED, step=step.name, error=outcome.reason, calls=calls)
        else:
            self.emit(op, EventKind.STEP_DONE, step=step.name, duration_ms=duration_ms,
                      external_ms=external_ms, adopted=adopted, calls=calls)

    def _ledger_statement(self, op: Operation, step: Step, state: ResourceState | None, *,
                          external_id: str | None = None, spec_hash: str | None = None) -> Statement:
        ref = step.resource
        assert ref is not None
        return self.store.ledger.record_statement(
            ref.kind, ref.name, state, owner=ref.owner or op.subject, now=self.store.db.now(), op_id=op.op_id,
            step=step.name, external_id=external_id, spec_hash=spec_hash,
        )

    # -- compensation ---------------------------------------------------------------------------

    async def compensate(self, op: Operation, steps: Sequence[Step]) -> bool:
        """Undo, in reverse, every step that may have had an effect; True when all are undone."""
        records = {r.name: r for r in await self.store.steps.of(op.op_id)}
        self.emit(op, EventKind.OP_COMPENSATING)
        for step in reversed(steps):
            record = records.get(step.name)
            if record is None or record.status not in ("done", "running", "failed"):
                continue
            try:
                await self._undo(op, step, record.output or {}, keep=record.adopted and not step.undo_adopted)
            except StepFailed as failed:
                await self.store.ops.update(op.op_id, error=f"undo of {failed.step} failed: {failed.reason}",
                                            failed_step=failed.step)
                self.emit(op, EventKind.OP_FAILED, step=failed.step, error=failed.reason)
                return False
        await self.store.ops.update(op.op_id, state="compensated", finished_at=self.store.db.now())
        self.emit(op, EventKind.OP_COMPENSATED)
        return True

    async def _undo(self, op: Operation, step: Step, output: Mapping[str, Any], *, keep: bool) -> None:
        started = time.perf_counter()
        if not keep:
            policy = step.retry or self.retry
            retrying = AsyncRetrying(
                stop=stop_after_attempt(policy.max_attempts), wait=policy.wait(),
                retry=retry_if_exception(lambda e: classify(e).transient), sleep=self.clock.sleep,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._undo_once(op, step, output)
            except asyncio.CancelledError:
                self._take_calls(op, step)
                raise
            except Exception as exc:
                self._take_calls(op, step)
                raise StepFailed(step.name, describe(exc)) from exc
        undone = [self.store.steps.update_statement(op.op_id, step.name, status="compensated")]
        if step.resource is not None and not step.destroys and not keep:
            undone.insert(0, self._ledger_statement(op, step, "deleted"))
        await self.store.db.write(undone)
        self.emit(op, EventKind.STEP_COMPENSATED, step=step.name,
                  duration_ms=(time.perf_counter() - started) * 1000, adopted=keep, calls=self._take_calls(op, step))

    async def _undo_once(self, op: Operation, step: Step, output: Mapping[str, Any]) -> None:
        ctx = StepContext(op, self.store, {}, self._calls_of(op, step))
        if step.resource is not None and not step.destroys:
            await self.store.db.write([self._ledger_statement(op, step, "deleting")])
        try:
            await step.undo(ctx, output)
        except Exception as exc:
            if not is_gone(exc):
                raise
