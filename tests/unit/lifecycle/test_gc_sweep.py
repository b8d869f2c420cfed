"""``gc.sweep`` deletes exactly the confirmed orphans, survives a crash at every step boundary, and
keeps what a worker has claimed since the proposal."""

from __future__ import annotations

import asyncio
import itertools
from functools import partial

import pytest

from backends import WorkerState
from hiclaw_bot.engine import BOUNDARIES, Engine, FakeClock
from hiclaw_bot.flows.gc import SUBJECT, SWEEP, sweep_steps
from hiclaw_bot.flows.inventory import PREFIX, RUNTIME, Orphan, inventory
from storage import Operation
from tests.unit.lifecycle.conftest import Rig, add_worker

ORPHANS = [Orphan(PREFIX, "agents/ghost/"), Orphan(PREFIX, "agents/ghost2/"), Orphan(RUNTIME, "ghost")]


class SimulatedCrash(BaseException):
    """Stands in for SIGKILL: the operation's task dies with its checkpoints as they were."""


async def furnish(rig: Rig) -> None:
    """A live worker, three orphans (two storage prefixes and a runtime) and a deleted team's kept work."""
    await add_worker(rig.store, "live")
    for key in ("agents/live/openclaw.json", "agents/ghost/openclaw.json", "agents/ghost2/notes.md",
                "teams/gteam/notes.md"):
        await rig.services.objects.put(key, b"x")
    rig.backend.show("live", WorkerState.RUNNING)
    rig.backend.show("ghost", WorkerState.STOPPED)


def engine(rig: Rig, crash_at: tuple[str, str] | None = None) -> Engine:
    def hook(op: Operation, step: str, point: str) -> None:
        if (step, point) == crash_at:
            raise SimulatedCrash

    made = Engine(rig.store, clock=FakeClock(), boundary_hook=hook)
    made.register(SWEEP, partial(sweep_steps, rig.services))
    return made


async def test_the_inventory_finds_exactly_the_orphans(rig: Rig) -> None:
    await furnish(rig)
    assert (await inventory(rig.services)).orphans == sorted(ORPHANS)


@pytest.mark.parametrize(("step", "point"), list(itertools.product([PREFIX, RUNTIME], BOUNDARIES)))
async def test_a_sweep_killed_at_any_boundary_finishes_after_a_restart(rig: Rig, step: str, point: str) -> None:
    await furnish(rig)
    first = engine(rig, (step, point))
    sub = await first.submit(SWEEP, SUBJECT, {"orphans": [o.as_param() for o in ORPHANS]})
    await asyncio.gather(first.wait(sub.op.op_id), return_exceptions=True)
    await first.stop()
    second = engine(rig)
    assert sub.op.op_id in await second.start()
    assert (await second.wait(sub.op.op_id)).state == "succeeded"
    await second.stop()
    assert await rig.services.objects.list() == ["agents/live/openclaw.json", "teams/gteam/notes.md"]
    assert set(rig.backend.statuses) == {"live"}
    assert (await inventory(rig.services)).orphans == []


async def test_what_a_worker_claimed_since_the_proposal_is_kept(rig: Rig) -> None:
    await furnish(rig)
    await add_worker(rig.store, "ghost")  # a new worker of that name, created after the list was shown
    sweeper = engine(rig)
    sub = await sweeper.submit(SWEEP, SUBJECT, {"orphans": [o.as_param() for o in ORPHANS]})
    op = await sweeper.wait(sub.op.op_id)
    await sweeper.stop()
    assert op.state == "succeeded"
    assert sorted(await rig.services.objects.list()) == ["agents/ghost/openclaw.json", "agents/live/openclaw.json",
                                                          "teams/gteam/notes.md"]
    assert set(rig.backend.statuses) == {"live", "ghost"}
    steps = {s.name: s.output for s in await rig.store.steps.of(op.op_id)}
    assert steps[RUNTIME]["kept"] == ["runtime ghost"]
