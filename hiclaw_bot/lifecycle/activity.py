"""A worker's last activity, from what the bot's sync sees, written in batches.

What counts (ARCHITECTURE §4, idle auto-sleep): the worker's own messages, and messages to it in
its rooms — anything said in its own room, and messages that mention it in its team room. The
agent's own record (``agents/<w>/state/activity.json``: when it started, last saw and last answered
a message) is the backend's signal; the idle sweep reads it for the few workers it is about to put
to sleep, so a worker busy in a room the bot does not see is not stopped.

A busy room must not become a write per message: stamps collect in memory and :meth:`flush` writes
them in one transaction (``last_active_at`` only ever moves forward). A crash loses at most one
flush interval of activity, which only delays a sleep, never causes a wrong one.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from hiclaw_bot.agent.mentions import Identity, mentions
from hiclaw_bot.clients.errors import ClientError, NotFoundError
from hiclaw_bot.engine import Clock
from hiclaw_bot.flows import names
from hiclaw_bot.flows.runtimes.reference import ACTIVITY
from hiclaw_bot.flows.services import Services
from hiclaw_bot.lifecycle.rooms import RoomIndex, SeenMessage

log = logging.getLogger("hiclaw_bot.lifecycle")

_AGENT_STAMPS = ("started_at", "last_seen", "last_reply")


def mentioned(message: SeenMessage, worker: str, domain: str) -> bool:
    """Whether the message addresses ``worker`` (pill, ``m.mentions``, or its id or name as a word)."""
    return mentions(Identity(names.user_id(worker, domain)), message.content)


class ActivityTracker:
    def __init__(self, services: Services, index: RoomIndex, clock: Clock) -> None:
        self.services = services
        self.index = index
        self.clock = clock
        self.pending: dict[str, float] = {}

    async def saw(self, message: SeenMessage, *, command: bool) -> None:
        """Note the workers ``message`` counts for; commands to the bot count only for their sender."""
        rooms = await self.index.lookup(message.room_id)
        stamp = message.sent_at / 1000 if message.sent_at is not None else self.clock.wall()
        active: set[str] = set()
        if (sender := rooms.users.get(message.sender)) is not None:
            active.add(sender)
        if not command:
            own = rooms.worker_rooms.get(message.room_id)
            if own is not None:
                active.add(own)
            domain = self.services.domain
            active.update(w for w in rooms.team_rooms.get(message.room_id, ()) if mentioned(message, w, domain))
        for worker in active:
            self.pending[worker] = max(stamp, self.pending.get(worker, 0.0))

    async def flush(self) -> int:
        """Write what was seen since the last flush; returns how many workers it touched."""
        if not self.pending:
            return 0
        batch, self.pending = self.pending, {}
        await self.services.store.workers.record_activity(batch)
        return len(batch)

    async def agent_reported(self, worker: str) -> float | None:
        """The latest time the worker's agent reports (started, saw or answered a message), if any."""
        key = f"{names.worker_prefix(worker)}{ACTIVITY}"
        try:
            record = json.loads(await self.services.objects.get(key))
        except NotFoundError:
            return None
        except (ClientError, ValueError) as exc:
            log.warning("cannot read the activity of %s: %s", worker, exc)
            return None
        if not isinstance(record, dict):
            return None
        stamps: list[float] = []
        for field in _AGENT_STAMPS:
            value = record.get(field)
            if isinstance(value, str):
                try:
                    stamps.append(datetime.fromisoformat(value).timestamp())
                except ValueError:
                    continue
        return max(stamps, default=None)
