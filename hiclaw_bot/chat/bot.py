"""The bot: a Matrix sync loop that turns messages into commands, exactly once across restarts.

Why our own loop and not nio's ``sync_forever``: nio saves ``next_batch`` *before* its callbacks
run and only in its own E2E store, so a crash mid-callback loses commands; and it retries a failed
sync in a tight loop. Here:

* the sync token lives in our database; the processed-event mark and the audit row are written in
  the transaction that records the command's operation (or its answer), and the new token with the
  *last* command of the batch (or on its own when the batch holds none). A crash replays the batch
  from the old token and the marks make every command in it a no-op, so nothing runs twice and
  nothing is lost;
* a resumed sync asks for ``full_state`` (nio otherwise starts with no room state, nio #525); the
  very first sync of a new installation skips room history (commands nobody sent to *this* bot),
  and a room's timeline before the bot's own join is never treated as commands (hemppa #27): the
  server marks such events (MSC4115), and where it does not, the time of the bot's join does;
* commands older than ``matrix.command_max_age`` — found on catch-up — are answered, not run;
* a timeline the server cut short (``limited``) is filled from ``/messages`` back to the old token;
* sync errors (nio *returns* them) back off exponentially with jitter, up to a minute, never spin;
* invites are accepted only from admins and allowed inviters, or into rooms the store knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol

import nio

from hiclaw_bot.chat.builtin import default_registry
from hiclaw_bot.chat.context import Incoming
from hiclaw_bot.chat.dispatch import Dispatcher
from hiclaw_bot.chat.grammar import BotIdentity, command_text
from hiclaw_bot.chat.matrix import (
    NETWORK_ERRORS,
    TOKEN_SECRET,
    NioOutbox,
    incoming,
    inviter,
    login,
    new_client,
    secret_owner,
    unknown_token,
)
from hiclaw_bot.chat.progress import ACTIVE_STATES, ProgressHub
from hiclaw_bot.chat.record import SYNC_KEY
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.replies import JsonDict, relation_to
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, describe
from hiclaw_bot.timing import SYSTEM_CLOCK, Backoff, Clock, Failures
from hiclaw_bot.types import RoomId, UserId
from storage import Store

log = logging.getLogger("hiclaw_bot.chat.bot")

_MESSAGES = ["m.room.message"]
_BACKFILL_PAGES = 10
PROCESSED_EVENTS_KEPT = 30 * 86400.0
"""How long processed-event marks are kept: far longer than any sync token is replayed."""
_STOP_GRACE = 10.0


def sync_filter(timeline_limit: int, me: str) -> JsonDict:
    """Only what the bot reads: others' messages. No presence, receipts, typing or account data, and
    not its own messages: each answer would otherwise wake the bot's long poll for nothing, and the
    homeserver would compute that sync just when the person's client waits for the answer."""
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {"limit": timeline_limit, "types": _MESSAGES, "not_senders": [me]},
            "state": {"lazy_load_members": True, "types": ["m.room.create", "m.room.power_levels"]},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }


SYNC_BACKOFF = Backoff(first=0.5, cap=60.0, jitter=0.25)
"""Waits between failed syncs: 0.5 s, 1 s, 2 s … 60 s, or longer when the server asks."""
JOIN_BACKOFF = Backoff(first=0.5, jitter=0.0)
"""Waits between attempts to join a room the bot was invited to: 0.5 s, 1 s."""


class MessageObserver(Protocol):
    """Sees every text message the sync delivers, commands or not (``command`` says which).

    How the layers beside chat (lifecycle: activity, wake on mention) hear the rooms without the
    chat layer knowing them. Called after the batch's commands are handled; must be quick (queue
    slow work) and an error it raises is logged and ignored: it never holds up the sync.
    """

    async def __call__(self, message: Incoming, *, command: bool) -> None: ...


class Bot:
    """The Matrix side of hiclaw-bot.

    ``registry`` holds the commands (the built-ins by default; register more before :meth:`start`).
    The engine is started and stopped by the caller: the bot only submits to it and reports on it.
    ``sync_timeout`` is the long-poll time, ``timeline_limit`` the events per room and sync before
    the bot pages back, ``progress_interval`` the least time between two edits of a progress
    message; ``clock`` times back-offs and edits (a fake one in tests). ``observers`` see every
    message of every sync (see :class:`MessageObserver`).
    """

    def __init__(self, config: Config, store: Store, engine: Engine, *, registry: Registry | None = None,
                 sync_timeout: float = 30.0, timeline_limit: int = 50, progress_interval: float = 1.0,
                 clock: Clock | None = None, observers: Sequence[MessageObserver] = ()) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.registry = registry if registry is not None else default_registry()
        self.user_id = UserId(f"@{config.matrix.bot.localpart}:{config.matrix.server_name}")
        self.sync_timeout = sync_timeout
        self.timeline_limit = timeline_limit
        self.progress_interval = progress_interval
        self.clock = clock or SYSTEM_CLOCK
        self.client: nio.AsyncClient | None = None
        self.hub: ProgressHub | None = None
        self._dispatcher: Dispatcher | None = None
        self._resolver = Resolver(config, store)
        self._joined_at: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._processing = False
        self._stopping = False
        self.observers = list(observers)

    def __repr__(self) -> str:
        return f"Bot({self.user_id!r}, homeserver={self.config.matrix.homeserver!r})"

    @property
    def ready(self) -> bool:
        """Syncing: the first sync (the catch-up after downtime) has been handled (for ``/readyz``)."""
        return self._ready.is_set() and self._task is not None and not self._task.done()

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, resume progress reports, and run the sync loop until :meth:`stop`.

        Returns after the first sync has been handled (commands sent while the bot was down are
        answered by then); raises if the bot cannot log in.
        """
        account = self.config.matrix.bot
        client = new_client(self.config.matrix.homeserver, self.user_id, account.device_id)
        self.client = client
        try:
            await login(client, account, self.store)
            await self._ensure_display_name(account.display_name)
            outbox = NioOutbox(client, clock=self.clock)
            self.hub = ProgressHub(self.engine, self.store, outbox, clock=self.clock, interval=self.progress_interval)
            await self.hub.start()
            self._dispatcher = Dispatcher(config=self.config, store=self.store, engine=self.engine,
                                          registry=self.registry, hub=self.hub, outbox=outbox,
                                          identity=BotIdentity(self.user_id, account.display_name),
                                          resolver=self._resolver)
            await self._resume_reports()
            await self.store.events.prune(self.store.db.now() - PROCESSED_EVENTS_KEPT)
            await self.store.confirmations.purge_expired()
        except BaseException:
            await self._close()
            raise
        self._stopping = False
        self._ready.clear()
        self._task = asyncio.create_task(self._sync_loop(await self.store.sync.get(SYNC_KEY)), name="matrix-sync")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()  # the loop died before it was ready: raise its error

    async def stop(self) -> None:
        """Finish the batch being handled (briefly), then stop syncing and reporting."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            if not self._processing:
                task.cancel()
            done, _ = await asyncio.wait({task}, timeout=_STOP_GRACE)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close()

    async def run(self) -> None:
        """Start and keep running until cancelled or the loop fails."""
        await self.start()
        try:
            assert self._task is not None
            await self._task
        finally:
            await self.stop()

    async def __aenter__(self) -> Bot:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _close(self) -> None:
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def _ensure_display_name(self, wanted: str) -> None:
        assert self.client is not None
        current = await self.client.get_displayname()
        if isinstance(current, nio.ProfileGetDisplayNameResponse) and current.displayname != wanted:
            await self.client.set_displayname(wanted)

    # -- the loop -------------------------------------------------------------------------------

    async def _sync_loop(self, token: str | None) -> None:
        assert self.client is not None
        client = self.client
        backoff = Failures(SYNC_BACKOFF)
        resumed = token is not None
        filter_ = sync_filter(self.timeline_limit, self.user_id)
        while not self._stopping:
            try:
                response = await client.sync(timeout=int(self.sync_timeout * 1000) if self._ready.is_set() else 0,
                                             since=token, full_state=resumed and not self._ready.is_set(),
                                             sync_filter=filter_)
            except NETWORK_ERRORS as exc:
                await self._pause(backoff, describe(exc) or type(exc).__name__)
                continue
            if not isinstance(response, nio.SyncResponse):
                if unknown_token(response):
                    await self._relogin()
                hint = getattr(response, "retry_after_ms", None)
                await self._pause(backoff, str(response), hint / 1000 if isinstance(hint, int) else None)
                continue
            backoff.reset()
            self._processing = True
            try:
                await self._handle_sync(response, token)
            except Exception as exc:
                # The token did not move: the batch comes again, and what was done is marked.
                log.exception("handling a sync batch failed")
                await self._pause(backoff, describe(exc))
                continue
            finally:
                self._processing = False
            token = response.next_batch
            self._ready.set()

    async def _pause(self, backoff: Failures, problem: str, hint: float | None = None) -> None:
        delay = backoff.next(hint)
        log_at = logging.WARNING if backoff.count <= 3 or backoff.count % 10 == 0 else logging.DEBUG
        log.log(log_at, "sync failed (%d in a row): %s; next try in %.1f s", backoff.count, problem, delay)
        await self.clock.sleep(delay)

    async def _relogin(self) -> None:
        """The server dropped our token: forget the cached one and log in again with the password."""
        assert self.client is not None
        await self.store.secrets.delete(secret_owner(self.user_id), TOKEN_SECRET)
        try:
            await login(self.client, self.config.matrix.bot, self.store)
        except Exception as exc:  # noqa: BLE001 (retried by the loop after its back-off)
            log.warning("login again failed: %s", describe(exc))

    async def _handle_sync(self, response: nio.SyncResponse, since: str | None) -> None:
        """Invites first, then every room's new messages in order; the token last."""
        for room_id, info in response.rooms.invite.items():
            await self._invited(RoomId(room_id), info.invite_state)
        messages: list[Incoming] = []
        if since is not None:  # a new installation does not answer history
            for room_id, info in response.rooms.join.items():
                events = list(info.timeline.events)
                if info.timeline.limited and info.timeline.prev_batch:
                    events = await self._backfill(room_id, info.timeline.prev_batch, since) + events
                messages += self._commands(room_id, events)
        assert self._dispatcher is not None
        token_saved = False
        for index, message in enumerate(messages):
            last = index == len(messages) - 1
            token_saved = await self._dispatcher.handle(message, sync_token=response.next_batch if last else None)
        await self._tell_observers(messages)
        if not token_saved:
            await self.store.sync.set(SYNC_KEY, response.next_batch)

    async def _tell_observers(self, messages: Sequence[Incoming]) -> None:
        if not self.observers:
            return
        assert self._dispatcher is not None
        identity = self._dispatcher.identity
        for message in messages:
            command = command_text(message.body, identity, message.formatted_body) is not None
            for observer in self.observers:
                try:
                    await observer(message, command=command)
                except Exception:
                    log.exception("a message observer failed on %s", message.event_id)

    def _commands(self, room_id: str, events: Sequence[Any]) -> list[Incoming]:
        found = (incoming(room_id, event, self.user_id) for event in events)
        joined_at = self._joined_at.get(room_id, 0)
        return [m for m in found if m is not None and (m.sent_at is None or m.sent_at >= joined_at)]

    async def _backfill(self, room_id: str, prev_batch: str, since: str) -> list[Any]:
        """The events between ``since`` and the start of a cut-short timeline, oldest first."""
        assert self.client is not None
        collected: list[Any] = []
        start = prev_batch
        for _ in range(_BACKFILL_PAGES):
            page = await self.client.room_messages(room_id, start=start, end=since, direction=nio.MessageDirection.back,
                                                   limit=100, message_filter={"types": _MESSAGES,
                                                                              "not_senders": [self.user_id]})
            if not isinstance(page, nio.RoomMessagesResponse) or not page.chunk:
                break
            collected += page.chunk
            if not page.end or page.end == start:
                break
            start = page.end
        else:
            log.warning("room %s: more than %d pages missed while down; older commands are not answered",
                        room_id, _BACKFILL_PAGES)
        return list(reversed(collected))

    # -- invites --------------------------------------------------------------------------------

    async def _invited(self, room_id: RoomId, invite_state: list[Any]) -> None:
        assert self.client is not None
        sender = inviter(invite_state, self.user_id)
        if sender is None:
            return
        matrix = self.config.matrix
        welcome = sender in matrix.admins or sender in matrix.allowed_inviters \
            or await self._resolver.known_room(room_id)
        if welcome:
            for attempt in range(3):
                response = await self.client.join(room_id)
                if isinstance(response, nio.JoinResponse):
                    break
                log.warning("joining %s failed (attempt %d): %s", room_id, attempt + 1, response)
                await self.clock.sleep(JOIN_BACKOFF.delay(attempt + 1))
            decision = "joined" if isinstance(response, nio.JoinResponse) else "join-failed"
            if decision == "joined":
                await self._note_join(room_id)
        else:
            await self.client.room_leave(room_id)
            decision = "declined"
        log.info("invite to %s from %s: %s", room_id, sender, decision)
        await self.store.audit.add(actor=sender, command="invite", decision=decision, room_id=room_id)

    async def _note_join(self, room_id: RoomId) -> None:
        """Remember when (by the server's clock) the bot joined, for servers that do not mark history.

        The room's next timeline may hold messages from before the join; servers with MSC4115 say so
        on each event (``unsigned.membership``), for the others this timestamp draws the line.
        """
        assert self.client is not None
        state = await self.client.room_get_state(room_id)
        for event in state.events if isinstance(state, nio.RoomGetStateResponse) else []:
            if event.get("type") == "m.room.member" and event.get("state_key") == self.user_id:
                stamp = event.get("origin_server_ts")
                if isinstance(stamp, int):
                    self._joined_at[room_id] = stamp

    # -- progress of operations that outlived the previous process ------------------------------

    async def _resume_reports(self) -> None:
        """Follow the operations still moving, and tell those that finished while nobody reported
        (the previous process died between the finish and its final message)."""
        assert self.hub is not None
        moving = await self.store.ops.find(states=sorted(ACTIVE_STATES), limit=1000)
        for op in [*moving, *await self.store.ops.unreported()]:
            if op.room_id and op.source_event_id:
                self.hub.track(op, await self._relation_of(op.room_id, op.source_event_id))

    async def _relation_of(self, room_id: str, event_id: str) -> JsonDict:
        """Answer where the command was (its thread, if any): read the command event back."""
        assert self.client is not None
        with contextlib.suppress(*NETWORK_ERRORS):
            response = await self.client.room_get_event(room_id, event_id)
            if isinstance(response, nio.RoomGetEventResponse):
                content = response.event.source.get("content", {})
                return relation_to(event_id, content if isinstance(content, dict) else {})
        return relation_to(event_id, {})
