"""The sync loop under failure: it backs off and never spins, and a failed batch comes again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import nio
import pytest

from hiclaw_bot.chat.bot import Bot
from hiclaw_bot.chat.record import SYNC_KEY
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, FakeClock
from hiclaw_bot.timing import Backoff, Failures
from storage import Store


class ScriptedSync:
    """A stand-in for nio's client: ``sync`` plays a script; the bot stops when it runs out."""

    def __init__(self, bot: Bot, script: list[Any]) -> None:
        self.bot = bot
        self.script = script
        self.calls: list[str | None] = []

    async def sync(self, **request: Any) -> Any:
        since = request["since"]
        self.calls.append(since)
        if len(self.script) == 1:
            self.bot._stopping = True
        answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def empty_sync(token: str) -> nio.SyncResponse:
    rooms = SimpleNamespace(invite={}, join={}, leave={})
    return nio.SyncResponse(token, rooms, {}, [], [], [])


@pytest.fixture
async def bot(config: Config, store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bot]:
    engine = Engine(store)
    bot = Bot(config, store, engine, clock=FakeClock())

    async def keep_token(response: nio.SyncResponse, since: str | None) -> None:
        await store.sync.set(SYNC_KEY, response.next_batch)

    monkeypatch.setattr(bot, "_handle_sync", keep_token)
    yield bot
    await engine.stop()


async def test_errors_back_off_exponentially_and_never_spin(bot: Bot, store: Store) -> None:
    script: list[Any] = [nio.SyncError("boom") for _ in range(6)]
    script += [aiohttp.ClientConnectionError("reset"), TimeoutError(), empty_sync("t1")]
    client = ScriptedSync(bot, script)
    bot.client = client
    await bot._sync_loop(None)
    assert len(client.calls) == 9
    waits = bot.clock.sleeps  # type: ignore[attr-defined]
    assert len(waits) == 8
    for failures, wait in enumerate(waits, start=1):
        base = min(60.0, 0.5 * 2 ** (failures - 1))
        assert 0.75 * base <= wait <= 1.25 * base
    assert await store.sync.get(SYNC_KEY) == "t1"


async def test_a_rate_limit_hint_is_honoured(bot: Bot) -> None:
    client = ScriptedSync(bot, [nio.SyncError("slow down", "M_LIMIT_EXCEEDED", 7000), empty_sync("t")])
    bot.client = client
    await bot._sync_loop(None)
    assert bot.clock.sleeps == [7.0]  # type: ignore[attr-defined]


async def test_a_batch_that_fails_is_not_skipped(bot: Bot, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    async def flaky(response: nio.SyncResponse, since: str | None) -> None:
        seen.append(since)
        if len(seen) == 1:
            raise RuntimeError("database locked")
        await store.sync.set(SYNC_KEY, response.next_batch)

    monkeypatch.setattr(bot, "_handle_sync", flaky)
    client = ScriptedSync(bot, [empty_sync("t1"), empty_sync("t1"), empty_sync("t2")])
    bot.client = client
    bot._stopping = False
    await bot._sync_loop("t0")
    assert client.calls == ["t0", "t0", "t1"]  # the failed batch was asked for again
    assert await store.sync.get(SYNC_KEY) == "t2"


def test_backoff_is_capped_and_resets() -> None:
    backoff = Failures(Backoff(first=1, cap=8))
    waits = [backoff.next() for _ in range(8)]
    assert max(waits) <= 8 * 1.25
    assert waits[-1] >= 8 * 0.75
    backoff.reset()
    assert backoff.next() <= 1.25


def test_without_msc4115_the_join_time_separates_history_from_commands(bot: Bot) -> None:
    def text(event_id: str, stamp: int) -> Any:
        return SimpleNamespace(source={"type": "m.room.message", "sender": "@root:example.org", "event_id": event_id,
                                       "origin_server_ts": stamp, "content": {"msgtype": "m.text", "body": "!help"}})

    bot._joined_at["!r:example.org"] = 5_000
    found = bot._commands("!r:example.org", [text("$before", 4_999), text("$after", 5_000)])
    assert [m.event_id for m in found] == ["$after"]
    assert [m.event_id for m in bot._commands("!other:example.org", [text("$x", 1)])] == ["$x"]
