"""The reference agent's Matrix loop: log in with the token from ``openclaw.json``, join, listen, answer.

A real worker gets its Matrix login from the bot through object storage, never from its own
environment, and the bot may rotate it at any time; so may an admin revoke it. This loop is
written around that, which is why it drives ``sync`` itself instead of using nio's
``sync_forever``:

* **Re-reading the config.** ``openclaw.json`` is read again every 30 s (between long-polls of
  10 s). A changed homeserver, user or token starts a new login; changed allow lists apply at once.
  A mention from someone not in the allow lists makes the agent read it at once (at most every
  2 s) before ignoring the mention: that someone may be a person the bot has just given access.
* **A rejected token** (``M_UNKNOWN_TOKEN`` on any call) stops the session; the agent then polls
  its config until the token in it changes, and carries on where it was.
* **Nothing is answered twice, nothing is lost.** The sync position only moves on after a batch
  has been handled completely, so a batch cut short (token rejected, network down) comes again;
  answered events are remembered, and a reply's transaction id derives from the event it answers,
  which the homeserver deduplicates as well.
* **No backlog.** Messages older than the agent's start are history, not requests: they are not
  answered (after a restart, only what arrives from then on is).

Invites are accepted only from the users in the allow lists; other invites are left pending and
logged. Replies go only to allowed senders who mention the agent (:mod:`hiclaw_bot.agent.mentions`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import nio

from hiclaw_bot.agent.activity import ActivityRecorder
from hiclaw_bot.agent.files import activity_key, openclaw_key, read_settings
from hiclaw_bot.agent.mentions import Identity, is_edit, mentions, reply_content
from hiclaw_bot.agent.settings import MatrixSettings, SettingsError, parse_openclaw
from hiclaw_bot.clients.errors import ClientError
from hiclaw_bot.clients.objectstore import ObjectStore
from hiclaw_bot.timing import Backoff, Failures
from hiclaw_bot.types import EventId, RoomId, UserId, WorkerName

__all__ = ["Agent", "Timing"]

logger = logging.getLogger(__name__)

NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_UNKNOWN_TOKEN = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})
_REMEMBERED_EVENTS = 4096


@dataclass(frozen=True)
class Timing:
    """The agent's intervals, in seconds."""

    refresh: float = 30.0
    """How often ``openclaw.json`` is read again."""
    long_poll: float = 10.0
    """How long one sync waits for events on the server."""
    rejected_poll: float = 5.0
    """How often the config is read while the token in it is being rejected."""
    activity: float = 10.0
    """The least time between two writes of ``activity.json``."""
    max_backoff: float = 10.0
    """The longest wait before trying an unreachable homeserver again."""
    stranger_reread: float = 2.0
    """The least time between two reads of ``openclaw.json`` for mentions from senders not in its allow lists."""


class _TokenRejected(Exception):
    """The homeserver does not accept the access token (any more)."""


class _Recent:
    """The last ``size`` event ids handled (a bounded set: the agent runs for months)."""

    def __init__(self, size: int = _REMEMBERED_EVENTS) -> None:
        self._items: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._size = size

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def add(self, item: str) -> None:
        self._items[item] = None
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def _rejected(response: Any) -> bool:
    return isinstance(response, nio.ErrorResponse) and response.status_code in _UNKNOWN_TOKEN


def _txn_id(event_id: str) -> str:
    return "hiclaw-reply-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def _new_client(settings: MatrixSettings) -> nio.AsyncClient:
    # nio's own retry loops are off: this loop decides when to retry, and can re-read the config meanwhile.
    config = nio.AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, encryption_enabled=False,
                                   store_sync_tokens=False, request_timeout=30)
    client = nio.AsyncClient(settings.homeserver, user=settings.user_id, store_path="", config=config)
    client.access_token = settings.access_token
    return client


def _stranger_mentions(identity: Identity, settings: MatrixSettings, response: nio.SyncResponse) -> bool:
    """Whether the batch holds a mention of the agent by someone not in its allow lists."""
    return any(isinstance(event, nio.RoomMessageText) and event.sender not in settings.allowed
               and event.sender != identity.user_id and mentions(identity, event.source.get("content") or {})
               for room in response.rooms.join.values() for event in room.timeline.events)


class Agent:
    """One worker's agent: ``await Agent(name, store).run()`` serves until cancelled."""

    def __init__(self, worker: WorkerName, store: ObjectStore, *, timing: Timing | None = None) -> None:
        self.worker = worker
        self._store = store
        self._timing = timing or Timing()
        self._activity = ActivityRecorder(store, activity_key(worker), worker, interval=self._timing.activity)
        self._started_ms = int(time.time() * 1000)
        self._since: str | None = None
        self._done = _Recent()
        self._user_id: UserId | None = None
        self._next_stranger_read = 0.0

    def __repr__(self) -> str:
        return f"Agent(worker={self.worker!r})"

    async def run(self) -> None:
        """Read the config, then serve Matrix until cancelled; re-login whenever the login changes."""
        settings = await read_settings(self._store, self.worker)
        async with self._activity:
            while True:
                settings = await self._session(settings)

    async def _session(self, settings: MatrixSettings) -> MatrixSettings:
        """Serve one login; return the settings of the next one."""
        if settings.user_id != self._user_id:
            self._user_id, self._since = settings.user_id, None
        client = _new_client(settings)
        try:
            identity = await self._login(client, settings)
            return await self._serve(client, identity, settings)
        except _TokenRejected:
            logger.warning("the homeserver rejects the access token of %s; waiting for a new one in %s",
                           settings.user_id, openclaw_key(self.worker))
            return await self._wait_for_new_login(settings)
        finally:
            await client.close()

    async def _login(self, client: nio.AsyncClient, settings: MatrixSettings) -> Identity:
        backoff = Failures(Backoff(first=1.0, cap=self._timing.max_backoff, jitter=0.0))
        while True:
            try:
                response = await client.whoami()
            except NETWORK_ERRORS as exc:
                await self._pause(backoff, exc)
                continue
            if isinstance(response, nio.WhoamiResponse):
                break
            if _rejected(response):
                raise _TokenRejected
            logger.warning("whoami failed: %s", response)
            await asyncio.sleep(backoff.next())
        if response.user_id != settings.user_id:
            logger.error("the access token belongs to %s, not to %s", response.user_id, settings.user_id)
            raise _TokenRejected
        display_name: str | None = None
        with contextlib.suppress(*NETWORK_ERRORS):
            profile = await client.get_displayname(settings.user_id)
            if isinstance(profile, nio.ProfileGetDisplayNameResponse):
                display_name = profile.displayname
        logger.info("logged in to %s as %s (display name: %s)", settings.homeserver, settings.user_id,
                    display_name or "none")
        return Identity(settings.user_id, display_name)

    async def _serve(self, client: nio.AsyncClient, identity: Identity, settings: MatrixSettings) -> MatrixSettings:
        loop = asyncio.get_running_loop()
        backoff = Failures(Backoff(first=1.0, cap=self._timing.max_backoff, jitter=0.0))
        next_refresh = loop.time() + self._timing.refresh
        while True:
            if loop.time() >= next_refresh:
                next_refresh = loop.time() + self._timing.refresh
                fresh = await self._reread()
                if fresh is not None and not fresh.same_login(settings):
                    logger.info("the Matrix login in %s changed; logging in again", openclaw_key(self.worker))
                    return fresh
                if fresh is not None and fresh.allowed != settings.allowed:
                    logger.info("allow lists updated: %s", ", ".join(sorted(fresh.allowed)) or "nobody")
                    settings = fresh
            try:
                response = await client.sync(timeout=int(self._timing.long_poll * 1000), since=self._since)
                if isinstance(response, nio.SyncResponse):
                    settings = await self._recheck(identity, settings, response)
                    await self._handle(client, identity, settings, response)
                    if self._since is None:
                        self._activity.synced()
                    self._since = response.next_batch
                    backoff.reset()
                elif _rejected(response):
                    raise _TokenRejected
                else:
                    logger.warning("sync failed: %s", response)
                    await asyncio.sleep(backoff.next())
            except NETWORK_ERRORS as exc:
                await self._pause(backoff, exc)

    async def _pause(self, backoff: Failures, exc: BaseException) -> None:
        delay = backoff.next()
        logger.warning("homeserver unreachable (%s); retrying in %.0f s", type(exc).__name__, delay)
        await asyncio.sleep(delay)

    async def _reread(self) -> MatrixSettings | None:
        try:
            return parse_openclaw(await self._store.get(openclaw_key(self.worker)))
        except (ClientError, SettingsError) as exc:
            logger.warning("could not read %s again: %s", openclaw_key(self.worker), exc)
            return None

    async def _recheck(self, identity: Identity, settings: MatrixSettings,
                       response: nio.SyncResponse) -> MatrixSettings:
        """The allow lists read again when someone outside them mentions the agent (see the module docstring)."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_stranger_read or not _stranger_mentions(identity, settings, response):
            return settings
        self._next_stranger_read = loop.time() + self._timing.stranger_reread
        fresh = await self._reread()
        if fresh is None or not fresh.same_login(settings) or fresh.allowed == settings.allowed:
            return settings  # a new login waits for the regular re-read, which starts it cleanly
        logger.info("allow lists updated: %s", ", ".join(sorted(fresh.allowed)) or "nobody")
        return fresh

    async def _wait_for_new_login(self, rejected: MatrixSettings) -> MatrixSettings:
        # The bot writes the new login before it revokes the old one: the first look often finds it.
        while True:
            fresh = await self._reread()
            if fresh is not None and not fresh.same_login(rejected):
                logger.info("found a new Matrix login in %s", openclaw_key(self.worker))
                return fresh
            await asyncio.sleep(self._timing.rejected_poll)

    async def _handle(self, client: nio.AsyncClient, identity: Identity, settings: MatrixSettings,
                      response: nio.SyncResponse) -> None:
        for room_id, invite in response.rooms.invite.items():
            await self._on_invite(client, identity, settings, RoomId(room_id), invite.invite_state)
        for room_id, room in response.rooms.join.items():
            for event in room.timeline.events:
                if isinstance(event, nio.RoomMessageText):
                    await self._on_message(client, identity, settings, RoomId(room_id), event)

    async def _on_invite(self, client: nio.AsyncClient, identity: Identity, settings: MatrixSettings,
                         room_id: RoomId, invite_state: list[Any]) -> None:
        inviter = next((event.sender for event in invite_state
                        if isinstance(event, nio.InviteMemberEvent) and event.state_key == identity.user_id
                        and event.membership == "invite"), None)
        if inviter not in settings.allowed:
            logger.info("left the invite to %s from %s pending: not in the allow lists", room_id,
                        inviter or "an unknown user")
            return
        response = await client.join(room_id)
        if isinstance(response, nio.JoinResponse):
            logger.info("joined %s, invited by %s", room_id, inviter)
        elif _rejected(response):
            raise _TokenRejected
        else:
            logger.warning("could not join %s: %s", room_id, response)

    async def _on_message(self, client: nio.AsyncClient, identity: Identity, settings: MatrixSettings,
                          room_id: RoomId, event: nio.RoomMessageText) -> None:
        event_id, sender = EventId(event.event_id), UserId(event.sender)
        if sender == identity.user_id or event_id in self._done or event.server_timestamp < self._started_ms:
            return
        content: dict[str, Any] = event.source.get("content") or {}
        if is_edit(content):
            self._done.add(event_id)
            return
        replied = False
        if sender in settings.allowed and mentions(identity, content):
            replied = await self._answer(client, room_id, event_id, sender, event.body)
        self._activity.saw_message()
        if replied:
            self._activity.replied()
        self._done.add(event_id)

    async def _answer(self, client: nio.AsyncClient, room_id: RoomId, event_id: EventId, sender: UserId,
                      body: str) -> bool:
        reply = reply_content(self.worker, event_id, sender, body)
        response = await client.room_send(room_id, "m.room.message", reply, tx_id=_txn_id(event_id))
        if isinstance(response, nio.RoomSendResponse):
            logger.info("answered %s in %s", sender, room_id)
            return True
        if _rejected(response):
            raise _TokenRejected
        logger.warning("could not answer %s in %s: %s", event_id, room_id, response)
        return False
