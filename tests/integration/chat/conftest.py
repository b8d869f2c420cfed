"""A bot against the session's real Synapse: accounts, config, a running bot, a user talking to it.

Each test gets its own bot account, users and database, so sync tokens and processed events never
leak between tests even though they share one homeserver.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hiclaw_bot.chat import Bot, default_registry
from hiclaw_bot.chat.replies import REPLY_KEY
from hiclaw_bot.chat.say import BotMessage, Conversation
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, RoomEvent, SharedSecretRegistration
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.engine import Engine, RetryPolicy
from hiclaw_bot.types import RoomId, UserId
from storage import Store
from tests.fixtures.synapse import SynapseEnv, unique
from tests.integration.chat.demo import register_demo


@dataclass(frozen=True)
class Account:
    user_id: UserId
    password: str = field(repr=False)
    token: str = field(repr=False)


@dataclass(frozen=True)
class ChatSetup:
    synapse: SynapseEnv
    bot: Account
    admin: Account
    stranger: Account
    data_dir: Path

    def config(self, **matrix: Any) -> Config:
        localpart = self.bot.user_id[1:].split(":")[0]
        return Config.model_validate({
            "data_dir": str(self.data_dir),
            "matrix": {
                "homeserver": self.synapse.url, "server_name": self.synapse.server_name,
                "bot": {"localpart": localpart, "password": self.bot.password, "device_id": "HICLAWBOT"},
                "admins": [self.admin.user_id],
                "registration": {"mode": "token", "token": self.synapse.registration_token},
                **matrix,
            },
            "storage": {"kind": "local", "directory": str(self.data_dir / "objects")},
        })

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hiclaw.db"

    def app_document(self, tmp: Path | None = None, *, bot: Account | None = None,
                     **sections: Any) -> dict[str, Any]:
        """The whole app's configuration (``hiclaw_bot.app.running``) on this homeserver, as a document.

        ``bot`` (this setup's by default) serves ``admin``; data and objects live under ``tmp``
        (the setup's directory by default); ``sections`` add or replace top-level sections."""
        tmp = tmp or self.data_dir
        bot = bot or self.bot
        return {
            "data_dir": str(tmp / "data"),
            "matrix": {
                "homeserver": self.synapse.url, "server_name": self.synapse.server_name,
                "bot": {"localpart": bot.user_id[1:].split(":")[0], "password": bot.password},
                "admins": [self.admin.user_id],
                "registration": {"mode": "token", "token": self.synapse.registration_token},
            },
            "storage": {"kind": "local", "directory": str(tmp / "objects")},
            **sections,
        }

    def app_config(self, tmp: Path | None = None, *, bot: Account | None = None, **sections: Any) -> Config:
        return Config.model_validate(self.app_document(tmp, bot=bot, **sections))


def gateway_section(gateway: HigressConsoleSimulator, gateway_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    """The gateway simulator as the bot's gateway; model calls go nowhere unless ``gateway_url`` says."""
    return {"kind": "higress", "console_url": gateway.url, "password": gateway.password, "gateway_url": gateway_url}


async def register(synapse: SynapseEnv, prefix: str) -> Account:
    password = secrets.token_urlsafe(12)
    registration = SharedSecretRegistration(synapse.shared_secret)
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name, registration=registration) as client:
        user = await client.ensure_user(unique(prefix), password)
    return Account(user.user_id, password, user.access_token)


async def server_admin(setup: ChatSetup) -> Account:
    """A bot account that is a Synapse server admin, as deployed: deleting a worker locks its
    account through the admin API (and an account takeover would abuse that power)."""
    password = unique("pw")
    registration = SharedSecretRegistration(setup.synapse.shared_secret, admin=True)
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                           registration=registration) as client:
        user = await client.ensure_user(unique("hiclaw"), password)
    return Account(user.user_id, password, user.access_token)


@pytest.fixture
async def setup(synapse: SynapseEnv, tmp_path: Path) -> ChatSetup:
    return ChatSetup(synapse, await register(synapse, "bot"), await register(synapse, "boss"),
                     await register(synapse, "stranger"), tmp_path)


@dataclass
class Running:
    bot: Bot
    store: Store
    engine: Engine


@asynccontextmanager
async def running_bot(config: Config, db_path: Path, **options: Any) -> AsyncIterator[Running]:
    """Store, engine (with the demo flow) and bot, started; everything stopped on exit."""
    store = await Store.open(db_path)
    engine = Engine(store, retry=RetryPolicy(max_attempts=2, initial=0.01))
    registry = default_registry()
    register_demo(engine, registry)
    bot = Bot(config, store, engine, registry=registry, sync_timeout=options.pop("sync_timeout", 5.0), **options)
    try:
        await engine.start()
        async with bot:
            yield Running(bot, store, engine)
        assert not bot.ready
    finally:
        await engine.stop()
        await store.close()


@asynccontextmanager
async def talking(setup: ChatSetup, account: Account, room_id: str | None = None) -> AsyncIterator[Conversation]:
    """``account`` in a direct room with the bot (the bot must be running when no room is given)."""
    async with Conversation(setup.synapse.url, account.user_id, setup.bot.user_id,
                            device_id=f"T{secrets.token_hex(4)}") as talk:
        await talk.login(access_token=account.token)
        await talk.open(room_id)
        yield talk


def final_text(answers: Sequence[BotMessage]) -> str:
    """The bot's last word on a command (its final answer), or nothing when it never answered."""
    return answers[-1].text if answers else ""


async def ask(talk: Conversation, text: str, *, within: float = 20.0) -> tuple[str, list[BotMessage]]:
    """Send ``text``; return its event id and every answer up to the final one."""
    event_id = await talk.send(text)
    return event_id, [m async for m in talk.replies(event_id, within=within)]


async def progress_shows(talk: Conversation, command_event_id: str, line: str, *, within: float = 10.0) -> bool:
    """Whether the progress message answering the command comes to show ``line`` (``"✓ ready"``).

    Read on past the final answer: the result goes out first, and the progress message's last
    edit, which shows the last steps done, follows it within the edit rate limit."""
    with suppress(TimeoutError):
        async for message in talk.replies(command_event_id, within=within, until=lambda m: line in m.text):
            if line in message.text:
                return True
    return False


def answer_markers(event: RoomEvent) -> Mapping[str, Any] | None:
    marker = event.content.get(REPLY_KEY)
    return marker if isinstance(marker, Mapping) else None


async def answers_to(setup: ChatSetup, account: Account, room_id: str, command_event_id: str) -> list[RoomEvent]:
    """Every message of the bot in the room answering ``command_event_id`` (edits excluded), from the server."""
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name) as client:
        events = await client.recent_messages(RoomId(room_id), limit=100, token=account.token)
    return [e for e in events if e.sender == setup.bot.user_id and (m := answer_markers(e)) is not None
            and m.get("command") == command_event_id]
