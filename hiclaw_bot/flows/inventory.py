"""What exists in every system under our names, and what of it nothing in the ledger claims.

The orphan sweep's eyes. Each system is listed by our prefixes or labels only:

* Matrix: the local aliases ``#hiclaw-worker-*`` and ``#hiclaw-team-*`` (team rooms and leader
  DMs) of the rooms the bot is in — a room we made always has the bot in it; an alias put by hand
  on a room the bot never joined is not seen;
* the gateway: consumers ``worker-*``, and ``worker-*`` entries in the AI routes' allow lists;
* storage: the prefixes ``agents/<w>/`` (never ``teams/<t>/``: a deleted team's shared folder is its
  work, kept on purpose, and only a person decides to remove it);
* storage identities: the users ``hiclaw-worker-*`` (each worker's own key);
* the backends: the runtimes of our instance label (``backend.list()`` of each one served).

A name is *claimed* when the workers or teams table has its owner, when an operation holds or
waits on its owner's subject, or when an operation still running recorded it in the ledger (a
create half-way through has made objects its row may not show yet). Everything else under our
names is an orphan. The sweep flow checks the claim again before each delete.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.flows import names
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import RoomAlias, RoomId

ALIAS = "matrix_alias"
ROUTE = "gateway_route"
CONSUMER = "gateway_consumer"
PREFIX = "storage_prefix"
IDENTITY = "storage_identity"
RUNTIME = "runtime"
SYSTEMS = (ALIAS, ROUTE, CONSUMER, PREFIX, IDENTITY, RUNTIME)
"""In the order a sweep deletes them: a consumer leaves the routes before it goes."""

_WORKER_ALIAS = "hiclaw-worker-"
_TEAM_ALIAS = "hiclaw-team-"
_CONSUMER = "worker-"
_IDENTITY = names.storage_identity("")
_LOOKUPS = 8


@dataclass(frozen=True, order=True)
class Orphan:
    system: str
    name: str
    """The alias, consumer, storage prefix or worker (runtime) name."""
    where: str = ""
    """For a route entry: the route; for a runtime on a backend other than the default: its kind."""

    def describe(self) -> str:
        what = {ALIAS: "room alias", ROUTE: "route entry", CONSUMER: "gateway consumer",
                PREFIX: "storage prefix", IDENTITY: "storage identity", RUNTIME: "runtime"}[self.system]
        where = f" on {'route ' if self.system == ROUTE else ''}{self.where}" if self.where else ""
        return f"{what} {self.name}{where}"

    def as_param(self) -> dict[str, str]:
        return {"system": self.system, "name": self.name, "where": self.where}

    @classmethod
    def from_param(cls, value: Mapping[str, Any]) -> Orphan:
        system = str(value["system"])
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}")
        return cls(system, str(value["name"]), str(value.get("where", "")))


@dataclass(frozen=True)
class Claims:
    """What the ledger claims: worker and team names, and the external names running ops recorded."""

    workers: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    external: frozenset[str] = frozenset()

    def expected(self, domain: str) -> dict[str, set[str]]:
        """Per system, the names our workers and teams own."""
        aliases = {names.full_alias(names.worker_room_alias(w), domain) for w in self.workers}
        for team in self.teams:
            aliases |= {names.full_alias(names.team_room_alias(team), domain),
                        names.full_alias(names.team_leader_dm_alias(team), domain)}
        consumers = {names.consumer(w) for w in self.workers}
        prefixes = {names.worker_prefix(w) for w in self.workers} | {names.team_prefix(t) for t in self.teams}
        return {ALIAS: set(aliases), ROUTE: consumers, CONSUMER: consumers, PREFIX: prefixes,
                IDENTITY: {names.storage_identity(w) for w in self.workers}, RUNTIME: set(self.workers)}

    def covers(self, orphan: Orphan, expected: Mapping[str, set[str]]) -> bool:
        """Whether something we know owns the object (then it is no orphan)."""
        ledger_name = names.container(orphan.name) if orphan.system == RUNTIME else orphan.name
        return ledger_name in self.external or orphan.name in expected[orphan.system]


async def claims(services: Services) -> Claims:
    store = services.store
    subjects = await store.ops.active_subjects()
    active_ops = {op.op_id for op in await store.ops.find(states=["running", "compensating", "queued", "failed"],
                                                          limit=100_000)}
    workers = {w.name for w in await store.workers.all()}
    workers |= {s.split(":", 1)[1] for s in subjects if s.startswith("worker:")}
    teams = {t.name for t in await store.teams.all()}
    teams |= {s.split(":", 1)[1] for s in subjects if s.startswith("team:")}
    external = {r.external_name for r in await store.ledger.live() if r.op_id in active_ops}
    return Claims(frozenset(workers), frozenset(teams), frozenset(external))


@dataclass
class Inventory:
    orphans: list[Orphan] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    """How many objects under our names each system listed."""

    def digest(self) -> str:
        """A short fingerprint of the orphan list: what a ``!confirm`` approves."""
        canonical = json.dumps([o.as_param() for o in sorted(self.orphans)], sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


Progress = Callable[[str], None]


async def inventory(services: Services, *, progress: Progress | None = None) -> Inventory:
    """List every system by our names and keep what no claim covers; ``progress`` hears each system."""
    known = await claims(services)
    found: dict[str, list[Orphan]] = {}
    listers: dict[str, Callable[[Services], Awaitable[Iterable[Orphan]]]] = {
        ALIAS: _aliases, ROUTE: _routes, CONSUMER: _consumers, PREFIX: _prefixes, IDENTITY: _identities,
        RUNTIME: _runtimes,
    }
    for system, lister in listers.items():
        found[system] = list(await lister(services))
        if progress is not None:
            progress(system)
    result = Inventory(seen={system: len(objects) for system, objects in found.items()})
    expected = known.expected(services.domain)
    result.orphans = sorted(o for objects in found.values() for o in objects if not known.covers(o, expected))
    return result


async def _aliases(services: Services) -> Iterable[Orphan]:
    matrix = services.matrix
    suffix = f":{services.domain}"
    limit = asyncio.Semaphore(_LOOKUPS)

    async def of_room(room_id: RoomId) -> list[RoomAlias]:
        async with limit:
            return await matrix.room_aliases(room_id)

    rooms = sorted(await matrix.joined_rooms())
    found: set[str] = set()
    for aliases in await asyncio.gather(*(of_room(room) for room in rooms)):
        for alias in aliases:
            local = alias[1:].removesuffix(suffix)
            if alias.endswith(suffix) and local.startswith((_WORKER_ALIAS, _TEAM_ALIAS)):
                found.add(alias)
    return [Orphan(ALIAS, alias) for alias in sorted(found)]


async def _routes(services: Services) -> Iterable[Orphan]:
    if services.gateway is None:
        return []
    allow = await services.gateway.route_allow_lists()
    return [Orphan(ROUTE, consumer, route) for route, consumers in sorted(allow.items())
            for consumer in consumers if consumer.startswith(_CONSUMER)]


async def _consumers(services: Services) -> Iterable[Orphan]:
    if services.gateway is None:
        return []
    return [Orphan(CONSUMER, c) for c in sorted(await services.gateway.list_consumers()) if c.startswith(_CONSUMER)]


async def _prefixes(services: Services) -> Iterable[Orphan]:
    found: set[str] = set()
    for top in ("agents/",):
        for key in await services.objects.list(top):
            owner = key[len(top):].split("/", 1)[0]
            if owner:
                found.add(f"{top}{owner}/")
    return [Orphan(PREFIX, prefix) for prefix in sorted(found)]


async def _identities(services: Services) -> Iterable[Orphan]:
    return [Orphan(IDENTITY, name) for name in await services.identities.list(_IDENTITY)]


async def _runtimes(services: Services) -> Iterable[Orphan]:
    """Every backend's runtimes; those of a backend other than the default say which (``where``)."""
    found = []
    for kind, backend in services.backends.items():
        where = "" if backend is services.backend else kind
        found += [Orphan(RUNTIME, status.name, where) for status in await backend.list()]
    return found
