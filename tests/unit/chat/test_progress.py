"""The progress reporter: one message edited in place, throttled, then a new result message."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
import nio
import pytest

from hiclaw_bot.chat.matrix import NioOutbox
from hiclaw_bot.chat.progress import ProgressHub, Throttle, render
from hiclaw_bot.chat.replies import REPLY_KEY, SendFailed
from hiclaw_bot.engine import Done, Engine, FakeClock, FuncStep, Outcome, PermanentError, RetryPolicy, StepContext
from storage import Operation, StepRecord, Store
from tests.unit.chat.conftest import RecordingOutbox

ROOM = "!room:example.org"


class Gates:
    """Steps that wait until the test lets them finish (or fail)."""

    def __init__(self) -> None:
        self.open: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()

    def steps(self, op: Operation) -> list[FuncStep]:
        def make(name: str) -> FuncStep:
            async def do(ctx: StepContext) -> Outcome:
                await self.open.setdefault(name, asyncio.Event()).wait()
                if name in self.fail:
                    self.fail.discard(name)
                    raise PermanentError(f"{name} exploded")
                return Done({"ok": name})

            async def undo(ctx: StepContext, output: Mapping[str, Any]) -> None:
                return None

            return FuncStep(name, do, undo=undo)

        return [make(n) for n in op.params["steps"]]

    async def release(self, name: str) -> None:
        self.open.setdefault(name, asyncio.Event()).set()
        for _ in range(30):
            await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def engine(store: Store, gates: Gates) -> AsyncIterator[Engine]:
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    engine.register("gated", gates.steps)
    yield engine
    await engine.stop()


@pytest.fixture
async def hub(engine: Engine, store: Store, outbox: RecordingOutbox, clock: FakeClock) -> AsyncIterator[ProgressHub]:
    outbox.now = clock.monotonic
    hub = ProgressHub(engine, store, outbox, clock=clock, interval=1.0)
    await hub.start()
    yield hub
    await hub.stop()


async def submit(engine: Engine, hub: ProgressHub, steps: list[str], event: str = "$cmd") -> Operation:
    sub = await engine.submit("gated", "demo:x", {"steps": steps}, room_id=ROOM, source_event_id=event)
    assert hub.track(sub.op, {"m.in_reply_to": {"event_id": event}})
    return sub.op


def edits_of(outbox: RecordingOutbox) -> list[Any]:
    return [s for s in outbox.sent if s.content.get("m.relates_to", {}).get("rel_type") == "m.replace"]


async def test_one_message_edited_in_place_then_a_result(engine: Engine, hub: ProgressHub, gates: Gates,
                                                         outbox: RecordingOutbox, store: Store) -> None:
    op = await submit(engine, hub, ["one", "two", "three"])
    for name in ("one", "two", "three"):
        await gates.release(name)
    await engine.wait(op.op_id)
    await hub.wait(op.op_id)

    first, *rest = outbox.sent
    assert first.txn_id == f"hiclaw.op{op.op_id}.progress"
    assert first.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}
    assert first.content[REPLY_KEY] == {"command": "$cmd", "final": False}
    stored = await store.ops.get(op.op_id)
    assert stored is not None
    assert stored.progress_event_id == first.event_id

    edits = edits_of(outbox)
    assert edits, "the progress message was never edited"
    assert all(e.content["m.relates_to"]["event_id"] == first.event_id for e in edits)
    assert "✓ three" in edits[-1].content["m.new_content"]["body"]

    results = [s for s in rest if s not in edits]
    assert len(results) == 1
    assert "succeeded" in results[0].content["body"]
    assert results[0].content[REPLY_KEY] == {"command": "$cmd", "final": True}
    assert results[0].content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}

    times = [s.at for s in outbox.sent if s is first or s in edits]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), times
    assert len({s.txn_id for s in outbox.sent}) == len(outbox.sent)


async def test_events_while_throttled_are_coalesced(engine: Engine, hub: ProgressHub, gates: Gates,
                                                   outbox: RecordingOutbox) -> None:
    names = [f"s{i}" for i in range(12)]
    for name in names:
        gates.open[name] = asyncio.Event()
        gates.open[name].set()
    op = await submit(engine, hub, names)
    await engine.wait(op.op_id)
    await hub.wait(op.op_id)
    assert len(edits_of(outbox)) < 2 * len(names)  # two events per step, far fewer edits


async def test_failure_then_retry_reuses_the_progress_message(engine: Engine, hub: ProgressHub, gates: Gates,
                                                              outbox: RecordingOutbox) -> None:
    gates.fail.add("two")
    op = await submit(engine, hub, ["one", "two"])
    await gates.release("one")
    await gates.release("two")
    await engine.wait(op.op_id)
    await hub.wait(op.op_id)
    failure = outbox.sent[-1].content["body"]
    assert f"failed at step two: two exploded. Fix the cause, then `!op retry {op.op_id}`" in failure

    progress_id = outbox.sent[0].event_id
    count = len(outbox.sent)
    retried = await engine.retry(op.op_id)
    assert hub.track(retried, {"m.in_reply_to": {"event_id": "$retry"}}, command_event_id="$retry")
    await engine.wait(op.op_id)
    await hub.wait(op.op_id)
    later = outbox.sent[count:]
    results = [m for m in later if m.content["m.relates_to"].get("rel_type") != "m.replace"]
    assert len(results) == 1, "a second progress message was posted"
    assert "succeeded" in results[0].content["body"]
    assert results[0].content[REPLY_KEY] == {"command": "$retry", "final": True}
    assert all(m.content["m.relates_to"]["event_id"] == progress_id for m in later if m not in results)


async def test_a_reporter_that_cannot_send_gives_up_quietly(engine: Engine, hub: ProgressHub, gates: Gates,
                                                            outbox: RecordingOutbox) -> None:
    outbox.fail_next = 1
    op = await submit(engine, hub, ["one"])
    await hub.wait(op.op_id)
    assert outbox.sent == []
    await gates.release("one")
    assert (await engine.wait(op.op_id)).state == "succeeded"


def test_tracking_twice_or_without_a_room_does_nothing(hub: ProgressHub) -> None:
    op = Operation(op_id=7, kind="k", subject="s", params={}, actor=None, room_id=None, source_event_id=None,
                   state="running", error=None, failed_step=None, progress_event_id=None, created_at=0,
                   updated_at=0, finished_at=None)
    assert not hub.track(op, None)


async def test_throttle_spaces_turns_on_the_clock(clock: FakeClock) -> None:
    throttle = Throttle(clock, 1.0)
    await throttle.wait()
    await throttle.wait()
    await throttle.wait()
    assert clock.sleeps == [1.0, 1.0]
    clock.advance(0.4)
    await throttle.wait()
    assert clock.sleeps[-1] == pytest.approx(0.6)
    clock.advance(5)
    await throttle.wait()
    assert len(clock.sleeps) == 3


def _step(name: str, status: str, **fields: Any) -> StepRecord:
    values: dict[str, Any] = {"op_id": 1, "name": name, "position": 0, "status": status, "attempts": 1, "calls": 1,
                              "adopted": False, "started_at": None, "finished_at": None, "duration_ms": None,
                              "external_ms": 0.0, "error": None, "output": None}
    values.update(fields)
    return StepRecord(**values)


def test_render_shows_every_status() -> None:
    op = Operation(op_id=4, kind="worker.create", subject="worker:alice", params={"name": "alice"}, actor=None,
                   room_id=ROOM,
                   source_event_id="$c", state="running", error=None, failed_step=None, progress_event_id=None,
                   created_at=0, updated_at=0, finished_at=None)
    steps = [_step("secrets", "done", duration_ms=12), _step("account", "done", duration_ms=1500, adopted=True),
             _step("room", "running"), _step("mail", "skipped"), _step("gateway", "failed", error="503 <busy>"),
             _step("undone", "compensated", duration_ms=3), _step("later", "pending")]
    reply = render(op, steps, {"room": "attempt 2 failed, retrying in 1.0 s: timeout"})
    assert reply.text.splitlines() == [
        "⏳ running: creating worker alice (operation 4)",
        "✓ secrets  12 ms",
        "✓ account  1.5 s (found)",
        "… room  attempt 2 failed, retrying in 1.0 s: timeout",
        "↷ mail",
        "✗ gateway  503 <busy>",
        "↺ undone  3 ms",
        "· later",
    ]
    assert reply.html is not None
    assert "503 &lt;busy&gt;" in reply.html


class FakeNio:
    """nio's ``room_send`` as the outbox sees it: answers from a script, remembers the txn ids."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.txn_ids: list[str] = []

    async def room_send(self, room_id: str, message_type: str, content: dict[str, Any], tx_id: str) -> Any:
        self.txn_ids.append(tx_id)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _error(status: int, retry_after_ms: int | None = None) -> Any:
    error = nio.RoomSendError("nope", "M_LIMIT_EXCEEDED" if status == 429 else "M_FORBIDDEN", retry_after_ms)
    error.transport_response = SimpleNamespace(status=status)
    return error


async def test_outbox_retries_with_the_same_transaction_id() -> None:
    client = FakeNio([aiohttp.ClientConnectionError("reset"), _error(502), _error(429, 3000),
                      nio.RoomSendResponse("$ok", ROOM)])
    clock = FakeClock()
    outbox = NioOutbox(client, clock=clock)
    assert await outbox.send(ROOM, {"body": "x"}, txn_id="t-1") == "$ok"
    assert client.txn_ids == ["t-1"] * 4
    assert clock.sleeps == [0.2, 0.4, 3.0]  # doubling, stretched to the rate limit's hint


async def test_outbox_gives_up_at_once_on_a_refusal_and_after_retries_on_outages() -> None:
    clock = FakeClock()
    refused = NioOutbox(FakeNio([_error(403)]), clock=clock)
    with pytest.raises(SendFailed, match="refused"):
        await refused.send(ROOM, {}, txn_id="t")
    assert clock.sleeps == []
    down = NioOutbox(FakeNio([TimeoutError()] * 3), attempts=3, clock=clock)
    with pytest.raises(SendFailed, match="gave up after 3 attempts"):
        await down.send(ROOM, {}, txn_id="t")
    assert clock.sleeps == [0.2, 0.4]
