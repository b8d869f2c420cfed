"""Metrics follow the engine's events: step and per-system call latencies, failures, outcomes;
the state gauges come from the database at scrape time."""

from __future__ import annotations

import pytest

from hiclaw_bot.api import Metrics
from hiclaw_bot.engine import Done, Engine, FuncStep, Outcome, PermanentError, RetryPolicy, StepContext, TransientError
from hiclaw_bot.engine.events import EventBus, EventKind, ProgressEvent
from storage import Operation, Store


def steps(op: Operation) -> list[FuncStep]:
    async def talk(ctx: StepContext) -> Outcome:
        async with ctx.external("matrix"):
            pass
        async with ctx.external("storage"):
            pass
        async with ctx.external("storage"):
            pass
        return Done()

    async def maybe_fail(ctx: StepContext) -> Outcome:
        async with ctx.external("backend"):
            if ctx.params.get("fail"):
                raise PermanentError("the backend said no")
        return Done()

    return [FuncStep("talk", talk), FuncStep("act", maybe_fail)]


@pytest.fixture
async def engine(store: Store) -> Engine:
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    engine.register("demo.run", steps)
    return engine


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_events_feed_latency_failure_and_outcome_metrics(engine: Engine, store: Store) -> None:
    metrics = Metrics()
    stop = engine.bus.listen(metrics.observe)
    try:
        ok = await engine.submit("demo.run", "demo:a")
        bad = await engine.submit("demo.run", "demo:b", {"fail": True})
        assert (await engine.wait(ok.op.op_id)).state == "succeeded"
        assert (await engine.wait(bad.op.op_id)).state == "failed"
    finally:
        stop()
        await engine.stop()
    assert value(metrics, "hiclaw_external_call_duration_seconds_count", system="matrix") == 2
    assert value(metrics, "hiclaw_external_call_duration_seconds_count", system="storage") == 4
    assert value(metrics, "hiclaw_external_call_duration_seconds_count", system="backend") == 2
    assert value(metrics, "hiclaw_step_duration_seconds_count", kind="demo.run", step="talk") == 2
    assert value(metrics, "hiclaw_step_duration_seconds_count", kind="demo.run", step="act") == 1
    assert value(metrics, "hiclaw_step_failures_total", kind="demo.run", step="act", error_class="PermanentError") == 1
    assert value(metrics, "hiclaw_operations_finished_total", kind="demo.run", outcome="succeeded") == 1
    assert value(metrics, "hiclaw_operations_finished_total", kind="demo.run", outcome="failed") == 1

    await store.workers.insert("w1", backend="process", state="Running", desired_state="Running")
    await store.workers.insert("w2", backend="process", state="Sleeping", desired_state="Sleeping")
    await store.workers.insert("w3", backend="process", state="Running", desired_state="Running")
    text = (await metrics.render(store)).decode()
    assert 'hiclaw_workers{state="Running"} 2.0' in text
    assert 'hiclaw_workers{state="Sleeping"} 1.0' in text
    assert 'hiclaw_operations{kind="demo.run",state="succeeded"} 1.0' in text
    assert 'hiclaw_operations{kind="demo.run",state="failed"} 1.0' in text

    await store.workers.delete("w2")
    text = (await metrics.render(store)).decode()
    assert 'hiclaw_workers{state="Sleeping"}' not in text, "a state with no workers left disappears"


async def test_a_failing_listener_never_stops_the_engine() -> None:
    bus = EventBus()
    seen: list[EventKind] = []

    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("observer bug")

    bus.listen(broken)
    stop = bus.listen(lambda e: seen.append(e.kind))
    bus.publish(ProgressEvent(EventKind.OP_STARTED, 1, "k", "s"))
    stop()
    bus.publish(ProgressEvent(EventKind.OP_SUCCEEDED, 1, "k", "s"))
    assert seen == [EventKind.OP_STARTED]


async def test_step_events_carry_the_calls_of_every_attempt_and_of_undo(store: Store) -> None:
    attempts: list[int] = []

    async def flaky(ctx: StepContext) -> Outcome:
        attempts.append(1)
        async with ctx.external("higress"):
            if len(attempts) == 1:
                raise TransientError("502 from the console")
        return Done()

    async def undo(ctx: StepContext, output: object) -> None:
        async with ctx.external("higress"):
            pass

    async def refuse(ctx: StepContext) -> Outcome:
        raise PermanentError("quota exceeded")

    engine = Engine(store, retry=RetryPolicy(max_attempts=3, initial=0.001, maximum=0.002))
    engine.register("demo.flaky", lambda op: [FuncStep("authorize", flaky, undo=undo), FuncStep("next", refuse)])
    events: list[ProgressEvent] = []
    stop = engine.bus.listen(events.append)
    try:
        submitted = await engine.submit("demo.flaky", "demo:c")
        assert (await engine.wait(submitted.op.op_id)).state == "failed"
        await engine.abort(submitted.op.op_id)
        assert (await engine.wait(submitted.op.op_id)).state == "compensated"
    finally:
        stop()
        await engine.stop()
    [done] = [e for e in events if e.kind is EventKind.STEP_DONE]
    assert [system for system, _ in done.calls] == ["higress", "higress"], "the failed attempt's call counts too"
    assert all(seconds >= 0 for _, seconds in done.calls)
    undone = [e for e in events if e.kind is EventKind.STEP_COMPENSATED and e.step == "authorize"]
    assert [[system for system, _ in e.calls] for e in undone] == [["higress"]]
    [failed] = [e for e in events if e.kind is EventKind.STEP_FAILED]
    assert (failed.step, failed.error_class) == ("next", "PermanentError")
