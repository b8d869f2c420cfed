"""Typed identifiers shared by every layer.

``NewType`` costs nothing at run time but lets mypy catch a room id passed where a user id is due,
the most common slip in Matrix code (mautrix-python does the same).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

WorkerName = NewType("WorkerName", str)
TeamName = NewType("TeamName", str)
HumanName = NewType("HumanName", str)
UserId = NewType("UserId", str)
"""A full Matrix user id: ``@alice:example.org``."""
RoomId = NewType("RoomId", str)
"""A Matrix room id: ``!opaque:example.org``."""
RoomAlias = NewType("RoomAlias", str)
"""A full Matrix room alias: ``#hiclaw-worker-alice:example.org``."""
EventId = NewType("EventId", str)
OpId = NewType("OpId", int)


class WorkerPhase(StrEnum):
    """Where a worker is in its lifecycle (ARCHITECTURE §5), stored by value in the database.

    A phase, as a pod has one: not to be confused with :class:`backends.base.WorkerState`, what a
    backend observes of the runtime.
    """

    PENDING = "Pending"
    RUNNING = "Running"
    SLEEPING = "Sleeping"
    UPDATING = "Updating"
    DELETING = "Deleting"


class Role(StrEnum):
    """What a worker is to its team: a plain worker, or the team's leader."""

    WORKER = "worker"
    TEAM_LEADER = "team_leader"


class Refused(Exception):
    """A request that breaks a rule: nothing was changed, and ``reason`` says why in people's words.

    Raised by the rule checks in :mod:`hiclaw_bot.flows` and answered by every front end as it
    sees fit (chat replies with it, the API returns 4xx with it), so a rule is written once.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
