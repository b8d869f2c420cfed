"""The durable record of one command event: its processed mark, the sync token, its audit row.

Every outcome of a command is written in one transaction *before* the answer is sent, so a crash
after it loses at most a reply and never runs a command twice:

* a command that starts an operation is marked in the transaction that records the operation
  (:meth:`EventRecord.started`, run by the engine inside ``submit``);
* any other answer is marked with its audit row, and a pending confirmation when it asks for one
  (:meth:`EventRecord.settle`).

The sync token rides on the mark of the batch's last command (see ``Bot``). A mark already there
means another process handled the event first: :class:`AlreadyHandled` says so.
"""

from __future__ import annotations

from hiclaw_bot.types import EventId, RoomId, UserId
from storage import Confirmation, Store, Tx

SYNC_KEY = "next_batch"
"""Where the sync token lives in ``store.sync``."""


class AlreadyHandled(Exception):
    """The event was marked processed by someone else first: do nothing, say nothing."""


class EventRecord:
    """Writes one event's mark and audit rows; ``marked`` says whether the mark is written."""

    def __init__(self, store: Store, *, event_id: EventId, room_id: RoomId, sender: UserId,
                 sync_token: str | None) -> None:
        self.store = store
        self.event_id = event_id
        self.room_id = room_id
        self.sender = sender
        self.sync_token = sync_token
        self.marked = False

    async def started(self, tx: Tx, *, op_id: int, command: str, subject: str, confirmed: bool) -> None:
        """Inside the transaction recording operation ``op_id``: mark the event and audit the start."""
        await self._mark(tx, "started", op_id)
        await self.store.audit.add(actor=self.sender, command=command, decision="confirmed" if confirmed else "started",
                                   room_id=self.room_id, subject=subject, op_id=op_id, tx=tx)
        self.marked = True

    async def settle(self, *, command: str, decision: str, subject: str | None, detail: str | None,
                     confirmation: Confirmation | None) -> None:
        """Mark the event processed, store a pending confirmation, write the audit row: one transaction."""
        async with self.store.transaction() as tx:
            await self._mark(tx, decision, None)
            if confirmation is not None:
                await self.store.confirmations.add(confirmation, tx=tx)
            await self.store.audit.add(actor=self.sender, command=command, decision=decision, room_id=self.room_id,
                                       subject=subject, detail=detail, tx=tx)
        self.marked = True

    async def audit(self, *, command: str, decision: str, subject: str | None, detail: str | None) -> None:
        """An audit row alone: a confirmed command that started nothing (the ``!confirm`` is the mark)."""
        await self.store.audit.add(actor=self.sender, command=command, decision=decision, room_id=self.room_id,
                                   subject=subject, detail=detail)

    async def _mark(self, tx: Tx, outcome: str, op_id: int | None) -> None:
        if not await self.store.events.mark(self.event_id, self.room_id, outcome, op_id=op_id, tx=tx):
            raise AlreadyHandled
        if self.sync_token is not None:
            await self.store.sync.set(SYNC_KEY, self.sync_token, tx=tx)
