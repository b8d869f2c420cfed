"""``hiclaw-bot say "TEXT"``: talk to the bot as a person would, without a Matrix client.

A newcomer should be able to try ``hiclaw-bot say "!worker create alice"`` right after
``hiclaw-bot dev``. So this logs in as a configured user (an admin by default) with a password,
finds the direct-message room it shares with the bot (by its ``m.direct`` list; or creates one,
waits for the bot to join and lists it there, as any client would), sends TEXT as ``m.text`` and
prints what the bot answers, following edits of the progress message, until the answer marked
final (see :data:`~hiclaw_bot.chat.replies.REPLY_KEY`) arrives.

:class:`Conversation` is the same thing as a library, used by the integration tests and the latency
benchmark: it reads replies from a background long-poll sync, as a real client sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import nio

from hiclaw_bot.chat.matrix import NETWORK_ERRORS, new_client
from hiclaw_bot.chat.replies import REPLY_KEY
from hiclaw_bot.config import Config


def _filter(user_id: str) -> dict[str, Any]:
    """Messages only, and not our own: our echo would only wake the long poll for nothing."""
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {"timeline": {"limit": 50, "types": ["m.room.message"], "not_senders": [user_id]},
                 "state": {"types": []}, "ephemeral": {"types": []}, "account_data": {"types": []}},
    }


class SayError(Exception):
    """Talking to the bot failed; the message says at which stage."""


@dataclass(frozen=True)
class BotMessage:
    """One version of one of the bot's answers (a new message, or an edit of one)."""

    event_id: str
    """The id of the original message (edits carry the id of what they replace)."""
    text: str
    html: str | None
    final: bool
    edited: bool
    seen_at: float
    """``time.monotonic()`` when the sync delivered it."""
    sender: str = ""


class Conversation:
    """A user and the bot in one room; see the module docstring."""

    def __init__(self, homeserver: str, user_id: str, bot_user_id: str, *, device_id: str = "HICLAW_SAY",
                 hear_all: bool = False) -> None:
        """``hear_all``: hear everyone in the room, not only the bot (``say --room``, where a worker answers)."""
        self.client = new_client(homeserver, user_id, device_id)
        self.user_id = user_id
        self.bot_user_id = bot_user_id
        self.hear_all = hear_all
        self.room_id: str | None = None
        self._heard: list[tuple[str, Mapping[str, Any], float]] = []
        self._more = asyncio.Event()
        self._sync: asyncio.Task[None] | None = None
        self._token: str | None = None
        self._txn = 0

    def __repr__(self) -> str:
        return f"Conversation({self.user_id!r} with {self.bot_user_id!r}, room={self.room_id!r})"

    async def login(self, *, password: str | None = None, access_token: str | None = None) -> None:
        if access_token is not None:
            self.client.restore_login(self.user_id, self.client.device_id, access_token)
            return
        if password is None:
            raise SayError(f"{self.user_id} needs a password or an access token")
        response = await self.client.login(password=password, device_name="hiclaw-bot say")
        if not isinstance(response, nio.LoginResponse):
            raise SayError(f"login of {self.user_id} failed: {getattr(response, 'message', response)}")

    async def open(self, room_id: str | None = None, *, join_timeout: float = 15.0) -> str:
        """Use ``room_id``, or the direct room with the bot (created if there is none); start listening."""
        self.room_id = room_id or await self._find_dm() or await self._create_dm(join_timeout)
        first = await self.client.sync(timeout=0, sync_filter=_filter(self.user_id))
        if not isinstance(first, nio.SyncResponse):
            raise SayError(f"sync failed: {first}")
        self._token = first.next_batch
        self._sync = asyncio.create_task(self._listen(), name="say-sync")
        return self.room_id

    async def join(self, room: str) -> str:
        """Join ``room`` (an id or alias; accepting an invitation works the same way); return its id."""
        response = await self.client.join(room)
        if not isinstance(response, nio.JoinResponse):
            raise SayError(f"cannot join {room}: {getattr(response, 'message', response)}")
        return str(response.room_id)

    async def send(self, text: str) -> str:
        """Send ``text`` as an ``m.text`` message; return its event id."""
        if self.room_id is None:
            raise SayError("open() the conversation first")
        self._txn += 1
        response = await self.client.room_send(self.room_id, "m.room.message", {"msgtype": "m.text", "body": text},
                                               tx_id=f"say-{time.time_ns()}-{self._txn}")
        if not isinstance(response, nio.RoomSendResponse):
            raise SayError(f"sending failed: {getattr(response, 'message', response)}")
        return str(response.event_id)

    async def replies(self, command_event_id: str, *, within: float = 60.0,
                      until: Callable[[BotMessage], bool] | None = None) -> AsyncIterator[BotMessage]:
        """The bot's answers to one command, edits included, until the final one, or until the first
        that ``until`` accepts (TimeoutError after ``within`` s).

        Everything the bot said since :meth:`open` is kept, so answers to several commands can be
        read one command after the other, in any order. ``until`` reads on past the final answer:
        the progress message's last edit comes after it (the result goes first, as it notifies).
        """
        done = until or (lambda message: message.final)
        deadline = time.monotonic() + within
        ours: set[str] = set()
        index = 0
        while True:
            while index >= len(self._heard):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no final answer within {within:.0f} s")
                self._more.clear()
                await asyncio.wait_for(self._more.wait(), remaining)
            event_id, event, seen_at = self._heard[index]
            index += 1
            message = _answer(event_id, event, command_event_id, ours, seen_at)
            if message is None:
                continue
            ours.add(message.event_id)
            yield message
            if done(message):
                return

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            await asyncio.gather(self._sync, return_exceptions=True)
            self._sync = None
        await self.client.close()

    async def __aenter__(self) -> Conversation:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _listen(self) -> None:
        while True:
            try:
                response = await self.client.sync(timeout=30_000, since=self._token,
                                                  sync_filter=_filter(self.user_id))
            except NETWORK_ERRORS:
                await asyncio.sleep(0.5)
                continue
            if not isinstance(response, nio.SyncResponse):
                await asyncio.sleep(0.5)
                continue
            seen_at = time.monotonic()
            self._token = response.next_batch
            room = response.rooms.join.get(self.room_id)
            for event in room.timeline.events if room is not None else []:
                source = getattr(event, "source", None)
                if isinstance(source, Mapping) and (self.hear_all or source.get("sender") == self.bot_user_id):
                    self._heard.append((str(source.get("event_id")), source, seen_at))
            self._more.set()

    async def _find_dm(self) -> str | None:
        """The newest room the user's ``m.direct`` list holds for the bot, if the bot is still in it.

        Only direct rooms count: a worker room that happens to hold just the user and the bot (the
        worker not joined yet) must not receive commands meant for a private chat.
        """
        for room_id in reversed((await self._direct()).get(self.bot_user_id, [])):
            members = await self.client.joined_members(room_id)
            if isinstance(members, nio.JoinedMembersResponse) and \
                    {m.user_id for m in members.members} == {self.user_id, self.bot_user_id}:
                return str(room_id)
        return None

    async def _direct(self, update: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
        """Read (or replace) the user's ``m.direct`` account data, which nio has no call for."""
        url = f"{self.client.homeserver}/_matrix/client/v3/user/{quote(self.user_id)}/account_data/m.direct"
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            if update is not None:
                async with http.put(url, json=update, headers=headers) as response:
                    response.raise_for_status()
                return update
            async with http.get(url, headers=headers) as response:
                if response.status == 404:
                    return {}
                response.raise_for_status()
                body = await response.json()
        return {k: [r for r in v if isinstance(r, str)] for k, v in body.items() if isinstance(v, list)}

    async def _create_dm(self, join_timeout: float) -> str:
        created = await self.client.room_create(is_direct=True, invite=[self.bot_user_id],
                                                preset=nio.RoomPreset.trusted_private_chat)
        if not isinstance(created, nio.RoomCreateResponse):
            raise SayError(f"cannot create a room with the bot: {getattr(created, 'message', created)}")
        deadline = time.monotonic() + join_timeout
        while time.monotonic() < deadline:
            members = await self.client.joined_members(created.room_id)
            if isinstance(members, nio.JoinedMembersResponse) and \
                    any(m.user_id == self.bot_user_id for m in members.members):
                direct = await self._direct()
                direct.setdefault(self.bot_user_id, []).append(created.room_id)
                await self._direct(direct)
                return str(created.room_id)
            await asyncio.sleep(0.1)
        raise SayError(f"the bot did not join the new room within {join_timeout:.0f} s "
                       f"(is it running, and is {self.user_id} allowed to invite it?)")


def _answer(event_id: str, event: Mapping[str, Any], command: str, ours: set[str],
            seen_at: float) -> BotMessage | None:
    """The event as an answer to ``command``, or None if it answers something else."""
    content = event.get("content")
    if not isinstance(content, Mapping):
        return None
    relates = content.get("m.relates_to")
    if isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace":
        new = content.get("m.new_content")
        original = relates.get("event_id")
        if not isinstance(new, Mapping) or not isinstance(original, str):
            return None
        marker = new.get(REPLY_KEY)
        if original not in ours and not (isinstance(marker, Mapping) and marker.get("command") == command):
            return None
        return BotMessage(original, str(new.get("body", "")), _html(new), final=False, edited=True, seen_at=seen_at)
    marker = content.get(REPLY_KEY)
    sender = str(event.get("sender", ""))
    if not isinstance(marker, Mapping):
        # Not the bot's: a worker's reply to the message is its whole answer.
        replied = relates.get("m.in_reply_to") if isinstance(relates, Mapping) else None
        if isinstance(replied, Mapping) and replied.get("event_id") == command:
            return BotMessage(event_id, str(content.get("body", "")), _html(content), final=True, edited=False,
                              seen_at=seen_at, sender=sender)
        return None
    if marker.get("command") != command:
        return None
    return BotMessage(event_id, str(content.get("body", "")), _html(content), final=bool(marker.get("final")),
                      edited=False, seen_at=seen_at, sender=sender)


def _html(content: Mapping[str, Any]) -> str | None:
    value = content.get("formatted_body")
    return value if isinstance(value, str) else None


async def say(config: Config, text: str, *, user_id: str | None = None, password: str | None = None,
              within: float = 120.0, show: Callable[[BotMessage], None] = print, room: str | None = None) -> bool:
    """Send ``text`` to the bot as ``user_id`` (the first admin by default); show each answer.

    With ``room`` (an id or alias), ``text`` goes there instead (joining it first, as a person
    accepts an invitation), and the answer is the first reply to it from anyone: a worker's, when
    ``text`` mentions one.

    Returns True when the final answer arrived, False when none came within ``within`` seconds.
    """
    matrix = config.matrix
    user = user_id or matrix.admins[0]
    secret = password if password is not None else (
        matrix.admin_password.get_secret_value() if matrix.admin_password is not None else None)
    bot = f"@{matrix.bot.localpart}:{matrix.server_name}"
    async with Conversation(matrix.homeserver, user, bot, hear_all=room is not None) as talk:
        try:
            await talk.login(password=secret)
            await talk.open(await talk.join(room) if room else None)
            command = await talk.send(text)
        except NETWORK_ERRORS as exc:
            raise SayError(f"cannot reach {matrix.homeserver}: {type(exc).__name__}") from None
        with contextlib.suppress(TimeoutError):
            async for message in talk.replies(command, within=within):
                show(message)
                if message.final:
                    return True
    return False
