"""The ``!team`` commands and the team rules of ``!worker``: every refusal is a clear answer that
starts nothing (no operation recorded, so no external call), every acceptance starts exactly one."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from hiclaw_bot.chat import default_registry
from hiclaw_bot.chat.context import Incoming
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.grammar import BotIdentity
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.replies import REPLY_KEY
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.chat.teams import register_team_commands
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Done, Engine, FakeClock, FuncStep, Outcome, RetryPolicy, StepContext
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import EventId, RoomId, UserId
from storage import Operation, Store
from tests.unit.chat.conftest import ADMIN, BOT, RecordingOutbox

ROOM = RoomId("!dm:example.org")
LEADER = "@lead:example.org"
_ids = itertools.count(1)
KINDS = ("team.create", "team.add", "team.remove", "team.delete", "worker.create", "worker.delete")


def nothing(op: Operation) -> list[FuncStep]:
    async def do(ctx: StepContext) -> Outcome:
        return Done()

    return [FuncStep("noop", do)]


async def dispatcher_for(config: Config, store: Store, outbox: RecordingOutbox) -> tuple[Dispatcher, Engine,
                                                                                           ProgressHub]:
    engine = Engine(store, retry=RetryPolicy(max_attempts=1, initial=0.01))
    for kind in KINDS:
        engine.register(kind, nothing)
    registry = default_registry()
    register_worker_commands(registry, cast(Services, SimpleNamespace(
        config=config, domain=config.matrix.server_name, bot_user_id=BOT, matrix=NoAccounts(), gateway=None)))
    register_team_commands(registry, config)
    hub = ProgressHub(engine, store, outbox, clock=FakeClock(), interval=1.0)
    await hub.start()
    return Dispatcher(config=config, store=store, engine=engine, registry=registry, hub=hub, outbox=outbox,
                      identity=BotIdentity(BOT, "HiClaw"), resolver=Resolver(config, store)), engine, hub


class NoAccounts:
    """A homeserver on which no worker name is taken yet (for the account check of ``!worker create``)."""

    async def user_exists(self, user_id: str) -> bool:
        return False


@pytest.fixture
async def world(config: Config, store: Store, outbox: RecordingOutbox) -> AsyncIterator[Dispatcher]:
    dispatcher, engine, hub = await dispatcher_for(config, store, outbox)
    yield dispatcher
    await hub.stop()
    await engine.stop()


async def ask(dispatcher: Dispatcher, outbox: RecordingOutbox, body: str, *, sender: str = ADMIN) -> str:
    """Handle one message; return the text of the bot's first answer to it."""
    event_id = EventId(f"$team{next(_ids)}")
    await dispatcher.handle(Incoming(ROOM, event_id, UserId(sender), body, None, {"msgtype": "m.text", "body": body}))
    found = [s.content for s in outbox.sent if s.content.get(REPLY_KEY, {}).get("command") == event_id]
    return str(found[0]["body"]) if found else ""


def code_in(question: str) -> str:
    return question.split("`!confirm ")[1].split("`")[0]


async def ops(store: Store) -> list[Operation]:
    return await store.ops.find(limit=100)


async def worker(store: Store, name: str, *, team: str | None = None, role: str = "worker") -> None:
    await store.workers.insert(name, backend="process", state="Running", desired_state="Running", team=team,
                               role=role, model="qwen-max", image="img", spec={"model": "qwen-max"},
                               user_id=f"@{name}:example.org")


async def team(store: Store, name: str, leader: str, *members: str) -> None:
    await store.teams.upsert(name, leader=leader, state="Active")
    await worker(store, leader, team=name, role="team_leader")
    for member in members:
        await worker(store, member, team=name)


@pytest.mark.parametrize(("command", "expected"), [
    ("!team create red --leader lead --workers a,lead", "cannot be both the leader and a member"),
    ("!team create red --leader lead --workers a,b,a", "repeated: a"),
    ("!team create red --leader old --workers a", "`old` already exist"),
    ("!team create red --leader lead --workers blue-1", "is in team `blue`"),
    ("!team create red --leader lead --workers busy", "busy with operation"),
    ("!team create red --leader lead --model gpt-9", "Model `gpt-9` is not allowed"),
    ("!team create red --leader lead --workers a,b,c", "over its limit of 3 (team max_workers)"),
    ("!team create green --leader lead --workers a --max-workers 1", "over its limit of 1"),
    ("!team create blue --leader lead", "already exists"),
    ("!team create Red --leader lead", "NAME 'Red'"),
    ("!team create red --leader Lead", "Lead"),
    ("!team create red", "--leader"),
])
async def test_bad_team_creates_are_answered_and_start_nothing(config: Config, store: Store,
                                                               outbox: RecordingOutbox, command: str,
                                                               expected: str) -> None:
    config = config.model_copy(update={"quotas": config.quotas.model_copy(update={"allowed_models": ["qwen-max"]})})
    await team(store, "blue", "blue-lead", "blue-1")
    await worker(store, "old")
    await store.ops.insert(kind="worker.update", subject="worker:busy", params={}, actor=None, room_id=None,
                           source_event_id=None, state="failed")
    dispatcher, engine, hub = await dispatcher_for(config, store, outbox)
    try:
        before = len(await ops(store))
        assert expected in await ask(dispatcher, outbox, command)
        assert len(await ops(store)) == before
    finally:
        await hub.stop()
        await engine.stop()


async def test_the_global_quota_names_its_limit(config: Config, store: Store, outbox: RecordingOutbox) -> None:
    config = config.model_copy(update={"quotas": config.quotas.model_copy(update={"max_workers": 3})})
    await worker(store, "old")
    dispatcher, engine, hub = await dispatcher_for(config, store, outbox)
    try:
        answer = await ask(dispatcher, outbox, "!team create green --leader lead --workers a,b")
        assert "limited to 3 (quotas.max_workers" in answer
        assert await ops(store) == []
        await ask(dispatcher, outbox, "!team create green --leader lead --workers old,b --adopt")
        [op] = await ops(store)
        assert op.kind == "team.create"
        assert (op.params["adopt"], op.params["workers"], op.params["leader"]) == (["old"], ["old", "b"], "lead")
    finally:
        await hub.stop()
        await engine.stop()


async def test_a_good_create_starts_one_operation(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    await ask(world, outbox, "!team create red --leader lead --workers a,b --model qwen-max")
    [op] = await ops(store)
    assert (op.kind, op.subject) == ("team.create", "team:red")
    assert op.params == {"name": "red", "leader": "lead", "workers": ["a", "b"], "model": "qwen-max",
                         "image": op.params["image"], "adopt": [], "max_workers": None,
                         "runtime": "reference", "leader_runtime": "reference"}


async def test_add_and_remove(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    await team(store, "red", "lead", "a", "b")
    await team(store, "blue", "blue-lead")
    await worker(store, "loner")
    assert "no worker named `ghost`" in await ask(world, outbox, "!team add red ghost")
    assert "already in team `red`" in await ask(world, outbox, "!team add red a")
    assert "is in team `red`" in await ask(world, outbox, "!team add blue a")
    assert "limit of 3 workers" in await ask(world, outbox, "!team add red loner")
    assert "no team named `pink`" in await ask(world, outbox, "!team add pink loner")
    assert "keeps its leader" in await ask(world, outbox, "!team remove red lead")
    assert "is not in team `blue`" in await ask(world, outbox, "!team remove blue a")
    assert await ops(store) == []
    await ask(world, outbox, "!team add blue loner")
    await ask(world, outbox, "!team remove red b")
    kinds = sorted((op.kind, op.subject, op.params.get("worker")) for op in await ops(store))
    assert kinds == [("team.add", "team:blue", "loner"), ("team.remove", "team:red", "b")]


async def test_delete_asks_first_and_names_what_stays(world: Dispatcher, outbox: RecordingOutbox,
                                                      store: Store) -> None:
    await team(store, "red", "lead", "a", "b")
    asked = await ask(world, outbox, "!team delete pink")
    assert "no team named `pink`" in await ask(world, outbox, f"!confirm {code_in(asked)}")
    asked = await ask(world, outbox, "!team delete red --with-workers")
    assert "shared files stay" in asked
    assert await ops(store) == []
    await ask(world, outbox, f"!confirm {code_in(asked)}")
    [op] = await ops(store)
    assert (op.kind, op.params) == ("team.delete", {"name": "red", "leader": "lead", "workers": ["a", "b"],
                                                    "with_workers": True})


async def test_list_and_status(world: Dispatcher, outbox: RecordingOutbox, store: Store) -> None:
    assert "No teams yet" in await ask(world, outbox, "!team list")
    await team(store, "red", "lead", "a", "b")
    listing = await ask(world, outbox, "!team list")
    assert "red" in listing
    assert "lead" in listing
    status = await ask(world, outbox, "!team status red")
    assert "Team red: Active; leader lead; 3 worker(s) of at most 3" in status
    assert all(name in status for name in ("lead", "a", "b"))


async def test_a_leader_sees_and_grows_only_its_own_team(world: Dispatcher, outbox: RecordingOutbox,
                                                          store: Store) -> None:
    await team(store, "red", "lead", "a")
    await team(store, "blue", "blue-lead", "b")
    await worker(store, "loner")
    listing = await ask(world, outbox, "!worker list", sender=LEADER)
    assert "a" in listing.split()
    assert not {"b", "loner", "blue-lead"} & set(listing.split())
    teams_seen = await ask(world, outbox, "!team list", sender=LEADER)
    assert "red" in teams_seen
    assert "blue" not in teams_seen
    assert "in team blue" in await ask(world, outbox, "!team status blue", sender=LEADER)

    await ask(world, outbox, "!worker create c", sender=LEADER)
    [op] = await ops(store)
    params: dict[str, Any] = op.params
    assert (op.kind, op.subject, params["worker"], params["leader"]) == ("team.add", "team:red", "c", "lead")
    assert params["create"]["name"] == "c"
    assert "in team blue" in await ask(world, outbox, "!worker create d --team blue", sender=LEADER)


async def test_a_leader_is_not_deleted_from_under_its_team(world: Dispatcher, outbox: RecordingOutbox,
                                                           store: Store) -> None:
    await team(store, "red", "lead", "a")
    answer = await ask(world, outbox, "!worker delete lead")
    assert "!confirm" not in answer, "refused before anyone is asked to confirm"
    assert "leads team `red`" in answer
    assert "!team delete red --with-workers" in answer
    assert await ops(store) == []


async def test_a_long_worker_list_is_cut_to_a_page_with_counts_and_filters(world: Dispatcher, outbox: RecordingOutbox,
                                                                           store: Store) -> None:
    for n in range(120):
        await worker(store, f"w{n:03d}", team="red" if n % 2 else None)
    await store.workers.update("w007", state="Sleeping")
    page = await ask(world, outbox, "!worker list")
    assert page.startswith("120 worker(s): 119 Running, 1 Sleeping")
    assert "w049" in page.split()
    assert "w050" not in page.split()
    assert "… and 70 more" in page
    assert len(await ask(world, outbox, "!worker list --limit 200")) > len(page)
    asleep = await ask(world, outbox, "!worker list --state sleeping")
    assert asleep.startswith("1 worker(s): 1 Sleeping")
    assert "w007" in asleep.split()
    reds = await ask(world, outbox, "!worker list --team red --limit 100")
    assert reds.startswith("60 worker(s)")
    assert "more" not in reds
    assert "matches" in await ask(world, outbox, "!worker list --state Updating")
    assert "at most 200" in await ask(world, outbox, "!worker list --limit 500")
