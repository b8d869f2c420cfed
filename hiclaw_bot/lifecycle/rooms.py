"""Which workers a room concerns: the map the activity tracker and the mention waker read.

A message counts for a worker when the worker sends it, when it is said in the worker's own room,
or when it names the worker in the worker's team room. The map is rebuilt from the workers and
teams tables, at most every ``ttl`` seconds, and when a message comes from a room it does not know
(at most every ``unknown_ttl``), so a busy sync costs no query per message. That second period is
short: a map loaded just before a worker's room was made would otherwise miss a mention in it for
as long, and a create, a sleep and a waking mention can all fit in a few seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hiclaw_bot.engine import Clock
from hiclaw_bot.flows import names
from storage import Store


class SeenMessage(Protocol):
    """A text message as the sync delivered it (the chat layer's ``Incoming`` is one)."""

    @property
    def room_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def content(self) -> Mapping[str, Any]: ...
    @property
    def sent_at(self) -> int | None: ...


@dataclass(frozen=True)
class RoomMap:
    """One snapshot of the tables: rooms to workers, user ids to workers."""

    worker_rooms: Mapping[str, str] = field(default_factory=dict)
    """Room id → the worker whose room it is."""
    team_rooms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Team room id → the team's workers."""
    users: Mapping[str, str] = field(default_factory=dict)
    """A worker's Matrix user id → the worker."""

    def concerned(self, room_id: str) -> tuple[str, ...]:
        """The workers a message in ``room_id`` may be for."""
        own = self.worker_rooms.get(room_id)
        return ((own,) if own else ()) + self.team_rooms.get(room_id, ())

    def knows(self, room_id: str) -> bool:
        return room_id in self.worker_rooms or room_id in self.team_rooms


class RoomIndex:
    def __init__(self, store: Store, domain: str, clock: Clock, *, ttl: float = 60.0,
                 unknown_ttl: float = 0.5) -> None:
        self.store = store
        self.domain = domain
        self.clock = clock
        self.ttl = ttl
        self.unknown_ttl = unknown_ttl
        self._map = RoomMap()
        self._loaded_at: float | None = None

    async def lookup(self, room_id: str) -> RoomMap:
        """The current map, reloaded if stale (or if ``room_id`` is new and the map is not fresh)."""
        age = None if self._loaded_at is None else self.clock.monotonic() - self._loaded_at
        if age is None or age > self.ttl or (age > self.unknown_ttl and not self._map.knows(room_id)):
            await self.refresh()
        return self._map

    async def refresh(self) -> None:
        workers = await self.store.workers.all()
        teams = await self.store.teams.all()
        members: dict[str, list[str]] = {}
        for worker in workers:
            if worker.team:
                members.setdefault(worker.team, []).append(worker.name)
        self._map = RoomMap(
            worker_rooms={w.room_id: w.name for w in workers if w.room_id},
            team_rooms={t.room_id: tuple(members.get(t.name, ())) for t in teams if t.room_id},
            users={w.user_id or names.user_id(w.name, self.domain): w.name for w in workers},
        )
        self._loaded_at = self.clock.monotonic()
