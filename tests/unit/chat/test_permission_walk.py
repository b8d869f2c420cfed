"""Every command the bot knows × every kind of sender, through the real dispatcher.

The rows below (who may, per declared permission) are written out by hand, independently of
``permissions.TABLE``; each command's permission is its one declaration in the registry, which
README's table checks on its own (``test_readme_permissions``). Each command is typed as a message
by seven senders in the rooms they would use, and the audit row the dispatcher writes says whether
it was refused. The registry is the one the bot runs (built by the same ``register_*``
functions); only the handlers are swapped for a recorder, so an allowed command changes nothing
and the walk needs no Matrix server, gateway or backend. The senders are resolved the real way:
admins from the config, the team leaders from the workers table, the humans from the humans table,
and the team rooms from the teams table.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from hiclaw_bot.chat import Command, CommandContext, Permission, Registry, Reply, default_registry
from hiclaw_bot.chat.audit import register_audit_command
from hiclaw_bot.chat.context import Incoming
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.gc import register_gc_command
from hiclaw_bot.chat.grammar import BotIdentity
from hiclaw_bot.chat.humans import register_human_commands
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.chat.teams import register_team_commands
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.config import Config, TeamQuota
from hiclaw_bot.engine import Engine, FakeClock
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import EventId, RoomId, UserId
from storage import Store
from tests.unit.chat.conftest import ADMIN, BOT, RecordingOutbox

DM = RoomId("!dm:example.org")
RED_ROOM = RoomId("!red-team:example.org")
BLUE_ROOM = RoomId("!blue-team:example.org")


@dataclass(frozen=True)
class Sender:
    user_id: str
    room_id: RoomId


# The seven columns of the grid, in order.
SENDERS = {
    "admin in DM": Sender(ADMIN, DM),
    "admin in team room": Sender(ADMIN, RED_ROOM),
    "leader, own team": Sender("@lead-red:example.org", RED_ROOM),
    "leader, other team": Sender("@lead-blue:example.org", BLUE_ROOM),
    "human member": Sender("@hm:example.org", RED_ROOM),
    "viewer": Sender("@hv:example.org", RED_ROOM),
    "stranger": Sender("@mallory:example.org", DM),
}

# What a command is typed as when its target alone does not make a valid line (its target, when it
# has one, is in team red; op 1 is w-red's). Any other command is typed with the example target of
# its kind (see :func:`line`), so a new command needs no entry here.
LINES = {
    "help": "help",
    "confirm": "confirm ABCDEF",
    "worker update": "worker update w-red --model qwen-max",
    "worker exec": "worker exec w-red -- ls",
    "worker create": "worker create newbie --team red",
    "team create": "team create green --leader lead-green --workers g1",
    "team add": "team add red extra",
    "team remove": "team remove red w-red",
    "human create": "human create bob --level viewer --teams red",
    "gc": "gc --dry-run",
    "audit": "audit --worker w-red",
}
EXAMPLE_TARGET = {"worker": "w-red", "team": "red", "human": "hm", "op": "1"}

# Y allowed, N refused, per sender above in order:
#  admin DM, admin team room, leader own team, leader other team, human member, viewer, stranger.
EVERYONE = "YYYYYYN"
LISTING = "YYYYYYN"          # no target: scoped senders see only their teams
READING = "YYYNYYN"          # a target in team red
OPERATING = "YYYNYNN"
PROVISIONING = "YYYNNNN"     # team red has a worker quota with room in it
ADMINS_ONLY = "YYNNNNN"
EXPECTED = {Permission.MEMBER: EVERYONE, Permission.OPERATE: OPERATING, Permission.PROVISION: PROVISIONING,
            Permission.MANAGE: ADMINS_ONLY}
"""What each declared permission lets each sender do (READ depends on whether there is a target)."""


def line(command: Command) -> str:
    """What ``command`` is typed as in the walk."""
    if command.name in LINES:
        return LINES[command.name]
    return command.name + (f" {EXAMPLE_TARGET[command.target.kind]}" if command.target is not None else "")


def expected(command: Command) -> str:
    """Who the walk expects to be allowed, from the command's one declaration of its permission."""
    if command.permission is Permission.READ:
        return LISTING if command.target is None else READING
    return EXPECTED[command.permission]


def the_bots_registry() -> Registry:
    """Every command, registered exactly as the bot registers them."""
    services = cast(Services, None)  # handlers only reach for services when they run; here they never do
    registry = default_registry()
    register_worker_commands(registry, services)
    register_team_commands(registry, cast(Config, None))
    register_human_commands(registry, services)
    register_gc_command(registry, services)
    register_audit_command(registry)
    return registry


def recording(registry: Registry, ran: list[str]) -> Registry:
    """The same commands (arguments, targets, permissions, confirmations), with a recorder for handler."""
    async def record(ctx: CommandContext) -> Reply | None:
        ran.append(ctx.command.name)
        return Reply.of("recorded")

    copy = Registry()
    for c in registry:
        copy.command(c.noun, c.verb, summary=c.summary, handler=record, permission=c.permission, args=c.args,
                     target=c.target, confirm=c.confirm, raw=c.raw, aliases=c.aliases)
    return copy


@pytest.fixture
async def installation(config: Config, store: Store) -> Store:
    """Teams red and blue with their leaders and rooms, a worker in red, a member and a viewer of red."""
    for team in ("red", "blue"):
        await store.workers.insert(f"lead-{team}", backend="process", state="Running", desired_state="Running",
                                   team=team, role="team_leader", image="i", model="m",
                                   user_id=f"@lead-{team}:example.org")
        await store.teams.upsert(team, leader=f"lead-{team}", state="Active",
                                 room_id=RED_ROOM if team == "red" else BLUE_ROOM)
    await store.workers.insert("w-red", backend="process", state="Running", desired_state="Running", team="red",
                               role="worker", image="i", model="m")
    await store.humans.upsert("hm", user_id="@hm:example.org", level="team", state="Active", teams=["red"])
    await store.humans.upsert("hv", user_id="@hv:example.org", level="viewer", state="Active", teams=["red"])
    await store.ops.insert(kind="worker.wake", subject="worker:w-red", params={"name": "w-red"}, actor=ADMIN,
                           room_id=DM, source_event_id=None, state="failed")
    return store


@pytest.fixture
async def walk(config: Config, installation: Store, outbox: RecordingOutbox) -> AsyncIterator[Any]:
    engine = Engine(installation)
    hub = ProgressHub(engine, installation, outbox, clock=FakeClock(), interval=1.0)
    ran: list[str] = []
    dispatcher = Dispatcher(config=config, store=installation, engine=engine,
                            registry=recording(the_bots_registry(), ran), hub=hub, outbox=outbox,
                            identity=BotIdentity(BOT, "HiClaw"), resolver=Resolver(config, installation))
    yield dispatcher, ran
    await engine.stop()


def test_the_special_lines_are_the_bots_commands() -> None:
    assert set(LINES) <= {c.name for c in the_bots_registry()}
    assert all(len(row) == len(SENDERS) for row in [*EXPECTED.values(), LISTING, READING])


async def test_every_command_for_every_kind_of_sender(walk: Any, installation: Store) -> None:
    dispatcher, ran = walk
    ids = itertools.count(1)
    wrong: list[str] = []
    commands = list(the_bots_registry())
    for command in commands:
        typed = line(command)
        for (who, sender), allowed in zip(SENDERS.items(), expected(command), strict=True):
            event = EventId(f"$walk{next(ids)}")
            await dispatcher.handle(Incoming(sender.room_id, event, UserId(sender.user_id), f"!{typed}"))
            entry = (await installation.audit.recent(limit=1))[0]
            assert entry.command == command.name, (typed, who, entry)
            refused = entry.decision == "refused"
            if refused is (allowed == "Y"):
                wrong.append(f"!{typed} by {who}: {entry.decision} ({entry.detail})")
    assert not wrong, "\n".join(wrong)
    # Refused commands never reached a handler; allowed ones without a confirmation step all did.
    assert set(ran) == {c.name for c in commands if "Y" in expected(c) and c.confirm is None}


# !op retry/abort/show on operations of other kinds in team red: decided by what the operation's
# own command needs. Columns as above.
OP_KINDS = {
    "team.create": ({"name": "red"}, "team:red", {"show": ADMINS_ONLY, "retry": ADMINS_ONLY, "abort": ADMINS_ONLY}),
    "worker.create": ({"name": "w-red"}, "worker:w-red",
                      {"show": READING, "retry": PROVISIONING, "abort": PROVISIONING}),
    "team.add": ({"name": "red", "worker": "w-red", "create": {"name": "w-red"}}, "team:red",
                 {"show": READING, "retry": PROVISIONING, "abort": PROVISIONING}),
    "worker.repair": ({"name": "w-red"}, "worker:w-red",
                      {"show": ADMINS_ONLY, "retry": ADMINS_ONLY, "abort": ADMINS_ONLY}),
}


async def test_op_commands_need_what_the_operation_needs(walk: Any, installation: Store, config: Config) -> None:
    dispatcher, _ = walk
    config.quotas.teams["red"] = TeamQuota(max_workers=5)
    ids = itertools.count(1)
    wrong: list[str] = []
    for kind, (params, subject, grid) in OP_KINDS.items():
        op_id = await installation.ops.insert(kind=kind, subject=subject, params=params, actor=ADMIN, room_id=DM,
                                              source_event_id=None, state="succeeded")
        for verb, row in grid.items():
            for (who, sender), expected in zip(SENDERS.items(), row, strict=True):
                event = EventId(f"$ops{next(ids)}")
                await dispatcher.handle(Incoming(sender.room_id, event, UserId(sender.user_id), f"!op {verb} {op_id}"))
                entry = (await installation.audit.recent(limit=1))[0]
                if (entry.decision == "refused") is (expected == "Y"):
                    wrong.append(f"!op {verb} on {kind} by {who}: {entry.decision} ({entry.detail})")
    assert not wrong, "\n".join(wrong)
