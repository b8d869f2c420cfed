"""Wake on mention: someone names a sleeping worker in its room or its team room, and it wakes.

The wake is a normal ``worker.wake`` operation carrying the message it missed (``missed``: room,
event and sender), so its last step can point the worker at that message once it is up. The
engine holds one operation per worker: further mentions while it wakes meet ``SubjectBusy`` and
are dropped quietly (the first wake's notice already points at the conversation), never a second
wake and never a reply in the room.
"""

from __future__ import annotations

import logging

from hiclaw_bot.engine import Engine, EngineError, describe
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_rules import wakes_on_mention
from hiclaw_bot.lifecycle.activity import mentioned
from hiclaw_bot.lifecycle.rooms import RoomIndex, SeenMessage

log = logging.getLogger("hiclaw_bot.lifecycle")


class MentionWaker:
    def __init__(self, services: Services, engine: Engine, index: RoomIndex) -> None:
        self.services = services
        self.engine = engine
        self.index = index

    async def saw(self, message: SeenMessage, *, command: bool) -> list[int]:
        """Start a wake for each sleeping worker ``message`` mentions; returns the operations started.

        Commands to the bot are left to the bot: ``!worker delete alice`` names alice, and must not
        wake her.
        """
        if command:
            return []
        rooms = await self.index.lookup(message.room_id)
        domain = self.services.domain
        started: list[int] = []
        for worker in rooms.concerned(message.room_id):
            if rooms.users.get(message.sender) == worker or not mentioned(message, worker, domain):
                continue
            row = await self.services.store.workers.get(worker)
            if not wakes_on_mention(row):
                continue
            missed = {"room_id": message.room_id, "event_id": message.event_id, "sender": message.sender}
            try:
                submission = await self.engine.submit(flows.WAKE, flows.subject(worker),
                                                      {"name": worker, "missed": missed},
                                                      actor=message.sender, room_id=message.room_id)
            except EngineError as exc:
                log.debug("not waking %s for %s: %s", worker, message.event_id, describe(exc))
                continue
            log.info("waking %s: mentioned by %s in %s (operation %s)", worker, message.sender,
                     message.room_id, submission.op.op_id)
            started.append(submission.op.op_id)
        return started
