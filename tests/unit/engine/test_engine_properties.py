"""Random interleavings of faults, crashes, retries and aborts keep the engine's invariants:

* no object is ever created while it already exists (no duplicate create);
* a compensated operation leaves nothing it created behind, and keeps what it adopted;
* terminal states are final;
* once the engine is quiet, the ledger agrees with the world.

A "crash" raises a BaseException from the boundary hook, which kills the operation's task with
its checkpoints exactly as they were, and then starts a new engine on the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hiclaw_bot.engine import BOUNDARIES, Engine, FakeClock, InvalidTransition, PermanentError, RetryPolicy
from storage import TERMINAL_OP_STATES, Operation, Store
from tests.unit.engine.world import Make, Refused, World, flaky

NAMES = ["a", "b", "c"]


class SimulatedCrash(BaseException):
    """Stands in for SIGKILL: nothing after the boundary runs, nothing is cleaned up."""


class EngineMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.store = self.loop.run_until_complete(Store.open(Path(self.tmp.name) / "db.sqlite"))
        self.world = World()
        self.duplicates = 0
        self.crash_at: tuple[str, str] | None = None
        self.final_states: dict[int, str] = {}
        self.preexisting: set[str] = set()
        self.engine = self._engine()

    def _engine(self) -> Engine:
        def hook(op: Operation, step: str, point: str) -> None:
            if self.crash_at == (step, point):
                self.crash_at = None
                raise SimulatedCrash

        engine = Engine(self.store, clock=FakeClock(), boundary_hook=hook,
                        retry=RetryPolicy(max_attempts=3, initial=0.1, maximum=0.2, jitter=0))
        world = self.world
        original = world.create

        def counting_create(name: str) -> str:
            if name in world.objects:
                self.duplicates += 1
            return original(name)

        world.create = counting_create  # type: ignore[method-assign]
        engine.register("make", lambda op: [Make(world, n) for n in NAMES])
        return engine

    def run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def teardown(self) -> None:
        self.run(self.engine.stop())
        self.run(self.store.close())
        self.loop.close()
        self.tmp.cleanup()

    def ops(self) -> list[Operation]:
        return self.run(self.store.ops.find(limit=1000))  # type: ignore[return-value]

    async def settle(self) -> None:
        while self.engine.busy:  # noqa: ASYNC110 -- finished ops may promote queued ones: poll the count
            await asyncio.sleep(0.001)

    # -- rules ----------------------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES))
    def preexisting_object(self, name: str) -> None:
        if name not in self.world.objects and not self.ops():
            self.world.objects[name] = f"theirs-{name}"
            self.preexisting.add(name)

    @rule(name=st.sampled_from(NAMES), kind=st.sampled_from(["transient", "permanent", "refused"]),
          count=st.integers(1, 4))
    def inject_fault(self, name: str, kind: str, count: int) -> None:
        errors = {"transient": flaky(count), "permanent": [PermanentError("no")],
                  "refused": [Refused("denied")]}[kind]
        self.world.faults.setdefault(name, []).extend(errors)

    @rule(name=st.sampled_from(NAMES), kind=st.sampled_from(["transient", "refused"]))
    def inject_undo_fault(self, name: str, kind: str) -> None:
        self.world.faults.setdefault(f"delete:{name}", []).extend(
            flaky(1) if kind == "transient" else [Refused("denied")])

    @rule(step=st.sampled_from(NAMES), point=st.sampled_from(BOUNDARIES))
    def arm_crash(self, step: str, point: str) -> None:
        self.crash_at = (step, point)

    @rule()
    def submit(self) -> None:
        async def go() -> None:
            with contextlib.suppress(InvalidTransition):
                await self.engine.submit("make", "subject", when_busy="queue")
            await self.settle()

        self.run(go())

    @rule()
    def restart(self) -> None:
        self.run(self.engine.stop())
        self.engine = self._engine()
        self.run(self.engine.start())
        self.run(self.settle())

    @precondition(lambda self: any(op.state in ("failed", "compensating") for op in self.ops()))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        candidates = [op for op in self.ops() if op.state in ("failed", "compensating")]
        op = data.draw(st.sampled_from(candidates))
        self.run(self.engine.retry(op.op_id))
        self.run(self.settle())

    @precondition(lambda self: any(not op.terminal for op in self.ops()))
    @rule(data=st.data())
    def abort(self, data: st.DataObject) -> None:
        candidates = [op for op in self.ops() if not op.terminal]
        op = data.draw(st.sampled_from(candidates))
        self.run(self.engine.abort(op.op_id))
        self.run(self.settle())

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def no_duplicate_creates(self) -> None:
        if hasattr(self, "world"):
            assert self.duplicates == 0

    @invariant()
    def terminal_states_are_final(self) -> None:
        if not hasattr(self, "store"):
            return
        for op in self.ops():
            if op.op_id in self.final_states:
                assert op.state == self.final_states[op.op_id], (op.op_id, op.state)
            elif op.state in TERMINAL_OP_STATES:
                self.final_states[op.op_id] = op.state

    @invariant()
    def compensation_removes_exactly_what_was_created(self) -> None:
        if not hasattr(self, "store") or self.engine.busy:
            return
        ops = self.ops()
        if ops and all(op.state in ("compensated", "cancelled") for op in ops):
            made_by_us = {n for n in NAMES if n not in self.preexisting}
            assert not made_by_us & set(self.world.objects), self.world.objects
            assert self.preexisting <= set(self.world.objects)

    @invariant()
    def ledger_agrees_with_the_world_when_quiet(self) -> None:
        if not hasattr(self, "store") or self.engine.busy:
            return
        ops = self.ops()
        if ops and ops[0].state == "succeeded":
            rows = self.run(self.store.ledger.live("thing"))
            assert {r.external_name: r.external_id for r in rows} == self.world.objects  # type: ignore[attr-defined]


EngineMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineProperties = EngineMachine.TestCase
