"""The dispatcher: every command gets exactly one answer, recorded before it is sent."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hiclaw_bot.chat import NAME, CommandContext, Permission, Registry, Reply, default_registry, positional
from hiclaw_bot.chat.context import Incoming
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.grammar import BotIdentity
from hiclaw_bot.chat.matrix import incoming
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.record import SYNC_KEY
from hiclaw_bot.chat.replies import REPLY_KEY
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Done, Engine, FakeClock, FuncStep, Outcome, PermanentError, RetryPolicy, StepContext
from hiclaw_bot.types import EventId, Refused, RoomId, UserId
from storage import Confirmation, Operation, Store
from tests.unit.chat.conftest import ADMIN, BOT, RecordingOutbox

ROOM = RoomId("!dm:example.org")
STRANGER = "@mallory:example.org"
_ids = itertools.count(1)


def quick_steps(op: Operation) -> list[FuncStep]:
    async def do(ctx: StepContext) -> Outcome:
        if ctx.params.get("fail"):
            raise PermanentError("it broke")
        return Done()

    return [FuncStep(name, do) for name in ("first", "second")]


async def run_quick(ctx: CommandContext) -> Reply | None:
    await ctx.start("quick", f"demo:{ctx.args.get('name', str)}", {"fail": ctx.args.get("name", str) == "bad"})
    return None


async def explode(ctx: CommandContext) -> Reply | None:
    raise RuntimeError("access_token=syt_supersecret leaked into an error")


@pytest.fixture
async def world(config: Config, store: Store, outbox: RecordingOutbox) -> AsyncIterator[Dispatcher]:
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    engine.register("quick", quick_steps)
    registry: Registry = default_registry()
    registry.command("quick", "run", summary="Two quick steps", handler=run_quick, permission=Permission.OPERATE,
                     args=[positional("name", NAME)])
    registry.command("boom", summary="Fails inside", handler=explode, permission=Permission.MEMBER)
    hub = ProgressHub(engine, store, outbox, clock=FakeClock(), interval=1.0)
    await hub.start()
    yield Dispatcher(config=config, store=store, engine=engine, registry=registry, hub=hub, outbox=outbox,
                     identity=BotIdentity(BOT, "HiClaw"), resolver=Resolver(config, store))
    await hub.stop()
    await engine.stop()


def message(body: str, *, sender: str = ADMIN, age: float = 0.5, relates_to: dict[str, Any] | None = None) -> Incoming:
    event_id = EventId(f"$ev{next(_ids)}")
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if relates_to is not None:
        content["m.relates_to"] = relates_to
    return Incoming(ROOM, event_id, UserId(sender), body, None, content, age)


def answers(outbox: RecordingOutbox, event_id: str) -> list[dict[str, Any]]:
    return [s.content for s in outbox.sent if s.content.get(REPLY_KEY, {}).get("command") == event_id]


async def ask(dispatcher: Dispatcher, outbox: RecordingOutbox, body: str, **kwargs: Any) -> str:
    """Handle one message; return the text of its single answer."""
    msg = message(body, **kwargs)
    await dispatcher.handle(msg)
    found = answers(outbox, msg.event_id)
    assert len(found) == 1, found
    assert found[0][REPLY_KEY]["final"] is True
    return str(found[0]["body"])


async def last_audit(store: Store) -> tuple[str, str, str | None]:
    entry = (await store.audit.recent(limit=1))[0]
    return entry.command, entry.decision, entry.detail


async def test_help_is_answered_and_recorded(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    msg = message("!help")
    assert await world.handle(msg, sync_token="s42")
    [answer] = answers(outbox, msg.event_id)
    assert answer["msgtype"] == "m.notice"
    assert "!op retry" in answer["body"]
    assert answer["m.relates_to"] == {"m.in_reply_to": {"event_id": msg.event_id}}
    assert await store.events.seen(msg.event_id)
    assert await store.sync.get(SYNC_KEY) == "s42"
    assert await last_audit(store) == ("help", "done", None)


async def test_an_event_is_answered_once(world: Dispatcher, outbox: RecordingOutbox) -> None:
    msg = message("!help")
    assert await world.handle(msg)
    assert not await world.handle(msg)
    assert len(answers(outbox, msg.event_id)) == 1


@pytest.mark.parametrize("body", ["hello", "HiClaw, how are you?", "*!help", "hi !help"])
async def test_chat_that_is_not_a_command_is_left_alone(world: Dispatcher, outbox: RecordingOutbox, store: Store,
                                                        body: str) -> None:
    msg = message(body)
    assert not await world.handle(msg)
    assert outbox.sent == []
    assert not await store.events.seen(msg.event_id)


async def test_an_empty_command_is_answered(world: Dispatcher, outbox: RecordingOutbox) -> None:
    assert "empty command" in await ask(world, outbox, "! ")


async def test_edits_of_commands_are_not_run_again(world: Dispatcher, outbox: RecordingOutbox) -> None:
    edit = message("* !help", relates_to={"rel_type": "m.replace", "event_id": "$orig"})
    assert not await world.handle(edit)
    assert outbox.sent == []


async def test_unknown_commands_get_a_suggestion(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    text = await ask(world, outbox, "!op lsit")
    assert "I don't know the command `!op lsit`. Did you mean `!op list`" in text
    assert await last_audit(store) == ("op lsit", "unknown", None)


async def test_bad_arguments_get_the_usage(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    text = await ask(world, outbox, "!op show seven")
    assert text == "N 'seven': expected a whole number. Usage: `!op show N` (`!help op show` explains)."
    assert await last_audit(store) == ("op show", "usage", None)
    assert "takes nothing after --" in await ask(world, outbox, "!op list -- rm -rf")
    assert "a quote is not closed" in await ask(world, outbox, '!help "worker')


async def test_strangers_get_a_refusal_naming_the_rule(world: Dispatcher, outbox: RecordingOutbox,
                                                       store: Store) -> None:
    text = await ask(world, outbox, "!help", sender=STRANGER)
    assert text.startswith("Sorry, you may not run `!help`: you are not a member of this installation")
    assert "(rule member.stranger:deny)" in text
    assert await last_audit(store) == ("help", "refused", "member.stranger:deny")


async def test_old_commands_are_answered_not_run(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    text = await ask(world, outbox, "!quick run late", age=12 * 60 + 5)
    assert text.startswith("ignored: sent while the bot was down for 12 minutes")
    assert await store.ops.find() == []
    assert await last_audit(store) == ("quick run", "ignored", "age 725s")


async def test_an_operation_is_recorded_with_the_event(world: Dispatcher, outbox: RecordingOutbox,
                                                       store: Store) -> None:
    msg = message("!quick run alpha")
    assert await world.handle(msg, sync_token="s7")
    [op] = await store.ops.find()
    assert op.source_event_id == msg.event_id
    assert await store.sync.get(SYNC_KEY) == "s7"
    entry = (await store.audit.recent(limit=1))[0]
    assert (entry.command, entry.decision, entry.op_id, entry.subject) == ("quick run", "started", op.op_id,
                                                                           "demo:alpha")
    await world.engine.wait(op.op_id)
    await world.hub.wait(op.op_id)
    found = answers(outbox, msg.event_id)
    assert found[0][REPLY_KEY]["final"] is False  # the progress message
    assert found[-1][REPLY_KEY]["final"] is True
    assert "succeeded" in found[-1]["body"]


async def test_a_busy_subject_is_explained(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    held = await world.engine.submit("quick", "demo:held", {"fail": True}, room_id=ROOM)
    await world.engine.wait(held.op.op_id)  # failed: it holds its subject until retried or aborted
    world.registry.command("quick", "other", summary="x", permission=Permission.OPERATE, handler=_start_held)
    text = await ask(world, outbox, "!quick other")
    op_id = held.op.op_id
    assert text == f"demo:held is busy with operation {op_id} (quick, failed). Wait for it, or see `!op show {op_id}`."
    assert await last_audit(store) == ("quick other", "busy", f"held by {op_id}")


async def _start_held(ctx: CommandContext) -> Reply | None:
    await ctx.start("quick", "demo:held", {"fail": False})
    return None


async def test_engine_refusals_are_explained(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    msg = message("!quick run fine")
    await world.handle(msg)
    [op] = await store.ops.find()
    await world.engine.wait(op.op_id)
    text = await ask(world, outbox, f"!op retry {op.op_id}")
    assert text == f"Cannot do that: operation {op.op_id} is succeeded; only a failed operation can be retried."
    assert await ask(world, outbox, "!op show 999") == "Cannot do that: no operation 999."


async def test_internal_errors_become_an_apology_with_a_reference(world: Dispatcher, outbox: RecordingOutbox,
                                                                  store: Store,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="hiclaw_bot.chat"):
        text = await ask(world, outbox, "!boom")
    assert text.startswith("Sorry, something went wrong with that command (reference ")
    assert "supersecret" not in text
    assert "Traceback" not in text
    _, decision, reference = await last_audit(store)
    assert decision == "error"
    assert reference is not None
    assert reference in text
    assert reference in caplog.text


async def test_confirmation_flow(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    await world.handle(message("!quick run bad"))
    [op] = await store.ops.find()
    await world.engine.wait(op.op_id)
    await world.hub.wait(op.op_id)

    asked = await ask(world, outbox, f"!op abort {op.op_id}")
    assert asked.startswith(f"⚠ `!op abort {op.op_id}` stops operation {op.op_id} and undoes")
    code = asked.split("`!confirm ")[1].split("`")[0]
    assert (await store.ops.get(op.op_id)).state == "failed"  # type: ignore[union-attr]
    assert await last_audit(store) == ("op abort", "confirm-pending", None)

    assert "may not run" in await ask(world, outbox, f"!confirm {code}", sender=STRANGER)

    confirm = message(f"!confirm {code.lower()}")
    await world.handle(confirm)
    await world.engine.wait(op.op_id)
    await world.hub.wait(op.op_id)
    assert (await store.ops.get(op.op_id)).state == "compensated"  # type: ignore[union-attr]
    said = answers(outbox, confirm.event_id)
    assert said[0]["body"].startswith(f"Undoing operation {op.op_id}")
    assert said[0][REPLY_KEY]["final"] is False  # the undo's own result comes next
    assert said[-1][REPLY_KEY]["final"] is True
    assert "was undone" in said[-1]["body"]
    recent = [(e.command, e.decision) for e in await store.audit.recent(limit=2)]
    assert recent == [("confirm", "done"), ("op abort", "confirmed")]
    assert "no pending confirmation" in await ask(world, outbox, f"!confirm {code}")  # used up


async def test_confirmations_belong_to_their_sender_and_expire(world: Dispatcher, outbox: RecordingOutbox,
                                                                store: Store, config: Config) -> None:
    admins = [*config.matrix.admins, "@second:example.org"]
    world.config = config.model_copy(update={"matrix": config.matrix.model_copy(update={"admins": admins})})
    world.resolver.config = world.config
    await store.confirmations.add(Confirmation("ABCDEF", ADMIN, ROOM, "help", expires_at=store.db.now() + 60))
    assert "no pending confirmation" in await ask(world, outbox, "!confirm ABCDEF", sender="@second:example.org")
    await store.confirmations.add(Confirmation("OLDOLD", ADMIN, ROOM, "help", expires_at=store.db.now() - 1))
    assert "no pending confirmation" in await ask(world, outbox, "!confirm OLDOLD")
    assert "Commands:" in await ask(world, outbox, "!confirm abcdef")


COMMAND_WORDS = st.sampled_from(["help", "op", "list", "show", "retry", "abort", "confirm", "worker", "1", "--state",
                                 "--limit", "=", "--", '"', "x y", "failed", "-1", "99999999999999999999"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.one_of(COMMAND_WORDS, st.text(max_size=8)), max_size=6),
       sender=st.sampled_from([ADMIN, STRANGER]), mention=st.booleans())
async def test_every_command_gets_exactly_one_answer(world: Dispatcher, outbox: RecordingOutbox, words: list[str],
                                                     sender: str, mention: bool) -> None:
    body = ("HiClaw: " if mention else "") + "!" + " ".join(words)
    msg = message(body, sender=sender)
    assert await world.handle(msg)
    found = answers(outbox, msg.event_id)
    assert len(found) == 1
    assert found[0]["body"]
    assert "Traceback" not in found[0]["body"]


def test_incoming_keeps_text_from_others_only() -> None:
    class Event:
        def __init__(self, **source: Any) -> None:
            self.source = source

    text = Event(type="m.room.message", sender=ADMIN, event_id="$1", origin_server_ts=1000,
                 content={"msgtype": "m.text", "body": "!help", "format": "org.matrix.custom.html",
                          "formatted_body": "<b>!help</b>"}, unsigned={"age": 2500})
    got = incoming("!r", text, BOT)
    assert got is not None
    assert (got.body, got.formatted_body, got.age) == ("!help", "<b>!help</b>", 2.5)
    aged = Event(type="m.room.message", sender=ADMIN, event_id="$2", origin_server_ts=1000,
                 content={"msgtype": "m.text", "body": "x"})
    assert incoming("!r", aged, BOT, now=61.0).age == 60.0  # type: ignore[union-attr]
    for other in (
        Event(type="m.room.message", sender=ADMIN, event_id="$3", content={"msgtype": "m.notice", "body": "!help"}),
        Event(type="m.room.message", sender=BOT, event_id="$4", content={"msgtype": "m.text", "body": "!help"}),
        Event(type="m.reaction", sender=ADMIN, event_id="$5", content={}),
        Event(type="m.room.message", sender=ADMIN, event_id="$6", content={"msgtype": "m.text"}),
        Event(type="m.room.message", sender=ADMIN, event_id="$7", content={"msgtype": "m.text", "body": "!help"},
              unsigned={"membership": "invite"}),  # sent before the bot joined
    ):
        assert incoming("!r", other, BOT) is None


async def _refuse(ctx: CommandContext) -> Reply | None:
    raise Refused("There is no demo named `x`.")


async def test_a_refusal_raised_by_a_handler_is_the_answer(world: Dispatcher, outbox: RecordingOutbox,
                                                           store: Store) -> None:
    world.registry.command("quick", "refuse", summary="x", permission=Permission.MEMBER, handler=_refuse)
    msg = message("!quick refuse")
    await world.handle(msg)
    [answer] = answers(outbox, msg.event_id)
    assert (answer["body"], answer["formatted_body"]) == ("There is no demo named `x`.",
                                                          "There is no demo named <code>x</code>.")
    assert await last_audit(store) == ("quick refuse", "done", None)
    assert await store.events.seen(msg.event_id)
    assert await store.ops.find() == []


async def _ask_first(ctx: CommandContext) -> Reply | None:
    code = ctx.ask_confirmation("help")
    return Reply.of(f"send `!confirm {code}`")


async def test_a_confirmation_a_handler_asks_for_is_stored_with_the_mark(world: Dispatcher, outbox: RecordingOutbox,
                                                                        store: Store) -> None:
    world.registry.command("quick", "ask", summary="x", permission=Permission.MEMBER, handler=_ask_first)
    text = await ask(world, outbox, "!quick ask")
    code = text.split("`!confirm ")[1].rstrip("`")
    assert await last_audit(store) == ("quick ask", "done", None)
    assert "Commands:" in await ask(world, outbox, f"!confirm {code}")  # it ran the stored `help`
    assert [(e.command, e.decision) for e in reversed(await store.audit.recent(limit=2))] == [
        ("help", "confirmed"), ("confirm", "done")]


async def test_an_operation_started_before_a_refusal_is_still_reported(world: Dispatcher, outbox: RecordingOutbox,
                                                                        store: Store) -> None:
    async def start_then_refuse(ctx: CommandContext) -> Reply | None:
        await ctx.start("quick", "demo:half", {"fail": False})
        raise Refused("The rest was not done.")

    world.registry.command("quick", "half", summary="x", permission=Permission.OPERATE, handler=start_then_refuse)
    msg = message("!quick half")
    await world.handle(msg)
    [op] = await store.ops.find()
    assert await last_audit(store) == ("quick half", "started", None)
    await world.engine.wait(op.op_id)
    await world.hub.wait(op.op_id)
    said = answers(outbox, msg.event_id)
    assert said[0]["body"] == "The rest was not done."
    assert said[0][REPLY_KEY]["final"] is False
    assert "succeeded" in said[-1]["body"]
