"""The engine's contract, on an in-memory world with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hiclaw_bot.engine import (
    Engine,
    EventKind,
    FakeClock,
    InvalidTransition,
    PermanentError,
    RetryPolicy,
    SubjectBusy,
)
from hiclaw_bot.engine.steps import Done, FuncStep, Skipped, StepContext
from storage import Operation, Store
from tests.unit.engine.world import Make, Refused, World, flaky

NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(store: Store, world: World, clock: FakeClock) -> AsyncIterator[Engine]:
    eng = make_engine(store, world, clock)
    yield eng
    await eng.stop()


def make_engine(store: Store, world: World, clock: FakeClock) -> Engine:
    eng = Engine(store, clock=clock, retry=RetryPolicy(max_attempts=4, initial=1, maximum=4, jitter=0))

    def build(op: Operation) -> list[Make]:
        return [Make(world, n) for n in op.params.get("names", NAMES)]

    eng.register("make", build)
    eng.register("destroy", build, supersedes_failed=True)
    return eng


async def run(engine: Engine, subject: str = "s", **kwargs: object) -> Operation:
    sub = await engine.submit("make", subject, **kwargs)  # type: ignore[arg-type]
    return await engine.wait(sub.op.op_id)


async def test_steps_run_in_order_and_land_in_the_ledger(engine: Engine, world: World, store: Store) -> None:
    op = await run(engine)
    assert op.state == "succeeded"
    assert world.creates == {n: 1 for n in NAMES}
    steps = await store.steps.of(op.op_id)
    assert [s.status for s in steps] == ["done"] * 4
    assert all(s.calls == 1 and not s.adopted for s in steps)
    ledger = await store.ledger.by_owner("s")
    assert [(r.external_name, r.state, r.external_id) for r in ledger] == [
        (n, "created", f"id-{n}") for n in NAMES
    ]


async def test_existing_objects_are_adopted_not_recreated(engine: Engine, world: World, store: Store) -> None:
    world.objects["b"] = "id-b-theirs"
    op = await run(engine)
    assert op.state == "succeeded"
    assert world.creates["b"] == 0
    row = await store.ledger.get("thing", "b")
    assert row is not None
    assert row.state == "adopted"
    assert row.external_id == "id-b-theirs"


async def test_transient_errors_back_off_then_succeed(engine: Engine, world: World, clock: FakeClock) -> None:
    world.faults["c"] = flaky(3)
    async with engine.subscribe() as events:
        op = await run(engine)
    assert op.state == "succeeded"
    assert clock.sleeps == [1, 2, 4]  # exponential, capped at 4 with no jitter
    retries = []
    while not events.empty():
        event = events.get_nowait()
        if event.kind is EventKind.STEP_RETRYING:
            retries.append((event.step, event.attempt))
    assert retries == [("c", 1), ("c", 2), ("c", 3)]


async def test_retry_after_hint_stretches_the_wait(engine: Engine, world: World, clock: FakeClock) -> None:
    class SlowDown(Exception):
        transient = True

        def __init__(self) -> None:
            super().__init__("429")
            self.retry_after = 3.5

    world.faults["a"] = [SlowDown()]
    assert (await run(engine)).state == "succeeded"
    assert clock.sleeps == [3.5]


async def test_exhausted_retries_fail_the_op_and_name_the_step(engine: Engine, world: World) -> None:
    world.faults["b"] = flaky(10)
    op = await run(engine)
    assert op.state == "failed"
    assert op.failed_step == "b"
    assert op.error is not None
    assert op.error.startswith("gave up after 4 attempts")
    assert "c" not in world.objects


async def test_permanent_error_fails_at_once_and_retry_resumes_there(
    engine: Engine, world: World, store: Store, clock: FakeClock
) -> None:
    world.faults["c"] = [PermanentError("quota exceeded")]
    op = await run(engine)
    assert (op.state, op.failed_step, op.error) == ("failed", "c", "quota exceeded")
    assert clock.sleeps == []
    await engine.retry(op.op_id)
    op = await engine.wait(op.op_id)
    assert op.state == "succeeded"
    assert world.creates == {n: 1 for n in NAMES}
    calls = {s.name: s.calls for s in await store.steps.of(op.op_id)}
    assert calls == {"a": 1, "b": 1, "c": 2, "d": 1}  # the failed call, then the retry; a, b not repeated


async def test_reissuing_the_failed_command_resumes_it(engine: Engine, world: World) -> None:
    world.faults["d"] = [PermanentError("no")]
    first = await run(engine)
    assert first.state == "failed"
    again = await engine.submit("make", "s")
    assert again.resumed
    assert again.op.op_id == first.op_id
    assert (await engine.wait(first.op_id)).state == "succeeded"


async def test_a_second_command_on_a_busy_subject_is_refused_or_queued(engine: Engine, world: World) -> None:
    world.faults["a"] = [PermanentError("stuck")]
    failed = await run(engine)
    with pytest.raises(SubjectBusy) as busy:
        await engine.submit("make", "s", {"names": ["z"]})
    assert busy.value.holder.op_id == failed.op_id
    queued = await engine.submit("make", "s", {"names": ["z"]}, when_busy="queue")
    assert queued.op.state == "queued"
    await engine.abort(failed.op_id)
    await engine.wait(failed.op_id)
    assert (await engine.wait(queued.op.op_id)).state == "succeeded"
    assert "z" in world.objects


async def test_a_refused_submission_changes_nothing(engine: Engine, world: World, store: Store) -> None:
    world.faults["a"] = [PermanentError("stuck")]
    await run(engine)
    marked: list[int] = []

    async def mark(tx: object, op_id: int) -> None:
        marked.append(op_id)

    with pytest.raises(SubjectBusy):
        await engine.submit("make", "s", {"names": ["q"]}, same_transaction=mark)  # type: ignore[arg-type]
    assert marked == []
    assert len(await store.ops.find()) == 1


async def test_delete_supersedes_a_failed_create(engine: Engine, world: World, store: Store) -> None:
    world.faults["b"] = [PermanentError("broken")]
    failed = await run(engine)
    sub = await engine.submit("destroy", "s")
    assert sub.created
    assert (await store.ops.get(failed.op_id)).state == "cancelled"  # type: ignore[union-attr]
    await engine.wait(sub.op.op_id)


async def test_same_event_twice_is_one_operation(engine: Engine, store: Store) -> None:
    one = await engine.submit("make", "s", source_event_id="$e1")
    two = await engine.submit("make", "s", source_event_id="$e1")
    assert not two.created
    assert two.op.op_id == one.op.op_id
    await engine.wait(one.op.op_id)
    assert len(await store.ops.find()) == 1


async def test_abort_undoes_in_reverse_and_gone_is_success(engine: Engine, world: World, store: Store) -> None:
    world.faults["d"] = [PermanentError("no")]
    world.objects["b"] = "theirs"  # adopted: an abort must leave it alone
    op = await run(engine)
    del world.objects["c"]  # vanished behind our back: undo must treat it as done
    order: list[str] = []
    original = world.delete

    def spy(name: str) -> None:
        order.append(name)
        original(name)

    world.delete = spy  # type: ignore[method-assign]
    await engine.abort(op.op_id)
    op = await engine.wait(op.op_id)
    assert op.state == "compensated"
    assert order == ["d", "c", "a"]  # d may have been made before failing; b was adopted
    assert world.objects == {"b": "theirs"}
    states = {r.external_name: r.state for r in await store.ledger.by_owner("s", live_only=False)}
    assert states == {"a": "deleted", "b": "adopted", "c": "deleted", "d": "deleted"}
    with pytest.raises(InvalidTransition):
        await engine.abort(op.op_id)


async def test_a_stalled_undo_keeps_the_op_until_it_succeeds(engine: Engine, world: World) -> None:
    world.faults["d"] = [PermanentError("no")]
    op = await run(engine)
    world.faults["delete:b"] = [Refused("permission denied")]
    await engine.abort(op.op_id)
    op = await engine.wait(op.op_id)
    assert op.state == "compensating"
    assert op.error is not None
    assert "permission denied" in op.error
    await engine.abort(op.op_id)
    assert (await engine.wait(op.op_id)).state == "compensated"
    assert world.objects == {}


async def test_resume_after_restart_observes_before_doing(store: Store, world: World, clock: FakeClock) -> None:
    first = make_engine(store, world, clock)
    world.faults["c"] = [PermanentError("crash stand-in")]
    op = await run(first)
    # Simulate a crash mid-step: the step is left running and its object was made.
    await store.ops.update(op.op_id, state="running", error=None, failed_step=None)
    await store.steps.update(op.op_id, "c", status="running")
    world.objects["c"] = "id-c"
    await first.stop()
    second = make_engine(store, world, clock)
    assert await second.start() == [op.op_id]
    op = await second.wait(op.op_id)
    await second.stop()
    assert op.state == "succeeded"
    assert world.creates["c"] == 0
    row = await store.ledger.get("thing", "c")
    assert row is not None
    assert row.state == "created"


async def test_independent_steps_run_concurrently(store: Store, clock: FakeClock) -> None:
    import asyncio

    running: set[str] = set()
    overlap: list[set[str]] = []

    def slow(name: str) -> FuncStep:
        async def do(ctx: StepContext) -> Done:
            running.add(name)
            await asyncio.sleep(0.01)
            overlap.append(set(running))
            running.discard(name)
            return Done()

        return FuncStep(name, do, after=("root",) if name != "root" else ())

    eng = Engine(store, clock=clock)
    eng.register("fan", lambda op: [slow("root"), slow("x"), slow("y")])
    sub = await eng.submit("fan", "s")
    assert (await eng.wait(sub.op.op_id)).state == "succeeded"
    assert {"x", "y"} in overlap


async def test_skipped_steps_do_not_block_dependants(store: Store, clock: FakeClock) -> None:
    async def skip(ctx: StepContext) -> Skipped:
        return Skipped("no gateway configured")

    async def uses(ctx: StepContext) -> Done:
        return Done({"saw": dict(ctx.output("gateway"))})

    eng = Engine(store, clock=clock)
    eng.register("k", lambda op: [FuncStep("gateway", skip), FuncStep("config", uses)])
    sub = await eng.submit("k", "s")
    assert (await eng.wait(sub.op.op_id)).state == "succeeded"
    steps = {s.name: s for s in await store.steps.of(sub.op.op_id)}
    assert steps["gateway"].status == "skipped"
    assert steps["config"].output == {"saw": {}}


async def test_a_bug_in_a_step_fails_the_op_without_a_traceback_in_the_error(store: Store, clock: FakeClock) -> None:
    async def broken(ctx: StepContext) -> Done:
        raise KeyError("missing")

    eng = Engine(store, clock=clock)
    eng.register("k", lambda op: [FuncStep("broken", broken)])
    sub = await eng.submit("k", "s")
    op = await eng.wait(sub.op.op_id)
    assert op.state == "failed"
    assert op.error == "'missing'"
    assert "Traceback" not in (op.error or "")


class Patient(Make):
    """A step that declares its own policy (kopf-style): two attempts, whatever the engine's."""

    retry = RetryPolicy(max_attempts=2, initial=1, maximum=4, jitter=0)


async def run_alone(store: Store, clock: FakeClock, step: Make) -> Operation:
    """Run ``step`` alone on an engine that would try ten times, and say how the operation ended."""
    engine = Engine(store, clock=clock, retry=RetryPolicy(max_attempts=10, initial=1, maximum=4, jitter=0))
    engine.register("make", lambda op: [step])
    try:
        return await run(engine)
    finally:
        await engine.stop()


async def test_a_step_declares_its_own_retry_policy(store: Store, world: World, clock: FakeClock) -> None:
    world.faults["a"] = flaky(3)
    op = await run_alone(store, clock, Patient(world, "a"))
    assert op.state == "failed"
    assert (op.error or "").startswith("gave up after 2 attempts")
    assert clock.sleeps == [1]


async def test_a_step_timeout_stops_the_retries_on_the_engine_clock(store: Store, world: World,
                                                                    clock: FakeClock) -> None:
    step = Make(world, "a")
    step.timeout = 2.5
    world.faults["a"] = flaky(9)
    op = await run_alone(store, clock, step)
    assert op.state == "failed"
    assert (op.error or "").startswith("gave up after 3 attempts")  # failed at 0 s, 1 s and 3 s
    assert clock.sleeps == [1, 2]
