"""What a worker's room is told when it sleeps or wakes by itself (idle, or mentioned)."""

from __future__ import annotations

from typing import Any

from hiclaw_bot.engine import Done, Outcome, Skipped, StepContext
from hiclaw_bot.flows.params import Missed
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_steps import WorkerStep
from hiclaw_bot.types import RoomId


def _spoken(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{int(seconds)} seconds"


class Notify(WorkerStep):
    """Tell the worker's room why it slept or woke: the last step of an automatic sleep or wake.

    The notice's transaction id is the operation's, so a retry after a lost reply finds the
    homeserver's first event instead of posting a second one.
    """

    name = "notify"

    def __init__(self, services: Services, worker: str, *, idle_s: float = 0, missed: Missed | None = None) -> None:
        super().__init__(services, worker)
        self.idle_s = idle_s
        self.missed = missed

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        if row is None or row.room_id is None:
            return Skipped("the worker has no room")
        body, html, relates_to = self._text(RoomId(row.room_id))
        async with ctx.external("matrix"):
            event_id = await self.services.matrix.send_notice(
                RoomId(row.room_id), body, html=html, relates_to=relates_to,
                txn_id=f"hiclaw.notify.{ctx.op.op_id}")
        return Done({"event_id": event_id})

    def _text(self, room_id: RoomId) -> tuple[str, str | None, dict[str, Any] | None]:
        missed = self.missed
        if missed is not None:
            link = f"https://matrix.to/#/{missed.room_id}/{missed.event_id}"
            where = "here" if missed.room_id == room_id else "in another room"
            body = (f"{self.user_id}: you were asleep when {missed.sender} mentioned you {where}; "
                    f"you are awake now, please read it: {link}")
            html = (f"{self.user_id}: you were asleep when {missed.sender} mentioned you {where}; "
                    f'you are awake now, please read <a href="{link}">the message you missed</a>.')
            relation = {"m.in_reply_to": {"event_id": missed.event_id}} if missed.room_id == room_id else None
            return body, html, relation
        return (f"{self.worker} is asleep after {_spoken(self.idle_s)} idle; mention it to wake it.", None, None)
