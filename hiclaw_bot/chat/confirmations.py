"""Confirmation codes: what a destructive command leaves for ``!confirm CODE`` to run.

A code stands for one stored command line, for one sender in one room, for :data:`CONFIRM_TTL`
seconds. The code is short and read aloud or typed on a phone, so its alphabet has no look-alikes.
The dispatcher stores a pending confirmation in the transaction that marks the asking event (see
:mod:`hiclaw_bot.chat.record`), and ``!confirm`` takes it back out, once.
"""

from __future__ import annotations

import secrets

from hiclaw_bot.types import RoomId, UserId
from storage import Confirmation

CONFIRM_TTL = 300.0
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud, typed on phones


def new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))


def pending(*, sender: UserId, room_id: RoomId, command: str, now: float) -> Confirmation:
    """A new confirmation of ``command`` (a command line without its ``!``), valid from ``now``."""
    return Confirmation(code=new_code(), sender=sender, room_id=room_id, command=command,
                        expires_at=now + CONFIRM_TTL)
