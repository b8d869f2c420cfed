"""Talking to a real OpenClaw worker in its room, as a person does: a mention, then its answer."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from hiclaw_bot.app import App, running
from hiclaw_bot.chat.say import Conversation
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.types import RoomId
from tests.fixtures.openclaw import openclaw_install
from tests.fixtures.processes import processes_under, stop, with_descendants
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import Account, ChatSetup, gateway_section, server_admin, talking


def openclaw_config(setup: ChatSetup, bot: Account, gateway: HigressConsoleSimulator, tmp: Path,
                    **extra: Any) -> Config:
    """The whole app on the process backend, OpenClaw workers by default, models through the simulator."""
    return setup.app_config(tmp, bot=bot, **{
        "gateway": gateway_section(gateway, gateway.gateway_url),
        # Reference agents by their console script: tests elsewhere on a shared machine stop every
        # process with "hiclaw_bot.agent" in its command line.
        "backend": {"kind": "process", "instance": unique("oc"),
                    "process": {"grace_period": "15s",
                                "command": [str(Path(sys.executable).with_name("hiclaw-agent"))]}},
        "runtimes": {"default": "openclaw",
                     "openclaw": {"install_dir": str(openclaw_install()), "sync_interval": "1s"}},
        "quotas": {"allowed_models": ["qwen-max", "qwen-plus"], "max_workers": 5},
        "lifecycle": {"ready_timeout": "60s"},
        "api": {"enabled": False},
        **extra,
    })


async def mention(setup: ChatSetup, account: Account, room_id: str, user_id: str, text: str) -> str:
    """Send ``text`` mentioning ``user_id`` as Element does (a pill and ``m.mentions``); the event id."""
    localpart = user_id[1:].split(":")[0]
    content = {
        "msgtype": "m.text", "body": f"{localpart}: {text}", "format": "org.matrix.custom.html",
        "formatted_body": f'<a href="https://matrix.to/#/{user_id}">{localpart}</a>: {text}',
        "m.mentions": {"user_ids": [user_id]},
    }
    url = (f"{setup.synapse.url}/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/"
           f"{quote(unique('txn'))}")
    async with aiohttp.ClientSession() as session, \
            session.put(url, json=content, headers={"Authorization": f"Bearer {account.token}"}) as response:
        response.raise_for_status()
        return str((await response.json())["event_id"])


async def join(setup: ChatSetup, account: Account, room_id: str) -> None:
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name) as client:
        await client.join(RoomId(room_id), token=account.token)


async def answer_from(setup: ChatSetup, account: Account, room_id: str, sender: str, text: str, *,
                      within: float = 150.0) -> str:
    """Wait until ``sender`` says something containing ``text`` in the room; the message's body."""
    deadline = time.monotonic() + within
    said: list[str] = []
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name) as client:
        while time.monotonic() < deadline:
            events = await client.recent_messages(RoomId(room_id), limit=30, token=account.token)
            said = [str(e.content.get("body", "")) for e in events if e.sender == sender]
            for body in said:
                if text in body:
                    return body
            await asyncio.sleep(1.0)
    raise TimeoutError(f"{sender} did not say {text!r} within {within:.0f}s; it said {said!r}")


@dataclass(frozen=True)
class OpenClawApp:
    """The whole app with OpenClaw workers: the setup (its bot a server admin), the gateway
    simulator, the running app, and the admin talking to the bot."""

    setup: ChatSetup
    gateway: HigressConsoleSimulator
    app: App
    talk: Conversation


@asynccontextmanager
async def openclaw_app(setup: ChatSetup, tmp: Path) -> AsyncIterator[OpenClawApp]:
    bot = await server_admin(setup)
    setup = ChatSetup(setup.synapse, bot, setup.admin, setup.stranger, setup.data_dir)
    async with HigressConsoleSimulator(initialized=True) as gateway:
        config = openclaw_config(setup, bot, gateway, tmp)
        async with running(config) as app, talking(setup, setup.admin) as talk:
            yield OpenClawApp(setup, gateway, app, talk)


@pytest.fixture(autouse=True)
def no_worker_left_behind(tmp_path: Path) -> Iterator[None]:
    """A worker left running by a failed test (the process backend's workers outlive the bot) is
    stopped after it: SIGTERM to the launcher stops OpenClaw; what is left after 10 s is killed."""
    yield
    stop(with_descendants(processes_under(tmp_path)), timeout=10)
