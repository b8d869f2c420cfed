"""``!audit``: admins read back every decision the dispatcher recorded, filtered by worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hiclaw_bot.chat import Registry, default_registry
from hiclaw_bot.chat.audit import register_audit_command
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.grammar import BotIdentity
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Done, Engine, FakeClock, FuncStep, Outcome, RetryPolicy, StepContext
from storage import Operation, Store
from tests.unit.chat.conftest import BOT, RecordingOutbox, config, outbox
from tests.unit.chat.test_dispatch import STRANGER, ask

__all__ = ["config", "outbox"]


def one_step(op: Operation) -> list[FuncStep]:
    async def do(ctx: StepContext) -> Outcome:
        return Done()

    return [FuncStep("only", do)]


@pytest.fixture
async def world(config: Config, store: Store, outbox: RecordingOutbox) -> AsyncIterator[Dispatcher]:
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    engine.register("worker.wake", one_step)
    registry: Registry = default_registry()
    register_audit_command(registry)
    hub = ProgressHub(engine, store, outbox, clock=FakeClock(), interval=1.0)
    await hub.start()
    yield Dispatcher(config=config, store=store, engine=engine, registry=registry, hub=hub, outbox=outbox,
                     identity=BotIdentity(BOT, "HiClaw"), resolver=Resolver(config, store))
    await hub.stop()
    await engine.stop()


async def test_audit_lists_every_decision_newest_first(world: Dispatcher, outbox: RecordingOutbox,
                                                       store: Store) -> None:
    await ask(world, outbox, "!help")
    await ask(world, outbox, "!frobnicate")
    await ask(world, outbox, "!help", sender=STRANGER)
    await ask(world, outbox, "!op show nine")
    submitted = await world.engine.submit("worker.wake", "worker:ann", {"name": "ann"}, actor="api:ci")
    await world.engine.wait(submitted.op.op_id)
    await store.audit.add(actor="api:ci", command="worker wake", decision="started", subject="worker:ann",
                          op_id=submitted.op.op_id)

    text = await ask(world, outbox, "!audit")
    lines = text.splitlines()
    assert lines[0] == "The last 5 audit entries, newest first:"
    body = "\n".join(lines[2:])
    for expected in ("worker wake", "succeeded", "op show  ", "usage", "refused", "member.stranger:deny",
                     "unknown", "frobnicate", STRANGER):
        assert expected in body, (expected, body)
    assert lines[2].split()[3] == "api:ci", "newest first"

    ann = await ask(world, outbox, "!audit --worker ann")
    assert "1 audit entries about worker ann" in ann
    assert "frobnicate" not in ann
    assert "no entries about worker bob" in await ask(world, outbox, "!audit --worker bob")
    assert "The last 2 audit" in await ask(world, outbox, "!audit --limit 2")


async def test_audit_is_for_admins_and_checks_its_arguments(world: Dispatcher, outbox: RecordingOutbox,
                                                            store: Store) -> None:
    assert "may not run `!audit`" in await ask(world, outbox, "!audit", sender=STRANGER)
    assert "Usage: `!audit" in await ask(world, outbox, "!audit --limit 0")
    assert "Usage: `!audit" in await ask(world, outbox, "!audit --worker Bad_Name")
    decisions = [(e.command, e.decision) for e in await store.audit.recent()]
    assert decisions == [("audit", "usage"), ("audit", "usage"), ("audit", "refused")]
