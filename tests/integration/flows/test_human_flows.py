"""``!human`` end to end on real services: the command layer (dispatcher, permissions, confirmation)
over the real flows, against the session's Synapse and a real SMTP server (aiosmtpd).

Team and worker rooms are real rooms made by the bot; their rows are written straight into the
store, as the team flows would. Each test reads the outcome where it lives: the account by logging
in, memberships and power levels in the rooms' state, the mail in the SMTP server's inbox.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from hiclaw_bot.app import open_services
from hiclaw_bot.chat import default_registry
from hiclaw_bot.chat.context import Incoming
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.grammar import BotIdentity
from hiclaw_bot.chat.humans import register_human_commands
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.replies import REPLY_KEY
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.clients.errors import ClientError, UnauthorizedError
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, TokenRegistration
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, RetryPolicy
from hiclaw_bot.flows import human as flows
from hiclaw_bot.flows.human_steps import MEMBERSHIP
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import EventId, RoomId, UserId
from storage import Operation, Store
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.synapse import SynapseEnv, unique
from tests.unit.chat.conftest import RecordingOutbox

_ids = itertools.count(1)
PASSWORD_LINE = re.compile(r"^Password: (\S+)\r?$", re.MULTILINE)


@dataclass
class World:
    synapse: SynapseEnv
    config: Config
    store: Store
    engine: Engine
    services: Services
    dispatcher: Dispatcher
    outbox: RecordingOutbox
    smtp: SmtpServer
    owner: MatrixAdmin
    owner_id: UserId
    dm: RoomId
    rooms: dict[str, RoomId]
    """Team rooms (``red``, ``blue``) and the red worker's room (``red-worker``)."""

    async def say(self, body: str, *, room: RoomId | None = None) -> str:
        """Send a command as the admin; return the text of the dispatcher's direct answer ('' if none)."""
        event_id = EventId(f"$human{next(_ids)}")
        message = Incoming(room or self.dm, event_id, self.owner_id, body, None, {"msgtype": "m.text", "body": body})
        await self.dispatcher.handle(message)
        answers = [s.content["body"] for s in self.outbox.sent
                   if s.content.get(REPLY_KEY, {}).get("command") == event_id]
        return str(answers[0]) if answers else ""

    async def run(self, body: str) -> Operation:
        """Send a command that starts an operation and wait for it."""
        before = {op.op_id for op in await self.store.ops.find()}
        answer = await self.say(body)
        started = [op for op in await self.store.ops.find() if op.op_id not in before]
        assert len(started) == 1, f"{body!r} started no operation; answer: {answer!r}"
        return await self.engine.wait(started[0].op_id)

    async def delete(self, name: str) -> Operation:
        asked = await self.say(f"!human delete {name}")
        code = re.search(r"!confirm (\w+)", asked)
        assert code is not None, asked
        return await self.run(f"!confirm {code.group(1)}")

    def user(self, name: str) -> UserId:
        return UserId(f"@{name}:{self.synapse.server_name}")

    async def membership(self, room: str, name: str) -> str | None:
        return await self.services.matrix.membership(self.rooms[room], self.user(name))

    async def power(self, room: str, name: str) -> Any:
        levels = await self.services.matrix.state(self.rooms[room], "m.room.power_levels") or {}
        return levels.get("users", {}).get(self.user(name))


@pytest.fixture
async def world(synapse: SynapseEnv, smtp_server: SmtpServer, tmp_path: Path) -> AsyncIterator[World]:
    owner_name = unique("owner")
    owner_user = await synapse.register(owner_name, "owner-password-1")
    config = Config.model_validate({
        "data_dir": str(tmp_path / "data"),
        "matrix": synapse.bot_matrix(owner_user.user_id),
        "storage": {"kind": "local", "directory": str(tmp_path / "objects")},
        "backend": {"kind": "process", "instance": unique("h")},
        "mail": {"enabled": True, "host": smtp_server.host, "port": smtp_server.port, "security": "none",
                 "sender": "hiclaw@example.org"},
    })
    store = await Store.open(config.database_path)
    engine = Engine(store, retry=RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2))
    outbox = RecordingOutbox()
    async with open_services(config, store, bot_token=synapse.admin_token) as services, \
            MatrixAdmin(synapse.url, server_name=synapse.server_name, access_token=owner_user.access_token) as owner:
        flows.register_human_flows(engine, services)
        registry = default_registry()
        register_human_commands(registry, services)
        hub = ProgressHub(engine, store, outbox)
        await hub.start()
        dm = (await owner.ensure_room(unique("dm"), name="DM", invite=[services.bot_user_id])).room_id
        await services.matrix.join(dm)
        rooms = await _teams(services, store)
        dispatcher = Dispatcher(config=config, store=store, engine=engine, registry=registry, hub=hub,
                                outbox=outbox, identity=BotIdentity(services.bot_user_id, "HiClaw"),
                                resolver=Resolver(config, store))
        yield World(synapse, config, store, engine, services, dispatcher, outbox, smtp_server, owner,
                    owner_user.user_id, dm, rooms)
        await hub.stop()
        await engine.stop()
    await store.close()


async def _teams(services: Services, store: Store) -> dict[str, RoomId]:
    """Two teams and a worker of red, each with a real room, as the team flows would leave them."""
    rooms: dict[str, RoomId] = {}
    for name in ("red", "blue", "red-worker"):
        rooms[name] = (await services.matrix.ensure_room(unique(name), name=name)).room_id
    for team in ("red", "blue"):
        await store.teams.upsert(team, leader=f"{team}-lead", state="Active", room_id=rooms[team])
    await store.workers.insert("red-worker", backend="process", state="Running", desired_state="Running",
                               team="red", room_id=rooms["red-worker"])
    return rooms


def password_in(text: str) -> str:
    found = PASSWORD_LINE.search(text)
    assert found is not None, "no password line"
    return found.group(1)


def body(mail: Message) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


async def logs_in(world: World, name: str, password: str) -> bool:
    async with MatrixAdmin(world.synapse.url, server_name=world.synapse.server_name) as client:
        try:
            await client.login(name, password)
        except UnauthorizedError:
            return False
    return True


async def test_create_by_mail_at_team_level_then_delete(world: World) -> None:
    name, email = unique("bob"), f"{unique('bob')}@example.org"
    op = await world.run(f'!human create {name} --email {email} --level team --teams red --display-name "Bob B"')
    assert op.state == "succeeded", op.error

    [mail] = world.smtp.to(email)
    text = body(mail)
    password = password_in(text)
    assert world.user(name) in text
    assert world.synapse.url in text
    signed_in = await logs_in(world, name, password)
    assert signed_in, "the mailed password opens the account"
    leaked = password in " ".join(world.outbox.bodies())
    assert not leaked, "the password never reaches a progress message"
    assert await world.services.matrix.displayname(world.user(name)) == "Bob B"
    assert await world.membership("red", name) == "invite"
    assert await world.membership("red-worker", name) == "invite"
    assert await world.membership("blue", name) is None
    assert await world.power("red", name) is None, "a team member keeps the room's default power"
    row = await world.store.humans.get(name)
    assert row is not None
    assert (row.state, row.level, row.teams, row.email) == ("Active", "team", ["red"], email)
    assert await world.store.secrets.get(flows.subject(name), "password") is None, "forgotten once delivered"
    assert name in await world.say("!human list")

    deleted = await world.delete(name)
    assert deleted.state == "succeeded", deleted.error
    assert await world.membership("red", name) == "leave"
    assert await world.membership("red-worker", name) == "leave"
    signed_in = await logs_in(world, name, password)
    assert not signed_in, "deactivated"
    assert await world.store.humans.get(name) is None
    assert [r for r in await world.store.ledger.live(MEMBERSHIP) if r.owner == flows.subject(name)] == []

    assert "was deactivated and cannot be used again" in await world.say(f"!human create {name} --email {email}")
    assert await world.store.ops.find(subject=flows.subject(name), states=["running", "failed"]) == []


async def test_a_viewer_gets_credentials_in_the_dm_and_reads_only(world: World) -> None:
    name = unique("vera")
    op = await world.run(f"!human create {name} --level viewer --teams red")
    assert op.state == "succeeded", op.error

    notes = [e for e in await world.owner.recent_messages(world.dm, limit=20)
             if e.sender == world.services.bot_user_id and "Password:" in (e.body or "")]
    assert len(notes) == 1
    password = password_in(notes[0].body or "")
    assert world.smtp.to(f"{name}@example.org") == []
    assert await world.membership("red", name) == "invite"
    assert await world.membership("red-worker", name) is None, "viewers see team rooms only"
    assert await world.power("red", name) == -1

    async with MatrixAdmin(world.synapse.url, server_name=world.synapse.server_name) as client:
        vera = await client.login(name, password)
        await client.join(world.rooms["red"], token=vera.access_token)
        with pytest.raises(ClientError) as refused:
            await client.send_text(world.rooms["red"], "hello", txn_id="t1", token=vera.access_token)
        assert refused.value.status == 403

    moved = await world.run(f"!human invite {name} --teams blue")
    assert moved.state == "succeeded", moved.error
    assert await world.membership("red", name) == "leave"
    assert await world.power("red", name) is None, "the restriction goes with the membership"
    assert await world.membership("blue", name) == "invite"
    assert await world.power("blue", name) == -1


async def test_an_existing_account_is_adopted_and_kept(world: World) -> None:
    name, email = unique("carol"), f"{unique('carol')}@example.org"
    async with MatrixAdmin(world.synapse.url, server_name=world.synapse.server_name,
                           registration=TokenRegistration(world.synapse.registration_token)) as registrar:
        await registrar.ensure_user(name, "carols-own-password")
        await registrar.set_displayname(world.user(name), "Carol", token=(await registrar.login(
            name, "carols-own-password")).access_token)

    op = await world.run(f"!human create {name} --email {email} --level team --teams blue")
    assert op.state == "succeeded", op.error
    [mail] = world.smtp.to(email)
    assert "Password: unchanged" in body(mail)
    assert await logs_in(world, name, "carols-own-password"), "the password was not reset"
    assert await world.services.matrix.displayname(world.user(name)) == "Carol"
    assert await world.membership("blue", name) == "invite"

    deleted = await world.delete(name)
    assert deleted.state == "succeeded", deleted.error
    assert await world.membership("blue", name) == "leave"
    assert await logs_in(world, name, "carols-own-password"), "an adopted account is not deactivated"


async def test_bad_input_gets_a_reply_and_changes_nothing(world: World) -> None:
    existing = unique("dan")
    await world.store.humans.upsert(existing, user_id=world.user(existing), level="team", state="Active")
    async with MatrixAdmin(world.synapse.url, server_name=world.synapse.server_name,
                           registration=TokenRegistration(world.synapse.registration_token)) as registrar:
        third = (await registrar.ensure_user(unique("third"), "third-password-1")).user_id
    crowded = (await world.owner.ensure_room(unique("crowd"), name="crowd",
                                             invite=[world.services.bot_user_id, third])).room_id
    await world.services.matrix.join(crowded)
    fresh = unique("erin")
    cases = {
        "!human create Erin --email e@example.org": "NAME 'Erin'",
        f"!human create {fresh} --level boss --email e@example.org": "expected one of admin, team, viewer",
        f"!human create {fresh} --teams green --email e@example.org": "Unknown team(s): green",
        f"!human create {fresh} --level team --workers nobody --email e@example.org": "Unknown worker(s): nobody",
        f"!human create {fresh} --workers red-worker --email e@example.org": "talks to no worker (it reads only)",
        f"!human invite {existing} --workers nobody": "Unknown worker(s): nobody",
        f"!human create {fresh} --email \"Erin <e@example.org>\"": "one plain mail address",
        f"!human create {fresh} --email e@exa_mple.org": "one plain mail address",
        f"!human create {existing} --email e@example.org": "already exists",
        f"!human invite {fresh}": f"no human named `{fresh}`",
        "!human create red-worker --email e@example.org": "the account of a worker",
        "!human create hiclaw-admin --email e@example.org": "the bot itself",
    }
    for command, expected in cases.items():
        assert expected in await world.say(command), command
    code = re.search(r"!confirm (\w+)", await world.say(f"!human delete {fresh}"))
    assert code is not None
    assert f"no human named `{fresh}`" in await world.say(f"!confirm {code.group(1)}")
    assert "direct chat" in await world.say(f"!human create {fresh}", room=crowded), "an invited third counts"
    assert await world.store.ops.find() == []
    assert await world.store.humans.get(fresh) is None
    assert world.smtp.to("e@example.org") == []
    assert await world.services.matrix.displayname(world.user(fresh)) is None


async def test_a_refused_mail_fails_the_create_and_an_abort_undoes_it(world: World) -> None:
    name = unique("fay")
    op = await world.run(f"!human create {name} --email {name}@refused.test --level team --teams red")
    assert op.state == "failed"
    assert op.failed_step == "deliver"
    assert "refused the recipient" in (op.error or "")
    assert await world.membership("red", name) == "invite"
    assert "!op retry" in await world.say(f"!human create {name} --email {name}@example.org")

    aborted = await world.engine.abort(op.op_id)
    aborted = await world.engine.wait(aborted.op_id)
    assert aborted.state == "compensated", aborted.error
    assert await world.membership("red", name) == "leave"
    assert await world.membership("red-worker", name) == "leave"
    assert await world.store.humans.get(name) is None
    assert await world.store.secrets.get(flows.subject(name), "password") is None
    assert await world.services.matrix.is_deactivated(world.user(name)) is True, "the account we made"


async def test_an_account_the_ledger_gives_to_a_worker_is_not_adopted(world: World) -> None:
    name = unique("zed")
    await world.store.ledger.record("matrix_user", world.user(name), "deleted", owner=f"worker:{name}")

    assert "the account of a worker" in await world.say(f"!human create {name} --email {name}@example.org")
    assert await world.store.ops.find(subject=flows.subject(name)) == []

    # Should a command get past that check (a race with a worker create), the account step refuses too.
    op = await world.engine.wait((await world.engine.submit(flows.CREATE, flows.subject(name), {
        "name": name, "level": "team", "teams": [], "email": f"{name}@example.org"})).op.op_id)
    assert op.state == "failed"
    assert op.failed_step == "account"
    assert f"is the account of worker:{name}" in (op.error or "")
    assert await world.services.matrix.is_deactivated(world.user(name)) is None, "no account was registered"
