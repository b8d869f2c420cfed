"""Where automation says what it did: ``lifecycle.report_room`` (a room id or alias) when set.

Unset, reports go to the log only (and the reconciler's findings to the audit log, as always):
an installation without an admin room still has a complete record. A report that cannot be
posted is logged, never retried: the next pass reports again what is still true.
"""

from __future__ import annotations

import logging
import uuid

from hiclaw_bot.clients.errors import ClientError
from hiclaw_bot.engine import describe
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import RoomAlias, RoomId

log = logging.getLogger("hiclaw_bot.lifecycle")


async def post_report(services: Services, text: str) -> None:
    room = services.config.lifecycle.report_room
    if room is None:
        return
    matrix = services.matrix
    try:
        room_id = await matrix.resolve_alias(RoomAlias(room)) if room.startswith("#") else RoomId(room)
        await matrix.send_notice(room_id, text, txn_id=f"hiclaw.report.{uuid.uuid4().hex}")
    except ClientError as exc:
        log.warning("cannot report in %s: %s", room, describe(exc))
